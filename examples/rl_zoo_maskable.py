"""rl-zoo3 training with sb3-contrib's MaskablePPO, which rl-zoo3 does not list (there is no ``ppo_mask``).

    python examples/rl_zoo_maskable.py --env offload_gym/WifiOffload-tiny-v0 -n 20000

This is ``python -m rl_zoo3.train`` with three additions, made before rl-zoo3 parses its arguments:

* ``"ppo_mask": MaskablePPO`` is added to rl-zoo3's ``ALGOS`` (the dict that ``train``'s ``--algo`` choices
  and the experiment manager read), and ``--algo ppo_mask`` is the default;
* rl-zoo3's periodic evaluation uses SB3's ``EvalCallback``, whose ``predict`` gets no masks; for
  ``ppo_mask`` it is replaced by sb3-contrib's ``MaskableEvalCallback`` (same arguments, masks on), so
  ``evaluations.npz`` and the best model are scored with masks, as in training;
* ``--gym-packages offload_gym`` (registers the ids) and ``--conf-file`` the project's
  ``agents/hyperparams/maskable_ppo.yml`` (RL-Zoo format, one entry per env id) are added unless given.

Every other rl-zoo3 option works as usual (``-n``, ``-f`` log folder, ``--seed``, ``--eval-freq``,
``-params key:value``, ``--vec-env subproc``). Not covered: ``-optimize`` (rl-zoo3 has no sampler for
``ppo_mask``) and ``rl_zoo3.enjoy`` (its ``predict`` passes no masks; use ``python evaluate.py`` instead).
The result is ``<log folder>/ppo_mask/<env id with / as ->_<run>/<env id with / as ->.zip``, loadable with
``MaskablePPO.load``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import rl_zoo3.exp_manager
import rl_zoo3.train
from rl_zoo3.utils import ALGOS
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback

ALGO = "ppo_mask"
CONF_FILE = Path(__file__).resolve().parents[1] / "agents" / "hyperparams" / "maskable_ppo.yml"


def register() -> None:
    """Make ``ppo_mask`` known to rl-zoo3 (idempotent)."""
    ALGOS[ALGO] = MaskablePPO


def with_defaults(argv: Sequence[str]) -> list[str]:
    """``argv`` plus ``--algo ppo_mask``, ``--gym-packages offload_gym`` and the project's ``--conf-file`` where absent."""
    args = list(argv)
    given = {a.split("=", 1)[0] for a in args if a.startswith("-")}
    if "--algo" not in given:
        args += ["--algo", ALGO]
    if "--gym-packages" not in given:
        args += ["--gym-packages", "offload_gym"]
    if not given & {"--conf-file", "-conf", "--yaml-file", "-yaml"}:
        args += ["--conf-file", str(CONF_FILE)]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    register()
    args = with_defaults(sys.argv[1:] if argv is None else argv)
    algo = args[args.index("--algo") + 1] if "--algo" in args else ALGO
    saved_argv, saved_callback = sys.argv, rl_zoo3.exp_manager.EvalCallback
    if algo == ALGO:
        rl_zoo3.exp_manager.EvalCallback = MaskableEvalCallback  # type: ignore[misc]  # same constructor, masks on
    sys.argv = [saved_argv[0] if saved_argv else "rl_zoo_maskable.py", *args]
    try:
        rl_zoo3.train.train()  # parses sys.argv
    finally:
        sys.argv = saved_argv
        rl_zoo3.exp_manager.EvalCallback = saved_callback  # type: ignore[misc]


if __name__ == "__main__":
    main()
