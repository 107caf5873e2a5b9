"""``njit``: numba's ``njit(cache=True)`` where numba is installed, else the function itself (plain Python).

The kernels are written in the subset of Python that numba compiles, so both forms run the same source and
give the same floats (the tests compare each kernel with the Python engine; ``NUMBA_DISABLE_JIT=1`` forces
the plain form, for debugging).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

try:
    import numba as _numba
except ImportError:  # pragma: no cover - numba is in the dev extra
    _numba = None

#: whether kernels are compiled (numba importable); with ``NUMBA_DISABLE_JIT=1`` numba itself runs them as Python
HAVE_NUMBA = _numba is not None
#: whether they really run compiled (numba, and not ``NUMBA_DISABLE_JIT=1``): the plain form uses Python lists
JIT_ENABLED = HAVE_NUMBA and not _numba.config.DISABLE_JIT


#: the core's modules with no compiled code and no numba types (their edits leave the cache valid)
PYTHON_ONLY = frozenset({"arrays.py", "__init__.py", "__main__.py", "warm.py"})


def _drop_stale_cache() -> None:
    """Delete the core's numba cache when any of the core's sources changed since it was written.

    numba keys a cached function on its own file only, but the kernels call one another across files: an
    edit of ``engine.py`` would leave ``estimates.py``'s cached code calling the old engine. One stamp over
    all the sources of this package keeps the whole cache consistent (the next import recompiles it).
    """
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(here.glob("*.py")):
        if source.name in PYTHON_ONLY:
            continue
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    stamp = digest.hexdigest()
    cache_dir = Path(os.environ.get("NUMBA_CACHE_DIR") or here / "__pycache__")
    stamp_file = cache_dir / "offload_gym_core.stamp"
    try:
        if stamp_file.read_text() == stamp:
            return
    except OSError:
        pass
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for pattern in ("*.nbi", "*.nbc"):
            for stale in cache_dir.rglob(pattern):
                if "offload_gym" in str(stale.parent):  # a shared NUMBA_CACHE_DIR holds other projects' caches too
                    stale.unlink(missing_ok=True)
        stamp_file.write_text(stamp)
    except OSError:  # pragma: no cover - a read-only install: numba then compiles in memory
        pass


def cache_is_warm() -> bool:
    """Whether the compiled core's main entry point is in numba's on-disk cache (else its first use compiles
    the core: minutes, once per install, upgrade or source change)."""
    here = Path(__file__).resolve().parent
    cache_dir = Path(os.environ.get("NUMBA_CACHE_DIR") or here / "__pycache__")
    return any(cache_dir.rglob("step.decide_entry-*.nbi"))


if HAVE_NUMBA:
    _drop_stale_cache()


def njit(func: F) -> F:
    """Compile ``func`` with numba (nopython, on-disk cache) or return it unchanged without numba."""
    if _numba is None:  # pragma: no cover
        return func
    return _numba.njit(cache=True)(func)  # type: ignore[no-any-return]


def njit_inline(func: F) -> F:
    """:func:`njit` for a small helper: inlined where it is called (a compiled call costs more than its work)."""
    if _numba is None:  # pragma: no cover
        return func
    return _numba.njit(cache=True, inline="always")(func)  # type: ignore[no-any-return]
