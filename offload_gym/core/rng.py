"""numpy's ``Generator(PCG64)`` in compiled code: the streams of ``np.random.default_rng([seed, k])``, bit for bit.

A stream is a ``uint64`` array of :data:`STATE_WORDS` words (:func:`new_state`): PCG64's 128-bit LCG state and
increment as high/low words, and the cached upper half of a 64-bit output that numpy's PCG64 hands out on the
next 32-bit draw. :func:`seed_state` sets it to ``default_rng([seed, k])``'s starting state by numpy's
``SeedSequence`` hashing (``numpy/random/bit_generator.pyx``: entropy ``[seed, k]``, pool of four uint32 words,
``generate_state(4, uint64)``) and ``pcg64_set_seed`` (the same computation as
:func:`offload_gym.sim.seeding.seed_states`, per seed, in compiled code).

The draws follow numpy's C (``numpy/random/src/pcg64``, ``src/distributions``; numba's port of them is in
``numba/np/random``):

* :func:`next_uint64`: one LCG step (``state = state * MULT + inc`` modulo ``2**128``), then the XSL-RR output
  (``rotr64(hi ^ lo, hi >> 58)``);
* :func:`next_uint32`: the low half of a fresh 64-bit output, keeping the high half for the next call
  (``pcg64_next32``); only 32-bit draws touch the cache;
* :func:`random`: ``(next_uint64 >> 11) * 2**-53``;
* :func:`standard_normal`: the 256-layer ziggurat of ``random_standard_normal`` (tables from numba), whose
  rejection steps call libm's ``exp``/``log1p`` as numpy's C does;
* :func:`bounded_uint64`: ``random_bounded_uint64`` without masking: Lemire's rejection on a 32-bit draw for
  ranges below ``2**32 - 1``, else on a 64-bit one; :func:`integers` is ``Generator.integers(low, high)``
  (int64, ``high`` exclusive);
* :func:`choice_without_replacement`: ``Generator.choice(pop, size, replace=False)`` for an integer population:
  Floyd's algorithm with numpy's open-addressing set and the final shuffle, or the tail shuffle of an
  ``arange`` for large populations, as numpy chooses between them.

``tests/test_core_workload.py`` compares every draw with numpy's on many seeds.
"""

from __future__ import annotations

import numpy as np
from numba.np.random._constants import fi_double, ki_double, wi_double, ziggurat_nor_inv_r, ziggurat_nor_r

from offload_gym.core._jit import njit

__all__ = ["STATE_WORDS", "bounded_uint64", "choice_without_replacement", "integers", "new_state", "next_uint32",
           "next_uint64", "random", "seed_state", "standard_normal", "standard_normal_fill"]

#: words of a stream: state hi, state lo, inc hi, inc lo, has a cached 32-bit half (0/1), the cached half
STATE_WORDS = 6
_ST_HI, _ST_LO, _INC_HI, _INC_LO, _HAS32, _BUF32 = range(STATE_WORDS)

# numba types mixed uint64/int64 arithmetic as float64: every constant here is a uint64
_U0, _U1, _U6, _U11, _U16, _U32, _U58, _U63 = (np.uint64(v) for v in (0, 1, 6, 11, 16, 32, 58, 63))
_M32 = np.uint64(0xFFFFFFFF)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_MULT_HI = np.uint64(0x2360ED051FC65DA4)  # PCG64's 128-bit multiplier
_MULT_LO = np.uint64(0x4385DF649FCCF645)
_TWO_M53 = 1.0 / 9007199254740992.0
_LOW52 = np.uint64(0x000FFFFFFFFFFFFF)
_LOW8 = np.uint64(0xFF)
# SeedSequence's hash constants (bit_generator.pyx)
_INIT_A, _MULT_A = np.uint64(0x43B0D7E5), np.uint64(0x931E8875)
_INIT_B, _MULT_B = np.uint64(0x8B51F9DD), np.uint64(0x58F38DED)
_MIX_MULT_L, _MIX_MULT_R = np.uint64(0xCA01F9DD), np.uint64(0x4973F715)
# Generator.choice: populations above this may use the tail shuffle
_CHOICE_FLOYD_MAX_POP = 10000


@njit
def new_state() -> np.ndarray:
    """An unseeded stream (all zero words); :func:`seed_state` sets it."""
    return np.zeros(STATE_WORDS, dtype=np.uint64)


@njit
def _mulhi(a: np.uint64, b: np.uint64) -> np.uint64:
    """The high 64 bits of the 128-bit product ``a * b`` (32-bit halves: no 128-bit integers in numba)."""
    a0, a1 = a & _M32, a >> _U32
    b0, b1 = b & _M32, b >> _U32
    w0 = a0 * b0
    t = a1 * b0 + (w0 >> _U32)
    w1 = (t & _M32) + a0 * b1
    return a1 * b1 + (t >> _U32) + (w1 >> _U32)


@njit
def _step(st: np.ndarray) -> None:
    """One LCG step: ``state = state * MULT + inc`` modulo ``2**128``."""
    hi, lo = st[_ST_HI], st[_ST_LO]
    new_hi = _mulhi(lo, _MULT_LO) + lo * _MULT_HI + hi * _MULT_LO
    new_lo = lo * _MULT_LO
    lo_sum = new_lo + st[_INC_LO]
    carry = _U1 if lo_sum < new_lo else _U0
    st[_ST_HI] = new_hi + st[_INC_HI] + carry
    st[_ST_LO] = lo_sum


@njit
def next_uint64(st: np.ndarray) -> np.uint64:
    """PCG64's next 64-bit output (step, then XSL-RR)."""
    _step(st)
    hi = st[_ST_HI]
    x = hi ^ st[_ST_LO]
    rot = hi >> _U58
    return (x >> rot) | (x << ((_U0 - rot) & _U63))


@njit
def next_uint32(st: np.ndarray) -> np.uint64:
    """PCG64's next 32-bit output (as a uint64): the cached high half, or the low half of a fresh 64-bit one."""
    if st[_HAS32] != _U0:
        st[_HAS32] = _U0
        return st[_BUF32]
    x = next_uint64(st)
    st[_HAS32] = _U1
    st[_BUF32] = x >> _U32
    return x & _M32


@njit
def random(st: np.ndarray) -> float:
    """``Generator.random()``: a double in [0, 1) from the top 53 bits of a 64-bit output."""
    return float(next_uint64(st) >> _U11) * _TWO_M53


@njit
def standard_normal(st: np.ndarray) -> float:
    """``Generator.standard_normal()``: numpy's ziggurat (``random_standard_normal``)."""
    while True:
        r = next_uint64(st)
        idx = r & _LOW8
        r = r >> np.uint64(8)
        sign = r & _U1
        rabs = (r >> _U1) & _LOW52
        x = float(rabs) * wi_double[idx]
        if sign != _U0:
            x = -x
        if rabs < ki_double[idx]:
            return x  # the bulk: inside the layer's rectangle
        if idx == _U0:  # the tail beyond r
            while True:
                xx = -ziggurat_nor_inv_r * np.log1p(-random(st))
                yy = -np.log1p(-random(st))
                if yy + yy > xx * xx:
                    if ((rabs >> np.uint64(8)) & _U1) != _U0:
                        return -(ziggurat_nor_r + xx)
                    return ziggurat_nor_r + xx
        elif (fi_double[idx - _U1] - fi_double[idx]) * random(st) + fi_double[idx] < np.exp(-0.5 * x * x):
            return x


@njit
def standard_normal_fill(st: np.ndarray, out: np.ndarray) -> None:
    """``Generator.standard_normal(len(out))`` into ``out`` (the same draws as that many scalar calls)."""
    for i in range(out.shape[0]):
        out[i] = standard_normal(st)


@njit
def bounded_uint64(st: np.ndarray, rng: np.uint64) -> np.uint64:
    """A uniform integer in ``[0, rng]`` (``random_bounded_uint64(bitgen, 0, rng, 0, use_masked=False)``)."""
    if rng == _U0:
        return _U0
    if rng <= _M32:
        if rng == _M32:
            return next_uint32(st)
        # Lemire's rejection on a 32-bit draw
        rng_excl = rng + _U1
        m = next_uint32(st) * rng_excl
        leftover = m & _M32
        if leftover < rng_excl:
            threshold = (_M32 - rng) % rng_excl
            while leftover < threshold:
                m = next_uint32(st) * rng_excl
                leftover = m & _M32
        return m >> _U32
    if rng == _M64:
        return next_uint64(st)
    # Lemire's rejection on a 64-bit draw: the low and high words of the 128-bit product
    rng_excl = rng + _U1
    x = next_uint64(st)
    leftover = x * rng_excl
    if leftover < rng_excl:
        threshold = (_M64 - rng) % rng_excl
        while leftover < threshold:
            x = next_uint64(st)
            leftover = x * rng_excl
    return _mulhi(x, rng_excl)


@njit
def integers(st: np.ndarray, low: int, high: int) -> int:
    """``Generator.integers(low, high)`` (int64, ``low <= value < high``; needs ``low < high``)."""
    span = np.uint64(high - low - 1)
    return low + np.int64(bounded_uint64(st, span))


@njit
def _gen_mask(value: np.uint64) -> np.uint64:
    """The smallest all-ones mask covering ``value`` (numpy's ``_gen_mask``)."""
    mask = value
    mask |= mask >> _U1
    mask |= mask >> np.uint64(2)
    mask |= mask >> np.uint64(4)
    mask |= mask >> np.uint64(8)
    mask |= mask >> _U16
    mask |= mask >> _U32
    return mask


@njit
def _shuffle_int(st: np.ndarray, n: int, first: int, data: np.ndarray) -> None:
    """numpy's ``_shuffle_int``: swap ``data[i]`` with a uniform ``data[j]``, ``j <= i``, for ``i = n-1 .. first``."""
    for i in range(n - 1, first - 1, -1):
        j = np.int64(bounded_uint64(st, np.uint64(i)))
        temp = data[j]
        data[j] = data[i]
        data[i] = temp


@njit
def choice_without_replacement(st: np.ndarray, pop: int, out: np.ndarray) -> None:
    """``Generator.choice(pop, size=len(out), replace=False)`` (integer ``pop``, no ``p``, shuffled) into ``out``.

    ``out``: int64, at most ``pop`` long. The values and their order are numpy's, and so is what is drawn.
    """
    size = out.shape[0]
    if pop > _CHOICE_FLOYD_MAX_POP and size > pop // 50:
        # tail shuffle of the whole population (50: numpy's cutoff when shuffling)
        idx = np.arange(pop)
        _shuffle_int(st, pop, max(pop - size, 1), idx)
        for j in range(size):
            out[j] = idx[pop - size + j]
        return
    # Floyd's algorithm; the set is numpy's linear-probing table, whose probes decide when j replaces val
    mask = _gen_mask(np.uint64(1.2 * size))
    empty = _M64
    hash_set = np.full(np.int64(mask) + 1, empty, dtype=np.uint64)
    for j in range(pop - size, pop):
        val = bounded_uint64(st, np.uint64(j))
        loc = val & mask
        while hash_set[loc] != empty and hash_set[loc] != val:
            loc = (loc + _U1) & mask
        if hash_set[loc] == empty:
            hash_set[loc] = val
            out[j - pop + size] = np.int64(val)
        else:
            uj = np.uint64(j)
            loc = uj & mask
            while hash_set[loc] != empty:
                loc = (loc + _U1) & mask
            hash_set[loc] = uj
            out[j - pop + size] = j
    _shuffle_int(st, size, 1, out)


@njit
def _hashmix(value: np.uint64, hash_const: np.uint64, mult: np.uint64) -> tuple[np.uint64, np.uint64]:
    """SeedSequence's ``hashmix`` in uint32 arithmetic: the mixed value and the next running constant."""
    value = value ^ hash_const
    hash_const = (hash_const * mult) & _M32
    value = (value * hash_const) & _M32
    return value ^ (value >> _U16), hash_const


@njit
def _mix(x: np.uint64, y: np.uint64) -> np.uint64:
    result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _M32
    return result ^ (result >> _U16)


@njit
def _mix_pool(p0: np.uint64, p1: np.uint64, p2: np.uint64, p3: np.uint64, h: np.uint64
              ) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64, np.uint64]:
    """``mix_entropy``'s second loop: every ordered pair (src, dst) of distinct pool words, src-major."""
    x, h = _hashmix(p0, h, _MULT_A)
    p1 = _mix(p1, x)
    x, h = _hashmix(p0, h, _MULT_A)
    p2 = _mix(p2, x)
    x, h = _hashmix(p0, h, _MULT_A)
    p3 = _mix(p3, x)
    x, h = _hashmix(p1, h, _MULT_A)
    p0 = _mix(p0, x)
    x, h = _hashmix(p1, h, _MULT_A)
    p2 = _mix(p2, x)
    x, h = _hashmix(p1, h, _MULT_A)
    p3 = _mix(p3, x)
    x, h = _hashmix(p2, h, _MULT_A)
    p0 = _mix(p0, x)
    x, h = _hashmix(p2, h, _MULT_A)
    p1 = _mix(p1, x)
    x, h = _hashmix(p2, h, _MULT_A)
    p3 = _mix(p3, x)
    x, h = _hashmix(p3, h, _MULT_A)
    p0 = _mix(p0, x)
    x, h = _hashmix(p3, h, _MULT_A)
    p1 = _mix(p1, x)
    x, h = _hashmix(p3, h, _MULT_A)
    p2 = _mix(p2, x)
    return p0, p1, p2, p3, h


@njit
def _state_word(lo_word: np.uint64, hi_word: np.uint64, h: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Two consecutive ``generate_state`` uint32 words as one little-endian uint64, and the next constant."""
    lo, h = _hashmix(lo_word, h, _MULT_B)
    hi, h = _hashmix(hi_word, h, _MULT_B)
    return lo | (hi << _U32), h


@njit
def seed_state(st: np.ndarray, seed: np.uint64, k: np.uint64) -> None:
    """Set ``st`` to the starting state of ``np.random.default_rng([seed, k])`` (``seed < 2**64``, ``k < 2**32``)."""
    # the entropy as uint32 words: the seed as one word below 2**32, else two; then k; zeros to the pool of four
    e1, e2 = (seed >> _U32, k) if seed > _M32 else (k, _U0)
    # scalars, not a pool array: no allocation per stream
    h = _INIT_A
    p0, h = _hashmix(seed & _M32, h, _MULT_A)
    p1, h = _hashmix(e1, h, _MULT_A)
    p2, h = _hashmix(e2, h, _MULT_A)
    p3, h = _hashmix(_U0, h, _MULT_A)
    p0, p1, p2, p3, h = _mix_pool(p0, p1, p2, p3, h)
    # generate_state(4, uint64): eight uint32 words cycling over the pool, read as little-endian uint64 pairs
    h = _INIT_B
    w0, h = _state_word(p0, p1, h)
    w1, h = _state_word(p2, p3, h)
    w2, h = _state_word(p0, p1, h)
    w3, h = _state_word(p2, p3, h)
    # pcg64_set_seed: inc = (initseq << 1) | 1; state = 0; step; state += initstate; step
    st[_INC_HI] = (w2 << _U1) | (w3 >> _U63)
    st[_INC_LO] = (w3 << _U1) | _U1
    st[_ST_HI] = _U0
    st[_ST_LO] = _U0
    _step(st)
    lo = st[_ST_LO] + w1
    st[_ST_HI] = st[_ST_HI] + w0 + (_U1 if lo < w1 else _U0)
    st[_ST_LO] = lo
    _step(st)
    st[_HAS32] = _U0
    st[_BUF32] = _U0
