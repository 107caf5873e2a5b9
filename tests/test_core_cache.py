"""The core's numba cache: where it is, and that a change of the core's sources drops all of it at once."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("numba")

from numba.core.caching import _CacheLocator

from offload_gym.core import _jit


def test_the_cache_folder_is_the_one_numba_uses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert _jit._cache_dir() == Path(_jit.__file__).resolve().parent / "__pycache__"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert _jit._cache_dir() == tmp_path / _CacheLocator.get_suitable_cache_subpath(_jit.__file__)


def test_a_source_change_drops_the_cache_in_numba_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    ours = _jit._cache_dir()
    ours.mkdir(parents=True)
    other = tmp_path / "someone_else_0123"  # another project's cache in the same NUMBA_CACHE_DIR
    other.mkdir()
    for folder in (ours, other):
        (folder / "engine._push-130.py311.nbi").write_bytes(b"x")
    (ours / "offload_gym_core.stamp").write_text("an older version")
    _jit._drop_stale_cache()
    assert not list(ours.glob("*.nbi")) and list(other.glob("*.nbi"))
    assert not _jit.cache_is_warm()
    (ours / "step.decide_entry-417.py311.nbi").write_bytes(b"x")  # now current: kept, and warm
    _jit._drop_stale_cache()
    assert _jit.cache_is_warm()
