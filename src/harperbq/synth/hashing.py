"""Counter-based randomness: every draw is a hash of (seed, stream, keys), never a stateful RNG.

That is what makes the synthesizer stateless in time: the value drawn for vessel v, voyage k of
epoch r does not depend on what was drawn before, so any window can be generated on its own.
"""

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)


def _mix(x: U64) -> U64:
    """splitmix64's finaliser: a bijection on 64-bit words with full avalanche."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _mix_inplace(x: U64) -> U64:
    """`_mix` overwriting x (a fresh array), with one scratch buffer instead of six temporaries."""
    tmp = np.empty_like(x)
    with np.errstate(over="ignore"):
        for shift, mult in ((_S30, _M1), (_S27, _M2)):
            np.right_shift(x, shift, out=tmp)
            x ^= tmp
            x *= mult
        np.right_shift(x, _S31, out=tmp)
        x ^= tmp
    return x


def _as_u64(key: npt.ArrayLike) -> U64:
    arr = np.asarray(key)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.int64)
    if arr.dtype == np.uint64:
        return arr
    return arr.astype(np.int64, copy=False).view(np.uint64)


def hash64(seed: int, stream: int, *keys: npt.ArrayLike) -> U64:
    """64-bit hash of (seed, stream, keys...), broadcast over array keys."""
    h = _mix(np.asarray([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) ^ np.uint64(stream))
    return extend(h, *keys)


def extend(h: U64, *keys: npt.ArrayLike) -> U64:
    """Hash of (..., keys) from h, the hash of its first keys: hash64(s, st, a, b) equals
    extend(hash64(s, st, a), b), so a prefix shared by many draws is hashed once."""
    with np.errstate(over="ignore"):
        for key in keys:
            x = np.bitwise_xor(h, _as_u64(key) + _GOLDEN)
            h = _mix_inplace(x) if x.ndim and x.size > 1 else _mix(x)
    return h


def uniform(seed: int, stream: int, *keys: npt.ArrayLike) -> F64:
    """Uniform draws in [0, 1), one per broadcast key."""
    return to_unit(hash64(seed, stream, *keys))


def to_unit(h: U64) -> F64:
    """The uniform draw in [0, 1) of a hash (its top 53 bits)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


# Stream ids: one per kind of draw, so two draws never share a hash by accident.
class Stream:
    TYPE = 1
    FLAG = 2
    MID = 3
    NAME = 4
    DIMENSIONS = 5
    BUILD = 6
    HOME = 7
    OWNER = 8
    SPEED_BIAS = 9
    EPOCH_OFFSET = 10
    REPORT_OFFSET = 11
    HEADING_SENSOR = 12
    START_PORT = 20
    BERTH0 = 21
    VOYAGE = 22  # keyed further by a field number
    LATE = 40
    LATENESS = 41
    DUPLICATE = 42
    NOISE = 43
    STATIC_OFFSET = 44
