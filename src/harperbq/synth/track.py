"""Kinematics: position, course, speed and heading of a vessel at an instant inside a phase."""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harperbq.synth.fleet import EPOCH_S
from harperbq.synth.hashing import Stream, extend, hash64, to_unit, uniform
from harperbq.synth.reference import AT_ANCHOR, HEADING_NOT_AVAILABLE, MOORED
from harperbq.synth.routes import RouteNet, wrap360
from harperbq.synth.voyages import Phases, Timeline

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Kinematics:
    latitude: F64
    longitude: F64  # in [-180, 180)
    speed_kn: F64  # exact speed over ground (before AIS rounding/noise)
    course: F64  # course over ground, degrees [0, 360)
    heading: I64  # true heading, degrees, or 511 when the ship has no heading sensor
    nav: I64
    distance_nm: F64  # position along the phase's path


def kinematics(
    seed: int,
    net: RouteNet,
    phases: Phases,
    idx: I64,
    t: F64,
    heading_missing: npt.NDArray[np.bool_],
    grouped: bool = False,
    vertex: I64 | None = None,
    noise_prefix: U64 | None = None,
) -> Kinematics:
    """State at instants t (seconds) of phases idx: a pure function of the schedule.

    `grouped`: each phase's rows are contiguous and in time order (as `instants` returns them), so
    the route vertex is searched once per phase and walked to for the other rows. `vertex`, per
    phase (-1: unknown), is where to start instead of searching; it is updated to each phase's
    last vertex, so that consecutive windows of the same phases walk on from there. Draws that
    only stationary or only moving rows use are made for those rows only. `noise_prefix`, per
    vessel: hash64(seed, Stream.NOISE, vessel), computed once by the caller.
    """
    start = phases.t[idx]
    dt_h = (t - start) / 3600.0
    v = phases.v[idx]
    amp = phases.amp[idx]
    s0 = phases.s0[idx]
    s = s0 + v * dt_h
    direction = np.sign(v)
    trawling = amp > 0
    if trawling.any():
        a = amp[trawling]
        w = np.mod(np.abs(v[trawling]) * dt_h[trawling] / a + 1.0, 4.0)
        s[trawling] = s0[trawling] + a * (np.abs(w - 2.0) - 1.0)
        direction[trawling] = np.where(w >= 2.0, 1.0, -1.0)
    path = phases.path[idx]
    if grouped:
        runs = np.flatnonzero(np.diff(idx, prepend=-1) != 0)
        hint = vertex[idx[runs]] if vertex is not None else None
        lat, lon, seg_course, j = net.locate_runs(path, s, runs, hint)
        if vertex is not None:
            vertex[idx[runs]] = j[np.append(runs[1:], idx.shape[0]) - 1]
    else:
        lat, lon, seg_course = net.locate(path, s)
    moving = direction != 0
    course = wrap360(np.where(direction < 0, seg_course + 180.0, seg_course))
    vessel = phases.vessel[idx]
    nav = phases.nav[idx]
    # A ship alongside keeps one heading per port; at anchor one per anchoring.
    still = np.flatnonzero(~moving)
    rest = np.zeros(idx.shape, dtype=np.float64)
    if still.size:
        nav_s = nav[still]
        key = np.where(
            nav_s == MOORED, phases.port[idx[still]], np.floor(start[still]).astype(np.int64)
        )
        if noise_prefix is None:
            h = hash64(seed, Stream.NOISE, vessel[still], key, nav_s)
        else:
            h = extend(noise_prefix[vessel[still]], key, nav_s)
        rest[still] = h % np.uint64(360)
    heading = rest.astype(np.int64)
    go = np.flatnonzero(moving)
    if go.size:
        if noise_prefix is None:
            u = uniform(seed, Stream.NOISE, vessel[go], t[go], 1)
        else:
            u = to_unit(extend(noise_prefix[vessel[go]], t[go], 1))
        drift = (u - 0.5) * 6.0
        heading[go] = wrap360(np.rint(course[go] + drift))
    course = np.where(moving | ((nav != MOORED) & (nav != AT_ANCHOR)), course, rest)
    heading[heading_missing[vessel]] = HEADING_NOT_AVAILABLE
    return Kinematics(lat, lon, np.abs(v), course, heading, nav, s)


def track_at(timeline: Timeline, vessel: npt.ArrayLike, t: npt.ArrayLike) -> Kinematics:
    """State of vessels (fleet indices) at times t (unix seconds), aligned with the inputs."""
    vessel = np.atleast_1d(np.asarray(vessel, dtype=np.int64))
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    fields: dict[str, npt.NDArray[np.generic]] = {}
    slot_of = np.floor(t / EPOCH_S).astype(np.int64)
    names = ("latitude", "longitude", "speed_kn", "course", "heading", "nav", "distance_nm")
    out = {
        n: np.zeros(t.shape, dtype=np.int64 if n in ("heading", "nav") else np.float64)
        for n in names
    }
    for k in np.unique(slot_of):
        ph = timeline.slot(int(k))
        sel = np.flatnonzero(slot_of == k)
        idx = np.array(
            [
                ph.ptr[v] + np.searchsorted(ph.t[ph.ptr[v] : ph.ptr[v + 1]], x, side="right") - 1
                for v, x in zip(vessel[sel], t[sel], strict=True)
            ],
            dtype=np.int64,
        )
        state = kinematics(
            timeline.seed, timeline.net, ph, idx, t[sel], timeline.fleet.heading_missing
        )
        for n in names:
            out[n][sel] = getattr(state, n)
    fields.update(out)
    return Kinematics(**fields)  # type: ignore[arg-type]
