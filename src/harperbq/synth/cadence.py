"""When vessels report: AIS Class A intervals by speed and status, scaled by the sampling interval.

Real Class A transponders report every 10 s under way at up to 14 kn, 6 s at 14-23 kn, 2 s above
23 kn, and every 3 min at anchor or moored; static and voyage data every 6 min. The synthesizer
multiplies all of these by `sampling_interval_s / 10`, so `samplingIntervalS: 10` is real AIS
density and the default 60 reports a ship under way at normal speed once a minute.

Report instants lie on a per-vessel grid `offset + k * interval` (whole seconds), so a window's
reports are selected by a half-open interval and [a, c) = [a, b) + [b, c) exactly.
"""

import numpy as np
import numpy.typing as npt

from harperbq.synth.reference import AT_ANCHOR, MOORED
from harperbq.synth.voyages import Phases

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
REFERENCE_S = 10.0  # the real AIS interval that `sampling_interval_s` stands for
STATIC_S = 360.0  # static/voyage data (vessel_metadata), real AIS


def scale(sampling_interval_s: float) -> float:
    return sampling_interval_s / REFERENCE_S


def base_interval_s(speed_kn: F64, nav: I64) -> F64:
    """Real AIS interval for a speed (knots, absolute) and navigational status."""
    stationary = (nav == AT_ANCHOR) | (nav == MOORED)
    moving = np.where(speed_kn > 23, 2.0, np.where(speed_kn > 14, 6.0, 10.0))
    return np.where(stationary, 180.0, moving)


def report_interval_s(phases: Phases, sampling_interval_s: float) -> I64:
    """Whole-second position-report interval for every phase."""
    base = base_interval_s(np.abs(phases.v), phases.nav)
    return np.maximum(np.rint(base * scale(sampling_interval_s)), 1).astype(np.int64)


def static_interval_s(sampling_interval_s: float) -> int:
    return max(round(STATIC_S * scale(sampling_interval_s)), 1)


def instants(
    phases: Phases,
    interval: I64,
    offset: I64,
    lo: float,
    hi: float,
    select: npt.NDArray[np.bool_] | None = None,
) -> tuple[I64, I64]:
    """Report instants in [lo, hi): (phase index, unix second) for every report, phase by phase.

    `interval` is per phase, `offset` per vessel (seconds); instants of phase j are the grid points
    offset + k * interval[j] within [max(lo, start_j), min(hi, end_j)).
    """
    sel, local, t = instants_by_phase(phases, interval, offset, lo, hi, select)
    return sel[local], t


def instants_by_phase(
    phases: Phases,
    interval: I64,
    offset: I64,
    lo: float,
    hi: float,
    select: npt.NDArray[np.bool_] | None = None,
    rank: I64 | None = None,
) -> tuple[I64, I64, I64]:
    """`instants` as (phases that report, index into them per report, unix second per report).

    Reports of one phase are contiguous and in time order. Phases come in vessel order, or in the
    order of `rank` (per vessel) when given, so that one stable sort by time then gives
    (time, rank) order. Per-phase values gathered at `sel` and then at the index stay in cache.
    """
    mask = (phases.t < hi) & (phases.end > lo)
    if select is not None:
        mask &= select
    sel = np.flatnonzero(mask)
    if rank is not None:
        sel = sel[np.argsort(rank[phases.vessel[sel]], kind="stable")]
    a = np.maximum(phases.t[sel], lo)
    b = np.minimum(phases.end[sel], hi)
    off = offset[phases.vessel[sel]]
    step = interval[sel]
    k0 = np.ceil((a - off) / step).astype(np.int64)
    k1 = np.ceil((b - off) / step).astype(np.int64)
    count = np.maximum(k1 - k0, 0)
    total = int(count.sum())
    local = np.repeat(np.arange(sel.shape[0], dtype=np.int64), count)
    first = np.repeat(np.cumsum(count) - count, count)
    k = np.repeat(k0, count) + (np.arange(total, dtype=np.int64) - first)
    t = np.repeat(off, count) + k * np.repeat(step, count)
    return sel, local, t
