"""Learned query planner: synthetic corpus, tokenizer, teacher/student transformer and the shipped student.

The corpus and tokenizer need only numpy; the model classes import torch lazily on first access, so
``offload_gym.planner.corpus`` can be used without torch installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from offload_gym.planner.corpus import (
    MAX_SUBTASKS,
    STRUCTURES,
    TASK_TYPES,
    CorpusQuery,
    generate_query,
    make_deps,
    make_splits,
)
from offload_gym.planner.tokenizer import WordTokenizer

if TYPE_CHECKING:
    from offload_gym.planner.learned import LearnedPlanner, PlannerOutput
    from offload_gym.planner.models import PlannerConfig, PlannerModel, student_config, teacher_config

_LAZY: dict[str, str] = {
    "LearnedPlanner": "offload_gym.planner.learned",
    "PlannerOutput": "offload_gym.planner.learned",
    "PlannerConfig": "offload_gym.planner.models",
    "PlannerModel": "offload_gym.planner.models",
    "student_config": "offload_gym.planner.models",
    "teacher_config": "offload_gym.planner.models",
}

__all__ = [
    "MAX_SUBTASKS",
    "STRUCTURES",
    "TASK_TYPES",
    "CorpusQuery",
    "LearnedPlanner",
    "PlannerConfig",
    "PlannerModel",
    "PlannerOutput",
    "WordTokenizer",
    "generate_query",
    "make_deps",
    "make_splits",
    "student_config",
    "teacher_config",
]


def __getattr__(name: str) -> Any:
    """Import torch-backed names on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
