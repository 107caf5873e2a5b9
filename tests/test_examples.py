"""The examples in examples/ run, with tiny budgets, and keep their promises (masks respected, returns logged).

Each example's library is optional: its tests skip when it is not installed (``pip install -e ".[examples]"``).
The rl-zoo3 test runs in a subprocess, because importing rl-zoo3 patches Gymnasium's ``TimeLimit`` for the
whole process.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import load_module

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> ModuleType:
    return load_module(EXAMPLES / f"{name}.py", f"example_{name}")


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """The examples set torch's thread count; give the test process its own back."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


CLEANRL_TINY = ["--num-envs", "2", "--num-steps", "32", "--total-timesteps", "128", "--seed", "3", "--quiet"]


def test_cleanrl_masked_ppo_logs_returns_and_takes_no_masked_action(torch_threads: None) -> None:
    ppo = load_example("cleanrl_masked_ppo")
    out = ppo.main(CLEANRL_TINY)
    assert out["global_step"] == 128
    # tiny episodes are 20-50 decisions: each of the 2 sub-envs finishes at least one in 64 steps
    assert len(out["episode_returns"]) >= 2
    assert all(np.isfinite(r) and r > 0 for r in out["episode_returns"])
    assert out["steps_with_masked_actions"] > 0  # the masks are not trivial here...
    assert out["masked_actions_taken"] == 0  # ...and the policy never picks a masked action
    assert out["invalid_actions_reported"] == 0  # nor did the env have to replace one
    # every finished episode is followed by one next-step reset step (unless it ended on the last step)
    assert len(out["episode_returns"]) - 2 <= out["reset_steps_skipped"] <= len(out["episode_returns"])


def test_cleanrl_masked_ppo_counters_catch_an_unmasked_policy(torch_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: with the masking turned off, the same counters see masked actions taken and replaced."""
    ppo = load_example("cleanrl_masked_ppo")
    monkeypatch.setattr(ppo, "MASKED_LOGIT", 0.0)
    out = ppo.main(CLEANRL_TINY)
    assert out["masked_actions_taken"] > 0
    assert out["invalid_actions_reported"] > 0


@pytest.mark.slow
def test_cleanrl_masked_ppo_cli() -> None:
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "cleanrl_masked_ppo.py"), "--num-envs", "2", "--num-steps", "64",
                           "--total-timesteps", "256"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "episodic_return=" in proc.stdout
    assert "masked actions taken 0," in proc.stdout


def test_torchrl_action_mask_rollouts_respect_masks(torch_threads: None) -> None:
    pytest.importorskip("torchrl")
    trl = load_example("torchrl_action_mask")
    out = trl.main(["--steps", "60", "--seed", "1"])
    for name in ("random", "masked_policy"):
        res = out[name]
        assert res["steps"] == 60
        assert res["episodes_done"] >= 1  # the rollout crosses a reset
        assert res["masked_actions_taken"] == 0, name
        assert res["invalid_actions_reported"] == 0, name
    assert out["random"]["steps_with_masked_actions"] > 0


def test_torchrl_without_action_mask_takes_masked_actions(torch_threads: None) -> None:
    """Control: the same reader without the ``ActionMask`` transform samples masked actions."""
    pytest.importorskip("torchrl")
    import torch
    from torchrl.envs import GymEnv

    trl = load_example("torchrl_action_mask")
    torch.manual_seed(0)
    base = GymEnv("offload_gym/WifiOffload-tiny-v0")
    base.set_info_dict_reader(trl.MaskInfoReader(int(base.action_spec.space.n)))
    base.set_seed(0)
    rollout = base.rollout(60, break_when_any_done=False)
    assert trl.masked_actions_taken(rollout) > 0
    assert int(rollout["next", "invalid_actions"].max()) > 0
    base.close()


ZOO_SPY = textwrap.dedent("""
    import sys
    sys.path.insert(0, {examples!r})
    import rl_zoo_maskable as launcher
    made = []
    class Spy(launcher.MaskableEvalCallback):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.use_masking)
    launcher.MaskableEvalCallback = Spy
    launcher.main(sys.argv[1:])
    print("MASKED_EVAL_CALLBACKS", made)
""")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="rl_zoo3 not installed")
def test_rl_zoo_maskable_trains_and_evaluates_with_masks(tmp_path: Path) -> None:
    # not importorskip: importing rl_zoo3 here would patch this process's TimeLimit
    sb3_contrib = pytest.importorskip("sb3_contrib")
    args = ["--env", "offload_gym/WifiOffload-tiny-v0", "-n", "256", "-f", str(tmp_path), "--seed", "1",
            "--eval-freq", "128", "--eval-episodes", "1", "--num-threads", "1",
            "-params", "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:2"]
    proc = subprocess.run([sys.executable, "-c", ZOO_SPY.format(examples=str(EXAMPLES)), *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MASKED_EVAL_CALLBACKS [True]" in proc.stdout  # rl-zoo3's evaluation ran with masks
    run = tmp_path / "ppo_mask" / "offload_gym-WifiOffload-tiny-v0_1"
    assert (run / "evaluations.npz").is_file()
    model = sb3_contrib.MaskablePPO.load(run / "offload_gym-WifiOffload-tiny-v0.zip")
    assert model.num_timesteps >= 256
