"""Cheap per-query generators: the streams of ``np.random.default_rng([seed, k])`` without building one each time.

``np.random.default_rng([seed, k])`` builds a :class:`numpy.random.SeedSequence`, a :class:`numpy.random.PCG64`
and a :class:`numpy.random.Generator`, about 25-35 us in all; an episode draws two per query. Here the PCG64
starting state that such a generator would have is computed for a whole array of seeds at once, in numpy's
uint32 arithmetic (:func:`seed_states`), and one shared generator is re-seeded to it (:class:`Reseeder`), which
costs about 2 us. The streams are the same bit for bit (``tests/test_seeding.py``).

The computation re-implements numpy's ``SeedSequence`` (``numpy/random/bit_generator.pyx``) for an entropy of
``[seed, k]`` with no spawn key and the default pool of four uint32 words:

* the entropy as uint32 words: ``seed`` as one little-endian word below ``2**32`` and two from there up to
  ``2**64``, then ``k`` as one word (``0 <= k < 2**32``), so two or three words, padded with zeros to the pool;
* the pool: each word through ``hashmix`` with the running constant from ``INIT_A``, then every ordered pair of
  distinct pool words mixed (``mix(pool[dst], hashmix(pool[src]))``); no entropy is left over for a pool of four;
* ``generate_state(4, np.uint64)``: eight uint32 words cycling over the pool, each hashed with the running
  constant from ``INIT_B``, read as four little-endian uint64 words ``w0..w3``;

and PCG64's ``pcg64_set_seed`` (``pcg_setseq_128_srandom_r``): with ``initstate = (w0 << 64) | w1`` and
``initseq = (w2 << 64) | w3``, ``inc = (initseq << 1) | 1``, ``state = 0``, one step, ``state += initstate``,
one step, where a step is ``state = state * PCG_MULT + inc`` modulo ``2**128``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PCG64_MULT", "Reseeder", "seed_states", "seed_states_many"]

_MASK32 = 0xFFFFFFFF
_MASK128 = (1 << 128) - 1
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = 0xCA01F9DD
_MIX_MULT_R = 0x4973F715
_XSHIFT = np.uint32(16)
_POOL_SIZE = 4
#: PCG64's 128-bit LCG multiplier
PCG64_MULT = 0x2360ED051FC65DA44385DF649FCCF645


def _constants(init: int, mult: int, n: int) -> list[np.uint32]:
    """The running hash constants, as each use sees them (multiplied before use)."""
    out, h = [], init
    for _ in range(n):
        h = (h * mult) & _MASK32
        out.append(np.uint32(h))
    return out


# SeedSequence.mix_entropy with a pool of 4 and at most 4 entropy words: 4 + 4 * 3 calls of hashmix
_HASH_A = _constants(_INIT_A, _MULT_A, _POOL_SIZE + _POOL_SIZE * (_POOL_SIZE - 1))
# generate_state(4, np.uint64): 8 uint32 words
_HASH_B = _constants(_INIT_B, _MULT_B, 8)
_INIT_A32, _INIT_B32 = np.uint32(_INIT_A), np.uint32(_INIT_B)


def _hashmix(value: np.ndarray, hash_before: np.uint32, hash_after: np.uint32) -> np.ndarray:
    value = (value ^ hash_before) * hash_after
    return value ^ (value >> _XSHIFT)


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
    return result ^ (result >> _XSHIFT)


def _seed_words(seeds: np.ndarray, ks: tuple[int, ...]) -> np.ndarray:
    """``generate_state(4, np.uint64)`` of ``SeedSequence([seed, k])``: shape ``(len(ks), len(seeds), 4)`` uint64."""
    seeds = np.asarray(seeds)
    if seeds.ndim != 1:
        raise ValueError("seeds must be one-dimensional")
    if seeds.size and (seeds.dtype.kind not in "iu" or int(seeds.min()) < 0):
        raise ValueError("seeds must be non-negative integers below 2**64")
    if not all(0 <= k <= _MASK32 for k in ks):
        raise ValueError("k must be in [0, 2**32)")
    s = seeds.astype(np.uint64)
    shape = (len(ks), len(s))
    lo = np.broadcast_to((s & np.uint64(_MASK32)).astype(np.uint32), shape)
    hi = np.broadcast_to((s >> np.uint64(32)).astype(np.uint32), shape)
    two_words = np.broadcast_to(s > np.uint64(_MASK32), shape)  # the seed is two uint32 words, then k
    k32 = np.broadcast_to(np.array(ks, dtype=np.uint32)[:, None], shape)
    zero = np.zeros(shape, dtype=np.uint32)
    entropy = [lo, np.where(two_words, hi, k32), np.where(two_words, k32, zero), zero]
    with np.errstate(over="ignore"):
        # mix_entropy: the pool from the entropy words, then every ordered pair of distinct pool words
        calls = iter(zip([_INIT_A32, *_HASH_A[:-1]], _HASH_A, strict=True))
        pool = [_hashmix(word, *next(calls)) for word in entropy]
        for i_src in range(_POOL_SIZE):
            for i_dst in range(_POOL_SIZE):
                if i_src != i_dst:
                    pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], *next(calls)))
        # generate_state: 8 words cycling over the pool
        out = np.empty((*shape, 8), dtype=np.uint32)
        for i_dst, (before, after) in enumerate(zip([_INIT_B32, *_HASH_B[:-1]], _HASH_B, strict=True)):
            out[..., i_dst] = _hashmix(pool[i_dst % _POOL_SIZE], before, after)
    # uint32 pairs as little-endian uint64 words, whatever this machine's byte order
    return out[..., 0::2].astype(np.uint64) | (out[..., 1::2].astype(np.uint64) << np.uint64(32))


def seed_states_many(seeds: np.ndarray | list[int], ks: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """:func:`seed_states` for each of ``ks``, computed together (cheaper than one call per ``k``)."""
    arr = np.asarray(seeds, dtype=np.uint64) if isinstance(seeds, list) else seeds
    result: list[tuple[list[int], list[int]]] = []
    mult = PCG64_MULT
    for words in _seed_words(arr, tuple(ks)).tolist():
        states: list[int] = []
        incs: list[int] = []
        for w0, w1, w2, w3 in words:
            inc = (((w2 << 64) | w3) << 1 | 1) & _MASK128
            # state = 0; step (state = inc); state += initstate; step
            states.append(((inc + ((w0 << 64) | w1)) * mult + inc) & _MASK128)
            incs.append(inc)
        result.append((states, incs))
    return result


def seed_states(seeds: np.ndarray | list[int], k: int) -> tuple[list[int], list[int]]:
    """PCG64 ``state`` and ``inc`` (128-bit Python ints) of ``np.random.default_rng([seed, k])`` for each seed.

    :param seeds: non-negative integers below ``2**64`` (an integer array or a list of ints).
    :param k: the second entropy word, in ``[0, 2**32)``.
    """
    return seed_states_many(seeds, (k,))[0]


class Reseeder:
    """One shared ``Generator(PCG64())`` re-seeded in place to a given PCG64 (state, inc).

    After :meth:`reseed` the generator gives exactly the stream of a fresh ``np.random.default_rng([seed, k])``
    with that seed's :func:`seed_states`: the bit generator's whole state is replaced, including its cached
    half of a 64-bit word for 32-bit draws, and a :class:`numpy.random.Generator` keeps no state of its own
    (its normals, gammas and the rest draw from the bit generator alone). The returned generator is the same
    object each time: a caller must be done with one stream before re-seeding for the next.
    """

    __slots__ = ("_bit_generator", "generator")

    def __init__(self) -> None:
        self._bit_generator = np.random.PCG64()
        self.generator = np.random.Generator(self._bit_generator)

    def reseed(self, state: int, inc: int) -> np.random.Generator:
        """Set the generator to PCG64 ``state`` and ``inc`` (128-bit ints) and return it."""
        self._bit_generator.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": inc},
                                     "has_uint32": 0, "uinteger": 0}
        return self.generator
