"""``njit``: numba's ``njit(cache=True)`` where numba is installed, else the function itself (plain Python).

The kernels are written in the subset of Python that numba compiles, so both forms run the same source and
give the same floats (the tests compare each kernel with the Python engine; ``NUMBA_DISABLE_JIT=1`` forces
the plain form, for debugging).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

try:
    import numba as _numba
except ImportError:  # pragma: no cover - numba is in the dev extra
    _numba = None

#: whether kernels are compiled (numba importable); with ``NUMBA_DISABLE_JIT=1`` numba itself runs them as Python
HAVE_NUMBA = _numba is not None


def njit(func: F) -> F:
    """Compile ``func`` with numba (nopython, on-disk cache) or return it unchanged without numba."""
    if _numba is None:  # pragma: no cover
        return func
    return _numba.njit(cache=True)(func)  # type: ignore[no-any-return]


def njit_inline(func: F) -> F:
    """:func:`njit` for a small helper that takes the state tuple: inlined where it is called, because a compiled
    call passes the tuple's dozens of arrays by value (about 0.4 us a call, more than most helpers' work)."""
    if _numba is None:  # pragma: no cover
        return func
    return _numba.njit(cache=True, inline="always")(func)  # type: ignore[no-any-return]
