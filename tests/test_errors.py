"""Every row of the README's Errors table: the mistake gives one clear error naming the field and what is allowed.

Config and env rows: the exception type and a pattern for the message (field named, allowed values
named). Command-line rows (evaluate.py, train.py): exit code 2, one ``error:`` line on stderr, no
traceback. The doc and this file are kept in step: every row id has a test, and every example message
in the doc matches the pattern its test applies to the real message.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import offload_gym
from offload_gym.config import ConfigError, make_config
from offload_gym.policies import make_policy

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "README.md"  # the "Errors" section
PAPER = "offload_gym/WifiOffload-v0"
TINY = "offload_gym/WifiOffload-tiny-v0"
NO_SPLIT = {"workload": {"subtask_count_probs": [1, 0, 0, 0, 0]}}


def _bad_trace() -> str:
    """A trace file whose third line has a token count that is not a number."""
    import tempfile

    path = Path(tempfile.mkdtemp()) / "bad_trace.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,10,5\n1.5,ten,5\n")
    return str(path)


@dataclass(frozen=True)
class Case:
    """A mistake, the exception it must raise and a regex its message must match."""

    run: Callable[[], Any]
    exc: type[BaseException]
    pattern: str


def _make(config: Any = None, env_id: str = PAPER, **kwargs: Any) -> Callable[[], Any]:
    return lambda: gym.make(env_id, config=config, **kwargs)


def _step_after_end() -> None:
    env = gym.make(TINY)
    _, info = env.reset(seed=0)
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    env.step(0)


def _step(action: Any, config: dict[str, Any] | None = None) -> Callable[[], None]:
    def run() -> None:
        env = gym.make(PAPER, config=config)
        env.reset(seed=0)
        env.step(action)

    return run


def _reset_with_new_aps() -> None:
    env = gym.make(TINY)
    env.reset(seed=0)
    env.reset(options={"config": {"topology": {"n_aps": 3}}})


def _bad_render_mode() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Gymnasium warns first; the env then refuses
        gym.make(TINY, render_mode="rgb")


CONFIG_ALLOWED_EDGE = r"Allowed here: model, prefill_tps, decode_tps, kappa, max_batch, ability"

CASES: dict[str, Case] = {
    "C01": Case(_make({"edge": {"kapa": 0.1}}), ConfigError,
                r"^edge\.kapa: unknown config key\. Did you mean 'edge\.kappa'\? " + CONFIG_ALLOWED_EDGE),
    "C02": Case(_make({"topolgy": {"n_users": 3}}), ConfigError,
                r"^topolgy: unknown config key\. Did you mean 'topology'\? Allowed here: topology, wifi, .*faults"),
    "C03": Case(_make({"edge.kapa": 0.1}), ConfigError,
                r"^edge\.kapa: unknown config key\. Did you mean 'edge\.kappa'\? " + CONFIG_ALLOWED_EDGE),
    "C04": Case(_make({"topology": {"n_users": "20"}}), ConfigError, r"^topology\.n_users: expected an integer, got str"),
    "C05": Case(_make({"topology": {"n_users": 2.5}}), ConfigError,
                r"^topology\.n_users: expected an integer, got float 2\.5"),
    "C06": Case(_make({"edge": 3}), ConfigError, r"^edge: expected a mapping of EdgeConfig fields, got int"),
    "C07": Case(_make("edge.kappa=0.1"), ConfigError, r"^config: expected a mapping of sections, got str"),
    "C08": Case(_make({"edge": {"kappa": -1}}), ConfigError, r"^edge\.kappa: -1\.0 is out of range; must be >= 0"),
    "C09": Case(_make({"episode": {"queries": 0}}), ConfigError, r"^episode\.queries: 0 is out of range; must be >= 1"),
    "C10": Case(_make({"edge": {"kappa": float("nan")}}), ConfigError, r"^edge\.kappa: expected a finite number, got nan"),
    "C11": Case(_make({"planner": {"kind": "orcale"}}), ConfigError,
                r"^planner\.kind: 'orcale' is not allowed; choose one of \['oracle', 'noisy-oracle'.*"
                r"\(did you mean 'oracle'\?\)"),
    "C12": Case(_make({"topology": {"n_aps": 3, "ap_positions": [[1, 1], [2, 2]]}}), ConfigError,
                r"^topology\.ap_positions: has 2 positions but topology\.n_aps is 3; give exactly one \[x, y\] per AP"),
    "C13": Case(_make({"faults": {"ap_outages": [{"ap": 9, "start_s": 1, "duration_s": 1}]}}), ConfigError,
                r"^faults\.ap_outages\[0\]\.ap: AP 9 does not exist; allowed 0\.\.3 \(topology\.n_aps is 4\)"),
    "C14": Case(_make({"faults": {"background_changes": [{"ap": 5}]}}), ConfigError,
                r"^faults\.background_changes\[0\]\.ap: AP 5 does not exist; allowed -1 \(every AP\) or 0\.\.3"),
    "C15": Case(_make({"workload": {"subtask_count_probs": [0.5, 0.4]}}), ConfigError,
                r"^workload\.subtask_count_probs: \[0\.5, 0\.4\] must be non-negative and sum to 1 \(they sum to 0\.9\)"),
    "C16": Case(_make({"workload": {"structure_probs": [0.5, 0.5]}}), ConfigError,
                r"^workload\.structure_probs: needs 3 probabilities \(fan-out, chain, DAG\), got 2"),
    "C17": Case(_make({"phone": {"device_classes": [{"share": 0.5}]}}), ConfigError,
                r"^phone\.device_classes: shares sum to 0\.5; they must sum to 1"),
    "C18": Case(lambda: offload_gym.OffloadEnv(scenario="tinyy"), ConfigError,
                r"^scenario: 'tinyy' is unknown; choose one of \['azure-code', 'azure-conv', 'paper', 'paper-dict', "
                r"'paper-energy', 'paper-query', 'paper-residual', 'tiny'\]"),
    "C19": Case(_reset_with_new_aps, ValueError,
                r"^options\['config'\]: topology\.n_aps fixes the spaces and cannot change at reset"),
    "C20": Case(_make({"invalid_action": "ignore"}), ConfigError,
                r"^invalid_action: 'ignore' is not allowed; choose one of \['fallback', 'raise'\]"),
    "C21": Case(_make({"episode": {"queries": float("inf")}}), ConfigError,
                r"^episode\.queries: expected an integer, got float inf"),
    "C22": Case(_make({"topology": {"n_users": 10**400}}), ConfigError,
                r"^topology\.n_users: an integer of 401 digits is out of range; must be >= 1 and <= 1000"),
    "C23": Case(_make({"topology": {"n_users": 1e308}}), ConfigError,
                r"^topology\.n_users: 1e\+308 is out of range; must be >= 1 and <= 1000"),
    "C24": Case(_make({"edge.kappa": 0.1, "edge": {"kappa": 0.2}}), ConfigError,
                r"^edge\.kappa: given twice \(0\.1 and 0\.2, once dotted and once nested\); give it once"),
    "C25": Case(_make({"workload": {"subtask_count_probs": [1.5, -0.5]}}), ConfigError,
                r"^workload\.subtask_count_probs: \[1\.5, -0\.5\] has negative entries \[-0\.5\]; probabilities must be "
                r">= 0 and sum to 1"),
    "C26": Case(_make({"planner": {"kind": "learned", "checkpoint": "/dev/null"}}), ConfigError,
                r"^planner\.checkpoint: cannot load '/dev/null' as a planner checkpoint \(EOFError.*\); expected a file "
                r"written by python -m offload_gym\.planner\.train"),
    "C27": Case(_make({"edge": {"model": "13B"}}), ConfigError,
                r"^edge\.model: '13B' is not allowed; choose one of \['3B', '8B', '70B', 'custom'\]"),
    "C28": Case(_make({"workload": {"arrival_rate": 1e-300}}), ConfigError,
                r"^workload\.arrival_rate: 1e-300 is out of range; must be >= 1e-06 and <= 1000"),
    "C29": Case(lambda: gym.make(TINY).reset(seed=0, options={"config": {"action_mode": "query"}}), ValueError,
                r"^options\['config'\]: action_mode fixes the spaces and cannot change at reset \('item' -> 'query'\); "
                r"make a new env instead"),
    "C30": Case(_make({"workload": {"source": "trace", "trace": "no-such.csv"}}), ConfigError,
                r"^workload\.trace: 'no-such\.csv' is neither a shipped trace \(azure-code, azure-conv\) nor a readable "
                r"CSV file \(not found\)"),
    "C31": Case(lambda: make_config({"workload": {"source": "trace", "trace": _bad_trace()}}), ConfigError,
                r"^workload\.trace: .*bad_trace\.csv: line 3, column 2 \(ContextTokens\): 'ten' is not a token count; "
                r"allowed: a whole number >= 1"),
    "C32": Case(_make({"workload": {"source": "trace"}, "planner": {"kind": "learned"}}), ConfigError,
                r"^workload\.source: 'trace' queries carry no text for planner\.kind 'learned'; use 'corpus' or 'auto'"),
    "C33": Case(lambda: gym.make("offload_gym/WifiOffload-energy-v0").reset(
                    seed=0, options={"config": {"reward": {"energy_weight": 0.0}}}), ValueError,
                r"^options\['config'\]: reward\.energy_weight > 0 fixes the spaces and cannot change at reset "
                r"\(True -> False\)"),
    "E01": Case(_step(7), ValueError, r"^action: 7 is outside Discrete\(6\); allowed 0\.\.5"),
    "E02": Case(_step(2.5), ValueError, r"^action: 2\.5 is not an integer in Discrete\(6\); allowed 0\.\.5"),
    "E03": Case(_step(5, {**NO_SPLIT, "invalid_action": "raise"}), ValueError,
                r"^action: 5 is masked at this query decision; allowed actions: \[0, 1, 2, 3, 4\]"),
    "E05": Case(_step_after_end, RuntimeError, r"^step\(\) called after the episode ended .*call reset\(\) first"),
    "E06": Case(lambda: offload_gym.OffloadEnv().step(0), RuntimeError,
                r"^step\(\) called after the episode ended \(or before reset\(\)\); call reset\(\) first"),
    "E07": Case(_bad_render_mode, ValueError,
                r"^render_mode: 'rgb' is not allowed; choose one of \['ansi', 'rgb_array', 'human'\] or None"),
    "E09": Case(_step(2**70), ValueError, r"^action: 1\.18e\+21 is outside Discrete\(6\); allowed 0\.\.5"),
    "E10": Case(lambda: make_policy(None, make_config()), ValueError,  # type: ignore[arg-type]
                r"^policy: expected a built-in policy name, got NoneType None; choose one of \['greedy'"),
    "E08": Case(lambda: make_policy("greedyy", make_config()), ValueError,
                r"^policy: 'greedyy' is not a built-in policy \(did you mean 'greedy'\?\); choose one of \[.*'local-only'"),
}

BUILTINS = r"\(local-only, nearest-edge, random-split, greedy, greedy-no-split\)"
CLI: dict[str, tuple[list[str], str]] = {
    "X01": (["evaluate.py", "--policies", "{corrupt}"],
            r"^evaluate\.py: error: --policies: cannot read model file '[^']*corrupt\.zip' \(.*\); "
            r"expected a built-in policy " + BUILTINS + r" or a path to a trained Stable-Baselines3 \.zip$"),
    "X02": (["evaluate.py", "--policies", "{notmodel}"],
            r"^evaluate\.py: error: --policies: '[^']*notmodel\.zip' is a zip but not a Stable-Baselines3 model "
            r"\(no 'data' entry\); expected a file written by model\.save\(\)$"),
    "X03": (["evaluate.py", "--policies", "nosuch"],
            r"^evaluate\.py: error: --policies: 'nosuch' is not a built-in policy nor an existing model file; "
            r"expected a built-in policy " + BUILTINS),
    "X04": (["evaluate.py", "--config", "{bad json"],
            r"^evaluate\.py: error: --config: '\{bad json' is neither valid JSON \(.*\) nor an existing file; give e\.g\."),
    "X05": (["train.py", "--resume", "{corrupt}"],
            r"^train\.py: error: --resume: '[^']*corrupt\.zip' is not a readable Stable-Baselines3 model \(.*\)$"),
    "X06": (["train.py", "--resume", "{notmodel}"],
            r"^train\.py: error: --resume: '[^']*notmodel\.zip' is a zip but not a Stable-Baselines3 model "
            r"\(no 'data' entry\)$"),
    "X07": (["train.py", "--algo", "nosuch"],
            r"^train\.py: error: --algo: unknown algorithm 'nosuch'; allowed: .*\bppo\b.*maskable_ppo.*dqn"),
    "X08": (["evaluate.py", "--seed", "-5"], r"^evaluate\.py: error: --seed: -5 is not allowed; seeds are 0\.\.4294967295"),
    "X09": (["evaluate.py", "--episodes", "99999999999999999999"],
            r"^evaluate\.py: error: --episodes: that many is not allowed; need 1\.\.1000000$"),
    "X10": (["evaluate.py", "--env", "CartPole-v1"],
            r"^evaluate\.py: error: --env: 'CartPole-v1' is not an offload_gym environment; offload_gym provides \["),
    "X11": (["evaluate.py", "--config", "{binary}"],
            r"^evaluate\.py: error: --config: '[^']*binary\.cfg' is not a text file; give inline JSON or a \.json / \.yaml"),
    "X12": (["evaluate.py", "--config", '{"topology": {"n_users": Infinity}}'],
            r"^evaluate\.py: error: --config: topology\.n_users: expected an integer, got float inf$"),
    "X13": (["train.py", "--log-folder", "/proc/offload_gym_no_such_dir"],
            r"^train\.py: error: --log-folder: cannot create the folder '/proc/offload_gym_no_such_dir' \(.*\)$"),
    "X14": (["train.py", "--log-folder", "{afile}"],
            r"^train\.py: error: --log-folder: '[^']*afile' is a file, not a folder$"),
    "X15": (["train.py", "--tensorboard", "{afile}"],
            r"^train\.py: error: --tensorboard: '[^']*afile' is a file, not a folder$"),
    "X16": (["train.py", "--device", "tpu"],
            r"^train\.py: error: --device: 'tpu' is not a torch device; use cpu, cuda, cuda:N or auto$"),
    "X17": (["train.py", "--vec-env", "subproc", "--start-method", "bogus"],
            r"^train\.py: error: --start-method: 'bogus' is not available here; choose one of "),
    "X18": (["train.py", "--hyperparams", '{"n_steps": 0}'],
            r"^train\.py: error: hyperparams: n_steps: 0 is out of range for maskable_ppo; must be >= 1$"),
    "X19": (["train.py", "--hyperparams", '{"batch_size": -4}'],
            r"^train\.py: error: hyperparams: batch_size: -4 is out of range for maskable_ppo; must be >= 1$"),
    "X20": (["train.py", "--config", "{binary}"],
            r"^train\.py: error: --config: '[^']*binary\.cfg' is not a text file; give inline JSON or a JSON/YAML file$"),
    "X21": (["train.py", "--time-limit", "-1"],
            r"^train\.py: error: --time-limit: must be a positive number of seconds, got -1\.0$"),
    "X22": (["train.py", "--algo", "dqn", "--credit", "query"],
            r"^train\.py: error: --algo dqn: credit, gamma_per_s and behaviour cloning need an on-policy actor-critic"),
}


@pytest.mark.parametrize("row", sorted(CASES))
def test_api_error(row: str) -> None:
    case = CASES[row]
    with pytest.raises(case.exc) as info:
        case.run()
    assert re.search(case.pattern, str(info.value)), str(info.value)
    if case.exc is ConfigError:
        assert isinstance(info.value, ValueError)


def test_masked_action_with_the_default_rule_runs_on_the_phone() -> None:  # E04
    env = gym.make(PAPER, config=NO_SPLIT)
    env.reset(seed=0)
    _, _, _, _, info = env.step(5)
    assert info["invalid_actions"] == 1
    records = list(info["completed"])
    while not any(r["query_id"] == 0 for r in records):  # the phone, until query 0's record comes
        _, _, _, truncated, info = env.step(0)
        records += info["completed"]
        assert not truncated or any(r["query_id"] == 0 for r in records)
    assert next(r for r in records if r["query_id"] == 0)["placements"] == [0]


def _fixture_files(tmp: Path) -> dict[str, str]:
    corrupt = tmp / "corrupt.zip"
    corrupt.write_bytes(b"this is not a zip archive\n")
    notmodel = tmp / "notmodel.zip"
    with zipfile.ZipFile(notmodel, "w") as z:
        z.writestr("hello.txt", "not a model")
    binary = tmp / "binary.cfg"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    afile = tmp / "afile"
    afile.write_text("a file, not a folder\n")
    return {"corrupt": str(corrupt), "notmodel": str(notmodel), "binary": str(binary), "afile": str(afile)}


def _script_exists(name: str) -> bool:
    return (ROOT / name).is_file()


@pytest.mark.parametrize("row", sorted(CLI))
def test_cli_error(row: str, tmp_path: Path) -> None:
    argv, pattern = CLI[row]
    if not _script_exists(argv[0]):
        pytest.skip(f"{argv[0]} does not exist yet")
    files = _fixture_files(tmp_path)
    args = [a.format(**files) if a.startswith("{") and a[1:-1] in files else a for a in argv[1:]]
    cmd = [sys.executable, str(ROOT / argv[0]), *args]
    if argv[0] == "train.py" and "--log-folder" not in argv:
        cmd += ["--log-folder", str(tmp_path / "logs")]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    stderr = out.stderr.strip()
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 2, (out.returncode, out.stderr)
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, stderr
    assert re.search(pattern, error_lines[0]), error_lines[0]
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir()), "a failed start left files"


def _doc_rows() -> dict[str, str]:
    """Row id -> example message (the last column, without backticks) of every table row in the README's Errors section."""
    rows: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| ([CEX]\d\d) \|", line)
        if m:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[m.group(1)] = cells[-1].strip("`")
    return rows


def test_every_documented_error_is_tested_and_its_example_is_current() -> None:
    rows = _doc_rows()
    assert set(rows) == set(CASES) | set(CLI) | {"E04"}
    for row, case in CASES.items():
        assert re.search(case.pattern, rows[row]), f"{row}: the doc's example no longer matches: {rows[row]}"
    for row, (_, pattern) in CLI.items():
        assert re.search(pattern, rows[row]), f"{row}: the doc's example no longer matches: {rows[row]}"
