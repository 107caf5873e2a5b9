"""Seeded synthetic query corpus with known decomposition ground truth.

Queries are built from templates and tiered vocabularies for seven task types. The joint draw of
(subtask count K, structure) follows the env defaults exactly (P(K=1..5) = [0.2, 0.3, 0.3, 0.15, 0.05],
structure 50 % fan-out / 30 % chain / 20 % dag, independent of K); the task type is then drawn from an
affinity table given (K, structure), so each type has its own tendencies (multi_hop → chain, summarisation
→ fan-out, code → dag, factual_qa and translation → K = 1). Difficulty, answer length and prompt length get
per-type offsets that are centred so the overall marginals match the env (difficulty ~N(0, 1), answer
tokens lognormal median 45 / sigma_log 0.6, prompt tokens lognormal median 150 / sigma_log 0.5).

The text carries noisy signal about every target: listed items and number words (K), connectives (structure),
tiered topic / audience / qualifier vocabulary (difficulty), length phrases and word counts (lengths). Part
of each target is never shown in the text, so prediction is not trivial.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

TASK_TYPES: tuple[str, ...] = (
    "summarisation",
    "code",
    "math",
    "translation",
    "factual_qa",
    "multi_hop",
    "creative_writing",
)
STRUCTURES: tuple[str, ...] = ("fan-out", "chain", "dag")
MAX_SUBTASKS: int = 5
K_PROBS: tuple[float, ...] = (0.20, 0.30, 0.30, 0.15, 0.05)
STRUCTURE_PROBS: tuple[float, ...] = (0.5, 0.3, 0.2)

PROMPT_MEDIAN_TOKENS: float = 150.0
PROMPT_SIGMA_LOG: float = 0.5
ANSWER_MEDIAN_TOKENS: float = 45.0
ANSWER_SIGMA_LOG: float = 0.6
SUBTASK_INFLATION: float = 1.2
SUBTASK_DIFFICULTY_OFFSET: float = -0.5
SUBTASK_DIFFICULTY_SIGMA: float = 0.5

# Affinity of each task type for K = 1..5 and for (fan-out, chain, dag); rows follow TASK_TYPES.
_K_AFFINITY = np.array(
    [
        [0.5, 1.0, 1.2, 1.5, 2.0],
        [0.6, 1.0, 1.2, 1.3, 1.2],
        [0.8, 1.2, 1.2, 0.8, 0.6],
        [2.5, 1.0, 0.6, 0.4, 0.3],
        [3.0, 0.8, 0.5, 0.3, 0.2],
        [0.2, 1.2, 1.4, 1.2, 0.8],
        [0.8, 1.0, 1.1, 1.2, 1.5],
    ]
)
_S_AFFINITY = np.array(
    [
        [2.0, 0.4, 0.6],
        [0.5, 0.8, 2.5],
        [0.4, 2.0, 0.8],
        [2.0, 0.5, 0.3],
        [1.8, 0.6, 0.6],
        [0.3, 2.5, 1.0],
        [1.2, 1.2, 0.6],
    ]
)
# Raw per-type offsets (centred below so the marginals keep the env's medians / means).
_DIFFICULTY_OFFSET_RAW = np.array([-0.2, 0.25, 0.4, -0.3, -0.5, 0.3, -0.1])
_ANSWER_LOG_OFFSET_RAW = np.array([0.1, 0.3, 0.0, -0.2, -0.5, -0.1, 0.4])
_PROMPT_LOG_OFFSET_RAW = np.array([0.45, 0.15, -0.1, 0.2, -0.35, -0.05, -0.2])
_ANSWER_K_SLOPE: float = 0.12  # log answer tokens per extra subtask
_ANSWER_NOISE_SIGMA_LOG: float = 0.3  # part of log answer length the text never reveals


def _type_given_ks() -> np.ndarray:
    """P(type | K, structure), shape (5, 3, n_types); for K = 1 the structure is ignored."""
    table = np.zeros((MAX_SUBTASKS, 3, len(TASK_TYPES)))
    for k in range(MAX_SUBTASKS):
        for s in range(3):
            w = _K_AFFINITY[:, k] * (_S_AFFINITY[:, s] if k > 0 else 1.0)
            table[k, s] = w / w.sum()
    return table


_TYPE_GIVEN_KS = _type_given_ks()
TYPE_PROBS: np.ndarray = np.einsum("k,s,kst->t", np.array(K_PROBS), np.array(STRUCTURE_PROBS), _TYPE_GIVEN_KS)


def _centred(raw: np.ndarray) -> np.ndarray:
    return raw - float(TYPE_PROBS @ raw)


_DIFFICULTY_OFFSET = _centred(_DIFFICULTY_OFFSET_RAW)
_DIFFICULTY_SIGMA = float(np.sqrt(1.0 - TYPE_PROBS @ _DIFFICULTY_OFFSET**2))
_ANSWER_LOG_OFFSET = _centred(_ANSWER_LOG_OFFSET_RAW)
_K_VAR = float(np.array(K_PROBS) @ (np.arange(1, 6) - np.array(K_PROBS) @ np.arange(1, 6)) ** 2)
_K_MEAN = float(np.array(K_PROBS) @ np.arange(1, 6))
# Signalled part of log answer length: the remaining variance after type, K and hidden noise.
_ANSWER_REQUEST_SIGMA_LOG = float(
    np.sqrt(
        ANSWER_SIGMA_LOG**2
        - TYPE_PROBS @ _ANSWER_LOG_OFFSET**2
        - _ANSWER_K_SLOPE**2 * _K_VAR
        - _ANSWER_NOISE_SIGMA_LOG**2
    )
)
_PROMPT_LOG_OFFSET = _centred(_PROMPT_LOG_OFFSET_RAW)
_PROMPT_SIGMA = float(np.sqrt(PROMPT_SIGMA_LOG**2 - TYPE_PROBS @ _PROMPT_LOG_OFFSET**2))


@dataclass(frozen=True)
class CorpusQuery:
    """One query with its ground-truth annotation (what the planner should predict)."""

    text: str
    task_type: str
    prompt_tokens: int
    answer_tokens: int
    difficulty: float
    subtask_count: int
    structure: str
    deps: tuple[tuple[int, ...], ...]
    subtask_difficulty: tuple[float, ...]
    subtask_output_tokens: tuple[int, ...]


# ---------------------------------------------------------------------------------------------------------
# Vocabularies. Tier t (0..6) stands for difficulty about t - 3 on the N(0, 1) scale.

N_TIERS: int = 7

TOPICS: tuple[tuple[str, ...], ...] = (
    ("pets", "the weather", "breakfast foods", "a birthday party", "colours", "school holidays", "fruit"),
    ("gardening", "public transport", "healthy sleep", "recycling", "board games", "city parks", "saving money"),
    ("the water cycle", "electric cars", "remote work", "social media", "volcanoes", "the Roman empire", "vaccines"),
    ("inflation", "machine learning", "climate policy", "the French revolution", "supply chains", "photosynthesis",
     "plate tectonics"),
    ("monetary policy", "CRISPR gene editing", "game theory", "antibiotic resistance", "blockchain consensus",
     "the Cold War", "protein folding"),
    ("Bayesian inference", "quantum entanglement", "transformer attention", "epigenetics", "general relativity",
     "compiler optimisation", "dark matter"),
    ("category theory", "homomorphic encryption", "the renormalisation group", "topological insulators",
     "Byzantine fault tolerance", "the Langlands programme", "quantum error correction"),
)
CODE_TASKS: tuple[tuple[str, ...], ...] = (
    ("print a greeting", "add two numbers", "reverse a string", "count the vowels in a word"),
    ("sort a list of names", "read a CSV file", "find the largest number in a list", "check for a palindrome"),
    ("parse a JSON config", "write a REST endpoint", "validate an email address", "merge two sorted lists"),
    ("implement a binary search tree", "add an LRU cache", "write a rate limiter", "build a simple tokenizer"),
    ("implement Dijkstra's algorithm", "write a thread pool", "design a schema migration", "implement a trie"),
    ("write a lock-free queue", "implement a garbage collector", "build a SAT solver", "implement Raft elections"),
    ("write a JIT compiler backend", "implement distributed transactions", "verify a concurrent hash map",
     "implement an MVCC B-tree"),
)
MATH_TASKS: tuple[tuple[str, ...], ...] = (
    ("a simple addition", "a percentage", "the area of a square", "a unit conversion"),
    ("a fraction problem", "a ratio question", "the perimeter of a garden", "an average of test scores"),
    ("a linear equation", "a compound interest problem", "a dice probability", "the slope of a line"),
    ("a quadratic equation", "a system of equations", "a derivative", "a conditional probability"),
    ("an integral by parts", "an eigenvalue problem", "a differential equation", "a combinatorics proof"),
    ("a convergence proof", "a group theory exercise", "a Fourier transform", "a measure theory problem"),
    ("an algebraic topology exercise", "a Galois theory proof", "an olympiad inequality",
     "a functional analysis theorem"),
)
LANGUAGES: tuple[tuple[str, ...], ...] = (
    ("Spanish", "French"),
    ("Italian", "Portuguese"),
    ("German", "Dutch"),
    ("Russian", "Polish"),
    ("Japanese", "Arabic"),
    ("Finnish", "Hungarian"),
    ("Classical Chinese", "Old Norse"),
)
TEXT_KINDS: tuple[tuple[str, ...], ...] = (
    ("a greeting", "a shopping list"),
    ("a menu", "a text message"),
    ("a product description", "a news headline"),
    ("a business email", "a news article"),
    ("a contract clause", "a medical leaflet"),
    ("a patent claim", "a philosophical essay"),
    ("a poem full of wordplay", "an archaic legal charter"),
)
AUDIENCES: tuple[str, ...] = (
    "a child", "a beginner", "a high-school student", "a college student", "a graduate student",
    "a domain expert", "a research specialist",
)
QUALIFIERS: tuple[str, ...] = ("very basic", "basic", "standard", "nontrivial", "advanced", "rigorous",
                               "research-level")
NUMBER_WORDS: tuple[str, ...] = ("one", "two", "three", "four", "five", "six")
DOC_KINDS: tuple[str, ...] = ("report", "paper", "article", "blog post", "meeting transcript", "policy brief",
                              "review")
FORMS: tuple[str, ...] = ("poem", "short story", "dialogue", "scene", "limerick", "song verse", "letter")
FACT_ASPECTS: tuple[str, ...] = ("the history", "the main idea", "the key facts", "the definition",
                                 "the current status", "the origin", "the main critics")
HOP_RELATIONS: tuple[str, ...] = ("the person most associated with", "the country that led research on",
                                  "the year of the first milestone in", "the institution best known for",
                                  "the main rival theory to", "the original source on")
# Answer-length phrases by signalled level -2..2 (index 0..4).
LENGTH_PHRASES: tuple[tuple[str, ...], ...] = (
    ("in one sentence", "in a few words", "with a one-line answer"),
    ("briefly", "concisely", "in a short paragraph"),
    ("in a paragraph", "clearly", "in plain prose"),
    ("in detail", "thoroughly", "in two full paragraphs"),
    ("in depth with examples", "at great length", "as an extensive write-up"),
)
ITEM_SHORT: tuple[str, ...] = ("briefly", "in a line", "quickly")
ITEM_LONG: tuple[str, ...] = ("in detail", "at length", "carefully")
CHAIN_LINKS: tuple[str, ...] = ("then", "next", "after that", "using that result,", "building on that,")
FANOUT_TAILS: tuple[str, ...] = ("Handle each one separately.", "Treat the parts independently.",
                                 "Each part stands on its own.", "Answer them in parallel.")
DAG_LINKS: tuple[str, ...] = ("combining the earlier results,", "using both previous answers,",
                              "merging what came before,", "based on the earlier parts,")
NEUTRAL_OPENERS: tuple[str, ...] = ("Please cover the following:", "Items to handle:", "Here is what I need:")


def _rint_clip(value: float, low: int, high: int) -> int:
    """``int(np.clip(np.rint(value), low, high))`` for a finite float, in Python: ``round`` also rounds halves to
    even, and np.clip on a scalar costs several microseconds, a query draws about four"""
    return min(max(round(value), low), high)


def _cdf(p: tuple[float, ...] | np.ndarray) -> tuple[float, ...]:
    """The cumulative table ``Generator.choice(n, p=p)`` searches: ``p.cumsum() / its last entry``."""
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    return tuple(float(c) for c in cdf)


def _choice_index(rng: np.random.Generator, cdf: tuple[float, ...]) -> int:
    """``rng.choice(len(cdf), p=p)`` for the table ``_cdf(p)``: the same one uniform draw and the same search
    (numpy's ``searchsorted(side="right")`` is ``bisect_right``), without choice's checks of ``p`` (about 20 us
    a call; a query makes three)"""
    return bisect.bisect_right(cdf, rng.random())


def _tier(rng: np.random.Generator, value: float, noise_sigma: float) -> int:
    """Tier index 0..6 of a noisy difficulty value."""
    return _rint_clip(value + rng.normal(0.0, noise_sigma) + 3.0, 0, N_TIERS - 1)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _dag_deps(rng: np.random.Generator, k: int) -> tuple[tuple[int, ...], ...]:
    """Env DAG rule: 0 and 1 are roots (for K = 2, 1 depends on 0); later ones depend on 1 or 2 earlier ones."""
    deps: list[tuple[int, ...]] = []
    for i in range(k):
        if i == 0 or (i == 1 and k > 2):
            deps.append(())
        elif i == 1:
            deps.append((0,))
        else:
            n_preds = min(int(rng.integers(1, 3)), i)
            deps.append(tuple(sorted(int(j) for j in rng.choice(i, size=n_preds, replace=False))))
    return tuple(deps)


def make_deps(rng: np.random.Generator, k: int, structure: str) -> tuple[tuple[int, ...], ...]:
    """Predecessor lists for K subtasks of the given structure (fan-out: none; chain: i-1; dag: env rule)."""
    if structure == "chain":
        return tuple(((i - 1,) if i > 0 else ()) for i in range(k))
    if structure == "dag":
        return _dag_deps(rng, k)
    return tuple(() for _ in range(k))


# ---------------------------------------------------------------------------------------------------------
# Item phrases (one per listed subtask) and per-type sentence builders.


def _item(rng: np.random.Generator, task_type: str, tier: int, length_cue: str) -> str:
    if task_type == "summarisation":
        text = f"the {_pick(rng, DOC_KINDS)} on {_pick(rng, TOPICS[tier])}"
    elif task_type == "code":
        text = _pick(rng, CODE_TASKS[tier])
    elif task_type == "math":
        text = f"{_pick(rng, ('solve', 'work out', 'check'))} {_pick(rng, MATH_TASKS[tier])}"
    elif task_type == "translation":
        text = f"{_pick(rng, TEXT_KINDS[tier])} into {_pick(rng, LANGUAGES[tier])}"
    elif task_type == "factual_qa":
        text = f"{_pick(rng, FACT_ASPECTS)} of {_pick(rng, TOPICS[tier])}"
    elif task_type == "multi_hop":
        text = f"{_pick(rng, HOP_RELATIONS)} {_pick(rng, TOPICS[tier])}"
    else:
        text = f"a {_pick(rng, FORMS)} about {_pick(rng, TOPICS[tier])}"
    return f"{text} {length_cue}" if length_cue else text


_OPENERS: dict[str, tuple[str, ...]] = {
    "summarisation": ("Summarise", "Give me a summary of", "Condense"),
    "code": ("Write code to", "Help me", "In {lang}, please"),
    "math": ("Please", "Help me", "Step by step,"),
    "translation": ("Translate", "Please translate", "Render"),
    "factual_qa": ("Tell me", "Describe", "Explain"),
    "multi_hop": ("Find", "Work out", "Look up"),
    "creative_writing": ("Write", "Compose", "Draft"),
}
_COUNT_OPENERS: dict[str, tuple[str, ...]] = {
    # used instead of the plain opener when the text states how many parts it lists ({n} = number word)
    "summarisation": ("Summarise these {n} documents:", "Give me a summary of these {n} documents:"),
    "code": ("Write these {n} functions:", "Implement the following {n} functions:"),
    "math": ("Solve these {n} problems:", "Work through the following {n} problems:"),
    "translation": ("Translate these {n} texts:", "Please translate the following {n} texts:"),
    "factual_qa": ("Answer these {n} questions:", "Tell me the following {n} things:"),
    "multi_hop": ("Find these {n} facts:", "Work out the following {n} facts:"),
    "creative_writing": ("Write these {n} pieces:", "Compose the following {n} pieces:"),
}
_VAGUE: dict[str, tuple[str, str]] = {
    # (singular vague request, plural vague request): used when the query does not list its parts.
    "summarisation": ("Summarise the attached document on {topic}", "Summarise the attached documents on {topic}"),
    "code": ("Write the code for a tool about {topic}", "Build a small project about {topic} with several modules"),
    "math": ("Help with the attached homework on {topic}", "Go through the attached homework set on {topic}"),
    "translation": ("Translate the attached text about {topic}", "Translate the attached texts about {topic}"),
    "factual_qa": ("Tell me about {topic}", "Answer my questions about {topic}"),
    "multi_hop": ("Trace the story behind {topic}", "Trace the connections behind {topic} across sources"),
    "creative_writing": ("Write something about {topic}", "Write a collection about {topic}"),
}


def _opener(rng: np.random.Generator, task_type: str) -> str:
    lang = _pick(rng, ("Python", "JavaScript", "Rust", "C++", "Go", "Java"))
    return _pick(rng, _OPENERS[task_type]).replace("{lang}", lang)


def _body(rng: np.random.Generator, task_type: str, items: list[str], structure: str) -> str:
    """Join listed items with connectives that hint at the structure (sometimes neutral)."""
    n_items = len(items)
    opener = _opener(rng, task_type)
    if n_items == 1:
        return f"{opener} {items[0]}."
    style = structure if rng.random() > 0.2 else "neutral"
    if style == "neutral":
        return f"{_pick(rng, NEUTRAL_OPENERS)} " + "; ".join(items) + "."
    if rng.random() < 0.5:  # state the number of parts
        opener = _pick(rng, _COUNT_OPENERS[task_type]).format(n=NUMBER_WORDS[n_items - 1])
    if style == "fan-out":
        text = f"{opener} {_join(items)}."
        if rng.random() < 0.6:
            text += " " + _pick(rng, FANOUT_TAILS)
        return text
    if style == "chain":
        parts = [f"First, {opener[0].lower()}{opener[1:]} {items[0]}"]
        parts += [f"{_pick(rng, CHAIN_LINKS)} {item}" for item in items[1:]]
        return "; ".join(parts) + "."
    # dag: two roots, then items that combine earlier ones
    first = f"{opener} {items[0]} and {items[1]}"
    rest = [f"then, {_pick(rng, DAG_LINKS)} {item}" for item in items[2:]]
    return "; ".join([first, *rest]) + "."


def _length_request(rng: np.random.Generator, level: int, answer_tokens: int) -> str:
    """A sentence hinting at the answer length: a word count (30 %), a phrase (55 %) or nothing."""
    u = rng.random()
    if u < 0.3:
        words = max(10, round(answer_tokens * 0.75 * math.exp(float(rng.normal(0.0, 0.15))) / 10.0) * 10)
        return _pick(rng, ("Use about {n} words.", "Aim for roughly {n} words.", "Keep it near {n} words.")).format(
            n=words
        )
    if u < 0.85:
        return f"Answer {_pick(rng, LENGTH_PHRASES[level + 2])}."
    return ""


def _difficulty_cues(rng: np.random.Generator, difficulty: float) -> list[str]:
    """Audience / qualifier sentences, each shown with some probability and tier noise."""
    cues = []
    if rng.random() < 0.6:
        aud = AUDIENCES[_tier(rng, difficulty, 0.4)]
        cues.append(_pick(rng, ("Write it for {a}.", "The reader is {a}.", "Pitch it at {a}.")).format(a=aud))
    if rng.random() < 0.6:
        qual = QUALIFIERS[_tier(rng, difficulty, 0.4)]
        art = "an" if qual[0] in "aeiou" else "a"
        template = _pick(rng, ("This is {a} {q} task.", "Expect {a} {q} level.", "Treat it as {q}."))
        cues.append(template.format(a=art, q=qual))
    return cues


def _listed_count(rng: np.random.Generator, k: int) -> int:
    """How many parts the text lists: K (72 %), none / vague (13 %) or off by one (15 %)."""
    u = rng.random()
    if u < 0.72:
        return k
    if u < 0.85:
        return 0
    if k == 1:
        return 2
    if k == MAX_SUBTASKS:
        return k - 1
    return k + (1 if rng.random() < 0.5 else -1)


_K_CDF = _cdf(K_PROBS)
_STRUCTURE_CDF = _cdf(STRUCTURE_PROBS)
_TYPE_CDFS = tuple(tuple(_cdf(row) for row in rows) for rows in _TYPE_GIVEN_KS)


def generate_query(rng: np.random.Generator) -> CorpusQuery:
    """Draw one query and its ground truth from ``rng``."""
    k = _choice_index(rng, _K_CDF) + 1
    s_idx = _choice_index(rng, _STRUCTURE_CDF)
    t_idx = _choice_index(rng, _TYPE_CDFS[k - 1][s_idx])
    task_type = TASK_TYPES[t_idx]
    structure = STRUCTURES[s_idx] if k > 1 else "fan-out"
    deps = make_deps(rng, k, structure)

    difficulty = float(_DIFFICULTY_OFFSET[t_idx] + _DIFFICULTY_SIGMA * rng.normal())
    sub_difficulty = difficulty + SUBTASK_DIFFICULTY_OFFSET + SUBTASK_DIFFICULTY_SIGMA * rng.normal(size=k)

    request_log = float(rng.normal(0.0, _ANSWER_REQUEST_SIGMA_LOG))
    log_answer = (
        math.log(ANSWER_MEDIAN_TOKENS)
        + _ANSWER_LOG_OFFSET[t_idx]
        + _ANSWER_K_SLOPE * (k - _K_MEAN)
        + request_log
        + rng.normal(0.0, _ANSWER_NOISE_SIGMA_LOG)
    )
    answer_tokens = max(1, round(math.exp(log_answer)))
    length_level = _rint_clip(request_log / 0.35, -2, 2)

    # Per-subtask share of the output: a signalled part (item length cue) and a hidden part.
    share_signal = rng.normal(0.0, 0.3, size=k)
    share_log = share_signal + rng.normal(0.0, 0.15, size=k)
    shares = np.array([math.exp(x) for x in share_log.tolist()])
    shares = shares / shares.mean()
    sub_out = np.maximum(1, np.rint(SUBTASK_INFLATION * answer_tokens / k * shares)).astype(int)

    log_prompt = math.log(PROMPT_MEDIAN_TOKENS) + _PROMPT_LOG_OFFSET[t_idx] + rng.normal(0.0, _PROMPT_SIGMA)
    prompt_tokens = max(8, round(math.exp(float(log_prompt))))

    n_listed = _listed_count(rng, k)
    sentences: list[str] = []
    if n_listed == 0:
        vague = _VAGUE[task_type][0 if k == 1 else 1]
        sentences.append(vague.format(topic=_pick(rng, TOPICS[_tier(rng, difficulty, 0.5)])) + ".")
    else:
        items = []
        for i in range(n_listed):
            b_item = float(sub_difficulty[i]) if i < k else difficulty + SUBTASK_DIFFICULTY_OFFSET
            sig = float(share_signal[i]) if i < k and k > 1 else 0.0
            cue = _pick(rng, ITEM_SHORT) if sig < -0.25 else _pick(rng, ITEM_LONG) if sig > 0.25 else ""
            items.append(_item(rng, task_type, _tier(rng, b_item - SUBTASK_DIFFICULTY_OFFSET, 0.3), cue))
        sentences.append(_body(rng, task_type, items, structure))
    if task_type in ("summarisation", "translation") and rng.random() < 0.5:
        sentences.append(f"The source is about {round(prompt_tokens * 0.7 / 10.0) * 10} words.")
    sentences.extend(_difficulty_cues(rng, difficulty))
    sentences.append(_length_request(rng, length_level, answer_tokens))
    text = " ".join(s for s in sentences if s)
    text = text[0].upper() + text[1:]

    return CorpusQuery(
        text=text,
        task_type=task_type,
        prompt_tokens=prompt_tokens,
        answer_tokens=answer_tokens,
        difficulty=difficulty,
        subtask_count=k,
        structure=structure,
        deps=deps,
        subtask_difficulty=tuple(float(x) for x in sub_difficulty),
        subtask_output_tokens=tuple(int(x) for x in sub_out),
    )


def generate_queries(rng: np.random.Generator, n: int) -> list[CorpusQuery]:
    """Draw ``n`` queries from ``rng``."""
    return [generate_query(rng) for _ in range(n)]


def make_splits(seed: int, n_train: int, n_val: int, n_test: int) -> dict[str, list[CorpusQuery]]:
    """Train / val / test splits, each from its own child stream of ``seed`` (deterministic per seed)."""
    streams = np.random.SeedSequence(seed).spawn(3)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {
        name: generate_queries(np.random.default_rng(stream), n)
        for (name, n), stream in zip(sizes.items(), streams, strict=True)
    }
