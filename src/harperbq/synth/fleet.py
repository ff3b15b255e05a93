"""Vessel identities: a pure function of (seed, vessel index), vectorised for 100 000+ vessels.

Vessel i is the same ship in a fleet of 10 or of 100 000 (same seed), so a small test fleet is a
prefix of the big one. MMSIs, IMO numbers and call signs come from bijections of the index, so
they are unique by construction (no retry loops, no silent cap below `MAX_VESSELS`).
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from harperbq.synth.hashing import Stream, hash64, uniform
from harperbq.synth.reference import (
    FISHING,
    FISHING_OWNERS,
    FLAG_INDEX,
    FLAGS,
    NAME_NOUNS,
    NAME_SUFFIXES,
    NAME_WORDS,
    OWNERS,
    PORTS,
    VESSEL_TYPES,
)

MAX_VESSELS = 900_000  # IMO numbers have 6 free digits; 100000..999999 allows 900 000 ships
EPOCH_S = 56 * 86_400.0  # length of a vessel's schedule epoch (see voyages.py)
_PHI = 0.6180339887498949
_MMSI_MULT, _IMO_MULT, _CALL_MULT = 741_457, 16_807, 1_000_003
_CALL_SPACE = 36**4
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Fleet:
    """Column arrays, one entry per vessel, index = vessel number."""

    seed: int
    mmsi: I64
    imo: I64
    vtype: I64  # index into VESSEL_TYPES
    flag: I64  # index into FLAGS
    home_port: I64  # index into PORTS
    name: npt.NDArray[np.str_]
    callsign: npt.NDArray[np.str_]
    owner: npt.NDArray[np.str_]
    length: I64  # m
    beam: I64  # m
    draft: F64  # design draught, m
    gross_tonnage: I64
    deadweight: I64
    year_built: I64
    speed_bias: F64  # 0..1: where in its type's speed range this ship usually sails
    epoch_offset: F64  # s, phase of the vessel's schedule epochs
    report_offset: I64  # s, phase of its AIS report grid
    heading_missing: npt.NDArray[np.bool_]

    @property
    def size(self) -> int:
        return int(self.mmsi.shape[0])

    def mmsi_str(self) -> npt.NDArray[np.str_]:
        return self.mmsi.astype(np.str_)

    def imo_str(self) -> npt.NDArray[np.str_]:
        return self.imo.astype(np.str_)


def imo_check_digit(base6: I64) -> I64:
    """IMO check digit: digits 1-6 weighted 7..2, sum mod 10."""
    total = np.zeros_like(base6)
    rest = base6.copy()
    for weight in range(2, 8):  # last digit has weight 2, first weight 7
        total += (rest % 10) * weight
        rest //= 10
    return total % 10


def valid_imo(imo: int) -> bool:
    digits = [int(c) for c in f"{imo:07d}"]
    return (
        len(digits) == 7
        and sum(d * w for d, w in zip(digits[:6], range(7, 1, -1), strict=True)) % 10 == digits[6]
    )


def _weighted(u: F64, weights: npt.ArrayLike) -> I64:
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))
    return np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(cum) - 1).astype(
        np.int64
    )


def _base36(values: I64, width: int) -> npt.NDArray[np.str_]:
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    out = np.full(values.shape, "", dtype="<U8")
    rest = values.copy()
    for _ in range(width):
        out = np.char.add(alphabet[rest % 36], out)
        rest //= 36
    return out


@lru_cache(maxsize=4)
def build_fleet(seed: int, total_vessels: int) -> Fleet:
    """The fleet for a seed: exactly `total_vessels` ships."""
    if not 1 <= total_vessels <= MAX_VESSELS:
        raise ValueError(
            f"totalVessels must be between 1 and {MAX_VESSELS} (IMO numbers run out beyond), "
            f"got {total_vessels}"
        )
    i = np.arange(total_vessels, dtype=np.int64)
    # Low-discrepancy type assignment: every prefix of the fleet has the configured shares.
    shift = float(uniform(seed, Stream.TYPE, 0)[0])
    vtype = _weighted(np.mod((i + 1) * _PHI + shift, 1.0), [t.share for t in VESSEL_TYPES])
    home = _weighted(uniform(seed, Stream.HOME, i), [p.weight for p in PORTS])
    flag = _weighted(uniform(seed, Stream.FLAG, i), [f.weight for f in FLAGS])
    port_flag = np.array([FLAG_INDEX[p.country] for p in PORTS], dtype=np.int64)
    fishing = vtype == FISHING
    flag = np.where(fishing, port_flag[home], flag)  # fishing boats fly their home state's flag

    mids = np.zeros((len(FLAGS), max(len(f.mids) for f in FLAGS)), dtype=np.int64)
    counts = np.array([len(f.mids) for f in FLAGS], dtype=np.int64)
    for k, f in enumerate(FLAGS):
        mids[k, : len(f.mids)] = f.mids
    mid_pick = np.minimum(
        (uniform(seed, Stream.MID, i) * counts[flag]).astype(np.int64), counts[flag] - 1
    )
    mid = mids[flag, mid_pick]
    salt = hash64(seed, Stream.MID, -1)[0]
    serial = (_MMSI_MULT * i + int(salt % np.uint64(1_000_000))) % 1_000_000
    mmsi = mid * 1_000_000 + serial
    imo_base = 100_000 + (_IMO_MULT * i + int(salt % np.uint64(900_000))) % 900_000
    imo = imo_base * 10 + imo_check_digit(imo_base)
    prefixes = np.array([f.callsign_prefix for f in FLAGS])
    call = np.char.add(
        prefixes[flag],
        _base36((_CALL_MULT * i + int(salt % np.uint64(_CALL_SPACE))) % _CALL_SPACE, 4),
    )

    words = np.array(NAME_WORDS)
    nouns = np.array(NAME_NOUNS)
    suffixes = np.array(NAME_SUFFIXES)

    def pick(k: int, n: int) -> I64:
        return (uniform(seed, Stream.NAME, i, k) * n).astype(np.int64)

    name = np.char.add(np.char.add(words[pick(0, len(words))], " "), nouns[pick(1, len(nouns))])
    name = np.char.strip(np.char.add(np.char.add(name, " "), suffixes[pick(2, len(suffixes))]))

    t = VESSEL_TYPES
    lmin = np.array([x.length_m[0] for x in t])[vtype]
    lmax = np.array([x.length_m[1] for x in t])[vtype]
    size = uniform(seed, Stream.DIMENSIONS, i, 0) ** 1.3  # more small ships than giants
    length = np.rint(lmin + (lmax - lmin) * size)
    rmin = np.array([x.length_beam[0] for x in t])[vtype]
    rmax = np.array([x.length_beam[1] for x in t])[vtype]
    ratio = rmin + (rmax - rmin) * uniform(seed, Stream.DIMENSIONS, i, 1)
    beam = np.rint(np.minimum(length / ratio, np.array([x.max_beam_m for x in t])[vtype]))
    dmin = np.array([x.draft_m[0] for x in t])[vtype]
    dmax = np.array([x.draft_m[1] for x in t])[vtype]
    frac = 0.7 * size + 0.3 * uniform(seed, Stream.DIMENSIONS, i, 2)
    draft = np.round(dmin + (dmax - dmin) * frac, 1)
    volume = length * beam * draft
    gt = np.rint(np.array([x.gt_coef for x in t])[vtype] * volume).astype(np.int64)
    dwt = np.rint(np.array([x.dwt_coef for x in t])[vtype] * volume).astype(np.int64)
    year = 2025 - (30 * uniform(seed, Stream.BUILD, i) ** 1.6).astype(np.int64)

    owners = np.array(OWNERS)
    fowners = np.array(FISHING_OWNERS)
    u_owner = uniform(seed, Stream.OWNER, i)
    owner = np.where(
        fishing,
        fowners[(u_owner * len(fowners)).astype(np.int64)],
        owners[(u_owner * len(owners)).astype(np.int64)],
    )
    missing = np.array([x.heading_missing for x in t])[vtype]
    return Fleet(
        seed=seed,
        mmsi=mmsi,
        imo=imo,
        vtype=vtype,
        flag=flag,
        home_port=home,
        name=name,
        callsign=call,
        owner=owner,
        length=length.astype(np.int64),
        beam=beam.astype(np.int64),
        draft=draft,
        gross_tonnage=gt,
        deadweight=dwt,
        year_built=year,
        speed_bias=uniform(seed, Stream.SPEED_BIAS, i),
        epoch_offset=uniform(seed, Stream.EPOCH_OFFSET, i) * EPOCH_S,
        report_offset=(uniform(seed, Stream.REPORT_OFFSET, i) * 3600).astype(np.int64),
        heading_missing=uniform(seed, Stream.HEADING_SENSOR, i) < missing,
    )
