"""``njit``: numba's ``njit(cache=True)`` where numba is installed, else the function itself (plain Python).

The kernels are written in the subset of Python that numba compiles, so both forms run the same source and
give the same floats (``NUMBA_DISABLE_JIT=1`` forces
the plain form, for debugging).

The cold compile (numba's, once per install or source change) is mostly LLVM re-optimising and re-emitting
the callees that numba links into each compiled function's own code, so it grows with the number of
functions that sit above large call trees. Hence :func:`njit_inline` for a function with one or two callers
(it then has no compiled code of its own), plain :func:`njit` for small helpers called from many places
(a typed and lowered copy per call site costs more than LLVM inlining them), and loops rather than slice
assignments (``a[:] = x`` costs about 0.3 s of compile per site and brings numba's shape-error formatting
into every function above it).
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


def _cache_dir() -> Path:
    """Where numba caches this package's kernels: ``__pycache__`` beside the sources, or, with ``NUMBA_CACHE_DIR``,
    the folder numba names after this package's directory there (``core_<sha1 of the directory>``, as numba's
    ``_CacheLocator.get_suitable_cache_subpath`` does), which other projects sharing that cache never use."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        return Path(here) / "__pycache__"
    return Path(root) / f"{os.path.basename(here)}_{hashlib.sha1(here.encode()).hexdigest()}"


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
    cache_dir = _cache_dir()
    stamp_file = cache_dir / "offload_gym_core.stamp"
    try:
        if stamp_file.read_text() == stamp:
            return
    except OSError:
        pass
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for pattern in ("*.nbi", "*.nbc"):
            for stale in cache_dir.glob(pattern):
                stale.unlink(missing_ok=True)
        stamp_file.write_text(stamp)
    except OSError:  # pragma: no cover - a read-only install: numba then compiles in memory
        pass


def cache_is_warm() -> bool:
    """Whether the compiled core's main entry point is in numba's on-disk cache (else its first use compiles
    the core: minutes, once per install, upgrade or source change)."""
    return any(_cache_dir().glob("step.decide_entry-*.nbi"))


if HAVE_NUMBA:
    _drop_stale_cache()


def njit(func: F) -> F:
    """Compile ``func`` with numba (nopython, on-disk cache) or return it unchanged without numba (no C
    callback wrapper: the kernels are called from Python and from one another, never through a C pointer)."""
    if _numba is None:  # pragma: no cover
        return func
    return _generic_args(_numba.njit(cache=True, no_cfunc_wrapper=True)(func))


def _generic_args(dispatcher: Any) -> Any:
    """``dispatcher``, compiling one specialisation per argument *type* for calls from compiled code.

    numba specialises a jitted callee on every literal an argument takes at a call site
    (``_push(S, t, EV_CELL, e, 0)`` and ``_push(S, t, EV_ARRIVAL, u, 0)`` were two compiles of ``_push``);
    the callee's code is the same for any value, so the literals are widened to their types. This wraps numba's
    internal ``Dispatcher.get_call_template`` (checked on numba 0.60 and 0.68; ``scripts/trajectory_oracle.py``
    would show a numba that breaks it).
    """
    if not JIT_ENABLED:  # NUMBA_DISABLE_JIT=1: numba hands back the plain function, called as Python
        return dispatcher
    from numba.core.types import unliteral

    template = dispatcher.get_call_template

    def get_call_template(args: Any, kws: Any) -> Any:
        return template(tuple(unliteral(a) for a in args), {k: unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher


def njit_nogil(func: F) -> F:
    """:func:`njit`, releasing the GIL while it runs (so Python threads can run it on disjoint data at once)."""
    if _numba is None:  # pragma: no cover
        return func
    return _generic_args(_numba.njit(cache=True, nogil=True, no_cfunc_wrapper=True)(func))


def njit_inline(func: F) -> F:
    """:func:`njit`, inlined into its callers when numba types them (numba's ``inline="always"``): for a function
    with one or two callers, which then has no compiled code of its own (its callers' carry it)."""
    if _numba is None:  # pragma: no cover
        return func
    return _generic_args(_numba.njit(cache=True, inline="always", no_cfunc_wrapper=True)(func))
