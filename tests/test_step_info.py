"""A step's info is a ``dict`` whose deep copy (SB3's DummyVecEnv makes one every step) is fast and the same as
``copy.deepcopy`` of a plain dict, and whose pickle is a plain dict."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import gymnasium as gym
import numpy as np

import offload_gym  # noqa: F401
from offload_gym.envs.info import StepInfo


def _containers(value: Any) -> list[Any]:
    """Every list, dict and array inside ``value`` (itself included), depth first."""
    found = [value] if isinstance(value, (list, dict, np.ndarray)) else []
    if isinstance(value, dict):
        for item in value.values():
            found += _containers(item)
    elif isinstance(value, list):
        for item in value:
            found += _containers(item)
    return found


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _episode_infos() -> list[dict[str, Any]]:
    env = gym.make("offload_gym/WifiOffload-v0", config={"episode": {"queries": 30}})
    _, info = env.reset(seed=3)
    infos, done = [info], False
    rng = np.random.default_rng(3)
    while not done:
        _, _, _, done, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        infos.append(info)
    return infos


def test_an_infos_deep_copy_is_a_full_copy_equal_to_deepcopys() -> None:
    infos = _episode_infos()
    assert any(info["completed"] for info in infos) and "episode_metrics" in infos[-1]
    for info in infos:
        assert isinstance(info, StepInfo) and isinstance(info, dict)
        copied = copy.deepcopy(info)
        assert type(copied) is StepInfo
        assert _same(copied, copy.deepcopy(dict(info)))
        originals = {id(c) for c in _containers(info)}
        assert not originals & {id(c) for c in _containers(copied)}  # nothing mutable is shared
        for record in copied["completed"]:
            assert type(record) is dict  # the records stay plain dicts (contract)
    batch = copy.deepcopy(infos[:8])  # what DummyVecEnv copies: the list of its envs' infos
    assert all(_same(a, b) for a, b in zip(batch, infos[:8], strict=True))


def test_an_info_pickles_as_a_plain_dict() -> None:
    info = _episode_infos()[-1]
    loaded = pickle.loads(pickle.dumps(info))
    assert type(loaded) is dict and _same(loaded, dict(info))
    assert type(copy.copy(info)) is dict and copy.copy(info) == dict(info)


class _Marker:
    def __init__(self) -> None:
        self.items = [1, 2]


def test_values_a_wrapper_adds_are_copied_as_deepcopy_copies_them() -> None:
    shared = [1.0, [2.0]]
    loop: list[Any] = [0]
    loop.append(loop)
    info = StepInfo(action_mask=np.ones(3, dtype=np.int8), shared=shared, again=shared, loop=loop,
                    tuple_keys={(1, 2): [3]}, objects=np.array([{"a": 1}], dtype=object), marker=_Marker(),
                    view=np.arange(12.0).reshape(3, 4).T, scalar=np.float32(1.5))
    copied = copy.deepcopy(info)
    reference = copy.deepcopy(dict(info))
    assert copied["shared"] is copied["again"] and copied["shared"] is not shared  # one copy per object
    assert reference["shared"] is reference["again"]
    assert copied["loop"][1] is copied["loop"] and copied["loop"] is not loop
    assert copied["tuple_keys"] == {(1, 2): [3]} and copied["tuple_keys"][(1, 2)] is not info["tuple_keys"][(1, 2)]
    assert copied["objects"][0] == {"a": 1} and copied["objects"][0] is not info["objects"][0]
    assert copied["marker"] is not info["marker"] and copied["marker"].items == [1, 2]
    assert copied["marker"].items is not info["marker"].items
    assert np.array_equal(copied["view"], info["view"]) and not np.shares_memory(copied["view"], info["view"])
    assert copied["view"].strides == reference["view"].strides  # order kept, as ndarray.__deepcopy__ keeps it
    assert copied["scalar"] == np.float32(1.5)
