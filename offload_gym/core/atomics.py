"""Atomic loads and stores of int64 array elements, for compiled code that waits on another thread.

A batch's worker thread waits for its next share of the envs inside compiled code (no GIL, no wake-up):
it polls a control array that the calling thread writes. A plain load in such a loop may be hoisted out of it by
the compiler; these are LLVM atomic loads (acquire) and stores (release), so each poll reads memory and what a
thread wrote before its release store is visible after the matching acquire load. Without the compiler they are
plain reads and writes.
"""

from __future__ import annotations

from typing import Any

from offload_gym.core._jit import JIT_ENABLED

__all__ = ["atomic_load", "atomic_store"]

if JIT_ENABLED:
    from numba.core import cgutils as _cgutils
    from numba.core import types as _types
    from numba.core.extending import intrinsic as _intrinsic

    def _element_pointer(context: Any, builder: Any, ary_type: Any, ary: Any, index_type: Any, index: Any) -> Any:
        arr = context.make_array(ary_type)(context, builder, value=ary)
        idx = context.cast(builder, index, index_type, _types.intp)
        return _cgutils.get_item_pointer(context, builder, ary_type, arr, [idx])

    def _is_int64_vector(ary: Any, index: Any) -> bool:
        return (isinstance(ary, _types.Array) and ary.ndim == 1 and ary.dtype == _types.int64
                and isinstance(index, _types.Integer))

    @_intrinsic
    def atomic_load(typingctx: Any, ary: Any, index: Any) -> Any:
        """``ary[index]`` read with acquire ordering (1-D int64 ``ary``)."""
        if not _is_int64_vector(ary, index):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ptr = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
            return builder.load_atomic(ptr, "acquire", 8)

        return _types.int64(ary, index), codegen

    @_intrinsic
    def atomic_store(typingctx: Any, ary: Any, index: Any, value: Any) -> Any:
        """``ary[index] = value`` with release ordering (1-D int64 ``ary``)."""
        if not _is_int64_vector(ary, index) or not isinstance(value, _types.Integer):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ptr = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
            builder.store_atomic(context.cast(builder, args[2], signature.args[2], _types.int64), ptr, "release", 8)
            return context.get_dummy_value()

        return _types.none(ary, index, value), codegen
else:
    def atomic_load(ary: Any, index: int) -> int:
        """Without the compiler: ``ary[index]``."""
        return int(ary[index])

    def atomic_store(ary: Any, index: int, value: int) -> None:
        """Without the compiler: ``ary[index] = value``."""
        ary[index] = value
