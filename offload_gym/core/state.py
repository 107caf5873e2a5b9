"""The compiled engine's state as one reference (a numba StructRef), not a tuple of its arrays.

Every kernel takes the state ``S`` and reads its members by name (``S.gf``, ``S.qi``...). A StructRef is passed
by reference: a call costs one reference count, where a tuple of the 48 members cost 96 atomic reference-count
operations a call (measured with ``perf``: 60 % of the kernels' time went to ``NRT_incref``/``NRT_decref``), and
the functions' signatures (so the compile) are a fraction of the size.

The type is defined here, apart from the kernels, because numba's cache misses when a StructRef is defined in
the module that uses it (numba issue 9030). Without a compiler (``NUMBA_DISABLE_JIT=1``, no numba) the state
is a plain namespace with the same member names.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from offload_gym.core._jit import JIT_ENABLED

__all__ = ["FIELDS", "borrow_state", "borrowed", "make_struct"]

#: the members, in :attr:`offload_gym.core.arrays.CoreState.arrays`'s order (the index is the tuple slot)
FIELDS: tuple[str, ...] = (
    "events",  # 0 the event heap (time, seq, kind, a, b)
    "gf", "gi", "cf", "ci",  # 1-4 global floats and ints, config floats and ints
    "qi", "qf",  # 5, 6 per query
    "mf", "mi",  # 7, 8 per message
    "up_rate", "down_rate", "own_ap", "ap_up", "background",  # 9-13 per phone, per AP
    "cell_msgs",  # 14 per cell, its messages in order
    "cell_n_up", "cell_down", "cell_up",  # 15-17 uploading phones, downloads, uploads per (cell, phone)
    "qmsgs",  # 18 messages per query
    "cell_version",  # 19
    "itf", "iti",  # 20, 21 per item
    "memo", "params",  # 22, 23 the Wi-Fi model's memo and parameters
    "phone_ready", "phone_f", "phone_i",  # 24-26
    "edge_waiting", "edge_ready",  # 27, 28
    "edge_f", "edge_i",  # 29, 30 progress, progress time, rate; batch, version
    "edge_decoding", "edge_prefilling",  # 31, 32
    "successors", "query_items", "completed", "deferred",  # 33-36
    "wl_f", "wl_sub", "wl_deps",  # 37-39 the workload
    "sub_items", "carriers", "wl_k", "wl_arrival", "wl_user",  # 40-44
    "msg_margin",  # 45 messages one event can create, at most
    "queued_scratch",  # 46
    "wl_structure",  # 47
    # the estimates' scratch: every edge's snapshot (prefill ends, prefill decodes, decode remainders; pending
    # ready, prefill s, decode), its counts, the ids it sorts, and the "no extra streams" of a single estimate
    "snap_run", "snap_pend", "snap_n", "snap_ids", "no_extra_f", "no_extra_n",  # 48-53
    # the faults (time, kind, AP, stations or backhaul delay, backhaul rate), pushed at the start in this order;
    # per phone the APs from the strongest, and the (up, down) PHY rates with each (0: out of its coverage)
    "faults", "assoc_order", "assoc_rates",  # 54-56
    "rng_access",  # 57 the random access delays' numpy Generator (numba draws numpy's numbers)
    # the edge projections' scratch (estimates._projection_scratch: the packed streams, floats, ints; they grow)
    "proj_x", "proj_buf", "proj_work",  # 58-60
    # the decision's scratch of small arrays, floats and ints (engine.tmp_floats)
    "tmp_f", "tmp_i",  # 61, 62
)

if JIT_ENABLED:
    from numba.core import cgutils as _cgutils
    from numba.core import types as _types
    from numba.core.datamodel import models as _models
    from numba.core.extending import intrinsic as _intrinsic
    from numba.core.extending import register_model as _register_model
    from numba.experimental import structref as _structref

    @_structref.register
    class CoreStructType(_types.StructRef):
        """numba type of the engine state (members typed from what builds it)."""

        def preprocess_fields(self, fields: Any) -> Any:
            return tuple((name, _types.unliteral(typ)) for name, typ in fields)

    class CoreStruct(_structref.StructRefProxy):
        """The engine state as Python holds it (opaque: Python reads the arrays of ``CoreState.arrays``)."""

    _structref.define_proxy(CoreStruct, CoreStructType, list(FIELDS))

    @_intrinsic
    def borrowed(typingctx: Any, ary: Any) -> Any:
        """``ary`` without its reference count (its meminfo null; its data, shape and Python parent kept).

        Every read of an array member of the state, and every call that passes one on, increfs and decrefs it:
        atomic instructions, about a third of a decision's time when the state's members were owned (``perf``:
        ``NRT_incref``/``NRT_decref``). A borrowed array skips them (numba's NRT calls do nothing for a null
        meminfo), and boxing it gives back its Python parent. The state built over borrowed arrays must not
        outlive the arrays: :class:`offload_gym.core.arrays.CoreState` holds both, and whoever keeps a state
        keeps its :class:`CoreState`."""
        if not isinstance(ary, _types.Array):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            out = context.make_array(ary)(context, builder, value=args[0])
            out.meminfo = _cgutils.get_null_value(out.meminfo.type)
            return out._getvalue()

        return ary(ary), codegen

    class BorrowedStructType(_types.StructRef):
        """numba type of the state as the kernels pass it: the same members and memory as
        :class:`CoreStructType`, its meminfo held as a plain pointer, so passing it on and binding it cost no
        reference counts (each kernel call that took the owned state made an atomic incref and decref: after
        :func:`borrowed` arrays, most of the 18 % of the vector env's samples still in ``NRT_incref``/``decref``).
        Made from an owned state by :func:`borrow_state` at each entry point, for the duration of that call."""

        def preprocess_fields(self, fields: Any) -> Any:
            return tuple((name, _types.unliteral(typ)) for name, typ in fields)

    @_register_model(BorrowedStructType)
    class _BorrowedStructModel(_models.StructModel):
        def __init__(self, dmm: Any, fe_type: Any) -> None:
            super().__init__(dmm, fe_type, [("meminfo", _types.voidptr)])

    _structref.define_attributes(BorrowedStructType)

    @_intrinsic
    def borrow_state(typingctx: Any, state: Any) -> Any:
        """The owned state ``state`` as a :class:`BorrowedStructType` (no reference taken: the caller's ``state``
        keeps it alive, so a borrowed state is never stored anywhere that outlives the call)."""
        if not isinstance(state, CoreStructType):
            return None
        out_type = BorrowedStructType(list(state.field_dict.items()))

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            meminfo = _cgutils.create_struct_proxy(state)(context, builder, value=args[0]).meminfo
            out = _cgutils.create_struct_proxy(out_type)(context, builder)
            out.meminfo = builder.bitcast(meminfo, context.get_value_type(_types.voidptr))
            return out._getvalue()

        return out_type(state), codegen
else:
    def borrowed(ary: Any) -> Any:
        """Without the compiler: the array itself."""
        return ary

    def borrow_state(state: Any) -> Any:
        """Without the compiler: the state itself."""
        return state


def make_struct(members: tuple[Any, ...]) -> Any:
    """The state without a compiler: a namespace of the members by name (the compiled form is built inside
    numba, :func:`offload_gym.core.engine.build_struct`)."""
    return SimpleNamespace(**dict(zip(FIELDS, members, strict=True)))
