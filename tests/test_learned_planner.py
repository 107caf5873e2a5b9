"""Tests for offload_gym.planner: corpus, tokenizer, models, distillation, shipped student, CLIs."""

from __future__ import annotations

import pickle
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from offload_gym.planner import (
    MAX_SUBTASKS,
    STRUCTURES,
    TASK_TYPES,
    CorpusQuery,
    LearnedPlanner,
    PlannerModel,
    PlannerOutput,
    WordTokenizer,
    generate_query,
    make_deps,
    make_splits,
    student_config,
    teacher_config,
)
from offload_gym.planner import report as report_cli
from offload_gym.planner import train as train_cli
from offload_gym.planner.corpus import _TYPE_GIVEN_KS, K_PROBS, STRUCTURE_PROBS, _cdf, _choice_index, _rint_clip
from offload_gym.planner.learned import ASSETS_DIR, PLANNER_BATCH_ROWS, TOKENIZER_FILE
from offload_gym.planner.models import distillation_loss, load_checkpoint
from offload_gym.planner.train import encode_split, teacher_outputs, train_student

K_TARGET = np.array([0.20, 0.30, 0.30, 0.15, 0.05])
torch.set_num_threads(1)  # small models; extra threads only contend on a shared CPU


@pytest.fixture(scope="module")
def sample() -> list[CorpusQuery]:
    """4000 queries from one seed."""
    rng = np.random.default_rng(123)
    return [generate_query(rng) for _ in range(4000)]


# ---------------------------------------------------------------------------------------------------- corpus


def test_generator_deterministic_per_seed() -> None:
    a = make_splits(7, 40, 5, 5)
    b = make_splits(7, 40, 5, 5)
    c = make_splits(8, 40, 5, 5)
    assert a == b
    assert [q.text for q in a["train"]] != [q.text for q in c["train"]]
    assert [q.text for q in a["train"]] != [q.text for q in a["test"]][:40]
    # A split only depends on its own stream: asking for no training queries leaves the test split unchanged.
    assert make_splits(7, 0, 0, 5)["test"] == a["test"]


def test_marginals_match_env_defaults(sample: list[CorpusQuery]) -> None:
    k_freq = np.bincount([q.subtask_count for q in sample], minlength=MAX_SUBTASKS + 1)[1:] / len(sample)
    assert np.max(np.abs(k_freq - K_TARGET)) < 0.03, k_freq
    multi = Counter(q.structure for q in sample if q.subtask_count > 1)
    n_multi = sum(multi.values())
    for name, target in zip(STRUCTURES, (0.5, 0.3, 0.2), strict=True):
        assert abs(multi[name] / n_multi - target) < 0.04, multi
    assert all(q.structure == "fan-out" for q in sample if q.subtask_count == 1)
    log_ans = np.log([q.answer_tokens for q in sample])
    assert abs(np.exp(np.median(log_ans)) - 45.0) < 4.0
    assert abs(np.std(log_ans) - 0.6) < 0.06
    log_prompt = np.log([q.prompt_tokens for q in sample])
    assert abs(np.exp(np.median(log_prompt)) - 150.0) < 12.0
    assert abs(np.std(log_prompt) - 0.5) < 0.05
    b = np.array([q.difficulty for q in sample])
    assert abs(b.mean()) < 0.06 and abs(b.std() - 1.0) < 0.06
    assert set(Counter(q.task_type for q in sample)) == set(TASK_TYPES)


def test_task_types_have_structure_tendencies(sample: list[CorpusQuery]) -> None:
    def share(task: str, structure: str) -> float:
        sel = [q for q in sample if q.task_type == task and q.subtask_count > 1]
        return sum(q.structure == structure for q in sel) / len(sel)

    assert share("multi_hop", "chain") > 0.5
    assert share("summarisation", "fan-out") > 0.6
    assert share("code", "dag") > 0.4
    k1_fact = np.mean([q.subtask_count == 1 for q in sample if q.task_type == "factual_qa"])
    k1_hop = np.mean([q.subtask_count == 1 for q in sample if q.task_type == "multi_hop"])
    assert k1_fact > 0.35 > 0.1 > k1_hop


def test_query_fields_consistent(sample: list[CorpusQuery]) -> None:
    for q in sample[:500]:
        k = q.subtask_count
        assert 1 <= k <= MAX_SUBTASKS
        assert len(q.deps) == len(q.subtask_difficulty) == len(q.subtask_output_tokens) == k
        assert min(q.subtask_output_tokens) >= 1 and q.answer_tokens >= 1 and q.prompt_tokens >= 1
        assert q.structure in STRUCTURES and q.task_type in TASK_TYPES and q.text


def test_dependency_rules(sample: list[CorpusQuery]) -> None:
    for q in sample:
        k = q.subtask_count
        if q.structure == "fan-out":
            assert q.deps == ((),) * k
        elif q.structure == "chain":
            assert q.deps == tuple(((i - 1,) if i else ()) for i in range(k))
        else:
            assert q.deps[0] == ()
            assert q.deps[1] == ((0,) if k == 2 else ())
            for i in range(2, k):
                assert 1 <= len(q.deps[i]) <= 2
                assert len(set(q.deps[i])) == len(q.deps[i])
                assert all(0 <= j < i for j in q.deps[i])


def test_dag_choices_are_uniform() -> None:
    rng = np.random.default_rng(5)
    n_preds, picks = Counter(), Counter()
    for _ in range(3000):
        deps = make_deps(rng, 5, "dag")
        n_preds[len(deps[4])] += 1
        if len(deps[3]) == 1:
            picks[deps[3][0]] += 1
    assert abs(n_preds[1] / 3000 - 0.5) < 0.05 and n_preds[1] + n_preds[2] == 3000
    freq = np.array([picks[j] for j in range(3)]) / sum(picks.values())
    assert np.max(np.abs(freq - 1 / 3)) < 0.05


def test_choice_tables_draw_what_generator_choice_draws() -> None:
    """generate_query draws K, the structure and the task type from precomputed tables (Generator.choice with
    ``p`` checks ``p`` at every call): the same indices from the same one uniform each, so the corpus is the
    same query for query."""
    rows = [K_PROBS, STRUCTURE_PROBS, *(row for rows in _TYPE_GIVEN_KS for row in rows)]
    for seed, p in enumerate(rows):
        table = _cdf(p)
        ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
        drawn = [_choice_index(ours, table) for _ in range(2000)]
        assert drawn == [int(numpys.choice(len(p), p=p)) for _ in range(2000)], seed
        assert ours.bit_generator.state == numpys.bit_generator.state  # one draw each, no more


def test_rint_clip_is_numpys_rint_then_clip() -> None:
    values = [x / 2 for x in range(-20, 21)] + list(np.random.default_rng(0).normal(0.0, 4.0, 2000))
    for low, high in ((0, 6), (-2, 2)):
        for v in values:  # halves round to even in both
            assert _rint_clip(float(v), low, high) == int(np.clip(np.rint(v), low, high)), (v, low, high)


def test_text_carries_count_signal(sample: list[CorpusQuery]) -> None:
    # Number words that match K appear more often than ones that do not.
    words = ("two", "three", "four", "five")
    match = np.mean([f" {words[q.subtask_count - 2]} " in q.text for q in sample if q.subtask_count > 1])
    other = np.mean([f" {words[(q.subtask_count - 1) % 4]} " in q.text for q in sample if q.subtask_count > 1])
    assert match > 0.2 > 0.05 > other


# ------------------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip_and_io(tmp_path: Path, sample: list[CorpusQuery]) -> None:
    texts = [q.text for q in sample[:1000]]
    tok = WordTokenizer.train(texts)
    for text in texts[:200]:
        ids = tok.encode(text, 10_000)
        assert ids[0] == 2 and 1 not in ids
        assert tok.decode(ids) == text
    assert len(tok.encode(texts[0], 5)) == 5
    assert 1 in tok.encode("Zyxwvut qqq", 50)
    tok.save(tmp_path / "tok.json")
    loaded = WordTokenizer.load(tmp_path / "tok.json")
    assert loaded.vocab == tok.vocab
    assert loaded.encode(texts[3], 64) == tok.encode(texts[3], 64)
    batch = tok.encode_batch(texts[:4], 64)
    assert batch.shape[0] == 4 and batch.shape[1] <= 64 and (batch[:, 0] == 2).all()


# ---------------------------------------------------------------------------------------------------- models


def test_model_shapes_and_size_ratio() -> None:
    vocab = WordTokenizer.load(ASSETS_DIR / TOKENIZER_FILE).vocab_size
    teacher = PlannerModel.from_config(teacher_config(vocab)).eval()
    student = PlannerModel.from_config(student_config(vocab)).eval()
    ids = torch.randint(3, vocab, (3, 20))
    ids[1, 12:] = 0  # padding
    for model in (teacher, student):
        out = model(ids)
        assert out["count_logits"].shape == (3, 5) and out["structure_logits"].shape == (3, 3)
        assert out["difficulty"].shape == (3,) and out["log_answer_tokens"].shape == (3,)
        assert out["subtask_difficulty"].shape == (3, 5) and out["subtask_log_tokens"].shape == (3, 5)
        assert all(torch.isfinite(v).all() for v in out.values())
    n_teacher, n_student = teacher.num_parameters(), student.num_parameters()
    assert 1_000_000 <= n_teacher <= 2_000_000
    assert 100_000 <= n_student <= 200_000
    assert 8.0 <= n_teacher / n_student <= 12.0


def test_tiny_distillation_lowers_student_loss(sample: list[CorpusQuery]) -> None:
    torch.manual_seed(0)
    queries = sample[:64]
    tok = WordTokenizer.train([q.text for q in queries])
    split = encode_split(queries, tok)
    teacher = PlannerModel.from_config(teacher_config(tok.vocab_size)).eval()
    student = PlannerModel.from_config(student_config(tok.vocab_size))
    soft = teacher_outputs(teacher, split)
    index = np.arange(len(split))

    def loss_now() -> float:
        student.eval()
        with torch.no_grad():
            ids, targets = split.batch(index)
            loss, _ = distillation_loss(student(ids), {k: v for k, v in soft.items()}, targets)
        return float(loss)

    before = loss_now()
    hist = train_student(student, split, soft, epochs=10, batch_size=16, lr=3e-3, seed=0, progress=False)
    after = loss_now()
    assert hist["steps"] == 40 and hist["complete"]
    assert after < 0.8 * before, (before, after)


# ------------------------------------------------------------------------------------------- shipped student


def test_assets_small_enough() -> None:
    files = [p for p in ASSETS_DIR.iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"student.pt", TOKENIZER_FILE, "planner.json"} <= names
    assert sum(p.stat().st_size for p in files) < 5 * 1024 * 1024


def test_shipped_student_annotates_fast() -> None:
    planner = LearnedPlanner.load_default()
    assert LearnedPlanner.load_default() is planner  # cached
    text = "Summarise these three reports on inflation, vaccines and volcanoes. Answer briefly."
    (out,) = planner.predict([text])
    assert isinstance(out, PlannerOutput)
    assert 1 <= out.subtask_count <= 5 and out.structure in STRUCTURES
    assert out.subtask_difficulty.shape == (5,) and out.subtask_output_tokens.shape == (5,)
    assert (out.subtask_output_tokens > 0).all() and out.answer_tokens > 0
    for _ in range(10):
        planner.predict([text])
    times_ms = []
    for _ in range(30):
        t0 = time.perf_counter()
        planner.predict([text])
        times_ms.append((time.perf_counter() - t0) * 1e3)
    assert float(np.median(times_ms)) < 10.0


def test_shipped_student_beats_prior() -> None:
    queries = make_splits(99, 0, 0, 400)["test"]
    pred = LearnedPlanner.load_default().predict_arrays([q.text for q in queries])
    k_true = np.array([q.subtask_count for q in queries])
    assert np.mean(pred["subtask_count"] == k_true) > 0.6  # the prior's best guess gets 0.3
    b_true = np.array([q.difficulty for q in queries])
    assert np.sqrt(np.mean((pred["difficulty"] - b_true) ** 2)) < 0.7  # the prior's RMSE is 1.0
    log_err = np.log(pred["answer_tokens"] / np.array([q.answer_tokens for q in queries]))
    assert np.std(log_err) < 0.5  # the prior's is 0.6


def test_pickle_round_trip() -> None:
    planner = LearnedPlanner.load_default()
    blob = pickle.dumps(planner)
    assert len(blob) < 1000  # only the checkpoint path travels
    clone = pickle.loads(blob)
    texts = ["Translate a menu into French.", "First, solve a derivative; then check a quadratic equation."]
    for a, b in zip(planner.predict(texts), clone.predict(texts), strict=True):
        assert a.subtask_count == b.subtask_count and a.structure == b.structure
        np.testing.assert_allclose(a.subtask_output_tokens, b.subtask_output_tokens)


def test_teacher_checkpoint_loads() -> None:
    model, role = load_checkpoint(ASSETS_DIR / "teacher.pt")
    assert role == "teacher" and model.num_parameters() > 1_000_000
    assert LearnedPlanner.load(ASSETS_DIR / "teacher.pt").predict(["Tell me about pets."])[0].subtask_count >= 1


# ------------------------------------------------------------------------------------------------------ CLIs


def test_train_cli_tiny_run(tmp_path: Path) -> None:
    train_cli.main(
        ["--out", str(tmp_path), "--n-train", "48", "--n-val", "16", "--n-test", "16", "--teacher-epochs", "1",
         "--student-epochs", "1", "--batch-size", "16", "--no-progress", "--tensorboard", str(tmp_path / "tb")]
    )
    for name in ("teacher.pt", "student.pt", TOKENIZER_FILE, "planner.json"):
        assert (tmp_path / name).is_file()
    assert any((tmp_path / "tb").iterdir())
    planner = LearnedPlanner.load(tmp_path)
    assert planner.role == "student" and len(planner.predict(["Tell me about pets."])) == 1


def test_report_cli(capsys: pytest.CaptureFixture[str]) -> None:
    report_cli.main(["--calls", "5", "--n-test", "100", "--markdown"])
    text = capsys.readouterr().out
    assert "| metric | teacher | student |" in text
    assert "subtask-count accuracy" in text and "planner.length_noise_sigma" in text


def test_predictions_do_not_depend_on_torch_threads(sample: list[CorpusQuery]) -> None:
    """The planner's forward pass runs on a fixed number of torch threads: float32 reductions split by thread
    count, and episodes with the learned planner differed between 1 and 2 threads (machines, processes that set
    torch's threads). The process's own setting is restored."""
    planner = LearnedPlanner.load_default()
    for size in (6, 10, 64):  # batches of 6 and 10 of these texts differed between 1 and 2 threads without it
        texts = [q.text for q in sample[:size]]
        outputs = {}
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            try:
                outputs[threads] = planner.predict_arrays(texts)
                assert torch.get_num_threads() == threads
            finally:
                torch.set_num_threads(1)
        for threads in (2, 3):
            for key, value in outputs[1].items():
                assert value.tobytes() == outputs[threads][key].tobytes(), (size, threads, key)


def test_predictions_are_the_same_for_the_same_list(sample: list[CorpusQuery]) -> None:
    """The planner sorts the texts by length and runs PLANNER_BATCH_ROWS a pass: the same list gives the same
    floats, and another batching only moves the last float32 bits (counts and structures stay)."""
    planner = LearnedPlanner.load_default()
    texts = [q.text for q in sample[:100]]
    first, again = planner.predict_arrays(texts), planner.predict_arrays(texts)
    whole = planner.predict_arrays(texts, batch_size=len(texts))
    alone = planner.predict_arrays(texts[:1])
    assert PLANNER_BATCH_ROWS < len(texts)
    for key in first:
        assert first[key].tobytes() == again[key].tobytes(), key
        np.testing.assert_allclose(whole[key], first[key], rtol=1e-4, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(alone[key][0], first[key][0], rtol=1e-4, atol=1e-5, err_msg=key)
