"""The info dict a step returns: a ``dict`` whose deep copy is fast.

Stable-Baselines3's ``DummyVecEnv`` (the vector env most SB3 users train on) deep-copies every step's infos. The
generic ``copy.deepcopy`` of ours, a mask array and a list of per-query records of 15 fields each, cost about 11 us
a step inside PPO's loop, as much as a third of what our step itself costs there. :class:`StepInfo` is a plain
``dict`` in every other way (it pickles as one, so a subprocess receives a ``dict``); its deep copy is the same
copy (new containers all the way down, immutable values shared, one copy per object however often it appears),
made without ``deepcopy``'s machinery for the values it knows, and by ``copy.deepcopy`` for any other.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = ["StepInfo"]

# values ``copy.deepcopy`` itself returns as they are
_ATOMIC: frozenset[type] = frozenset({int, float, str, bool, type(None), bytes, complex, np.float64, np.int64,
                                      np.bool_})


def _deep_copy(value: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(value, memo)``, by hand for lists, plain dicts and numeric arrays."""
    cls = type(value)
    if cls in _ATOMIC:
        return value
    done = memo.get(id(value), memo)
    if done is not memo:  # already copied within this deep copy: the same copy again, as deepcopy does
        return done
    out: Any
    if cls is list:
        out = []
        memo[id(value)] = out
        out.extend(item if type(item) in _ATOMIC else _deep_copy(item, memo) for item in value)
    elif cls is dict:  # the per-query records: atomic values but one list
        out = dict(value)
        memo[id(value)] = out
        for key, item in value.items():
            if type(key) not in _ATOMIC:  # keys that need copying: deepcopy's own way throughout
                del memo[id(value)]
                return copy.deepcopy(value, memo)
            if type(item) not in _ATOMIC:
                out[key] = _deep_copy(item, memo)
    elif cls is np.ndarray and not value.dtype.hasobject:
        out = value.copy(order="K")  # what ndarray.__deepcopy__ makes
        memo[id(value)] = out
    else:
        return copy.deepcopy(value, memo)
    return out


class StepInfo(dict):  # type: ignore[type-arg]
    """A step's info: a ``dict`` (module docstring) whose ``copy.deepcopy`` is fast and exact, and whose pickle is a
    plain ``dict``'s."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> StepInfo:
        out = StepInfo()
        memo[id(self)] = out
        atomic = _ATOMIC
        for key, value in self.items():
            if type(key) not in atomic:
                key = _deep_copy(key, memo)
            out[key] = value if type(value) in atomic else _deep_copy(value, memo)
        return out

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        return dict, (dict(self),)
