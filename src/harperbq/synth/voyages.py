"""Voyage schedules: where every vessel is, at any time, as a pure function of (seed, vessel, t).

Time is cut, per vessel, into epochs of `EPOCH_S` shifted by the vessel's own offset. Epoch r of
vessel v starts with v berthed at port S(v, r) (a hash) and ends berthed at S(v, r + 1); in
between, voyages are drawn one after another (destination, speeds, anchor wait, berth time are
hashes of (seed, v, r, k)) among the ports that still leave time to reach S(v, r + 1). So the
schedule of any epoch is computed on its own, without simulating from an origin of time, and
`start`, `backfill` and `initialize` all see the same ships in the same places.

A schedule is a list of phases per vessel. A phase moves the vessel along a path (`RouteNet`) at
a constant signed speed from a start distance (speed 0 = moored or at anchor); a fishing phase
trawls back and forth around a point. Port events are phase starts.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from harperbq.synth.fleet import EPOCH_S, Fleet, build_fleet
from harperbq.synth.hashing import Stream, uniform
from harperbq.synth.reference import (
    ANCHORED,
    ARRIVAL,
    AT_ANCHOR,
    BERTHED,
    DEPARTURE,
    FISHING,
    FISHING_STATUS,
    MOORED,
    PORTS,
    UNDER_WAY,
    UNDERWAY,
    VESSEL_TYPES,
)
from harperbq.synth.routes import RouteNet, route_net

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
H = 3600.0
HARBOUR_KN = (6.0, 10.0)
BERTH_LOAD = 0.8  # draught reported while alongside, as a share of the design draught
MAX_FINAL_WAIT_S = 10 * 86_400.0
_COLUMNS = ("vessel", "t", "path", "s0", "v", "amp", "nav", "event", "port", "dest", "eta", "draft")


@dataclass(frozen=True, eq=False)
class Phases:
    """Phases of all vessels, grouped by vessel (CSR) and in time order within a vessel."""

    ptr: I64
    vessel: I64
    t: F64  # start, unix seconds
    end: F64  # start of the vessel's next phase (or the end of the covered span)
    path: I64
    s0: F64  # nm along the path at the start
    v: F64  # signed speed along the path, knots (0: stationary)
    amp: F64  # fishing: half-width of the trawl pattern in nm; 0 otherwise
    nav: I64  # AIS navigational status
    event: I64  # port event at the start of the phase (0: none)
    port: I64  # port of that event / where the vessel lies
    dest: I64  # destination port
    eta: F64  # unix seconds, NaN when alongside
    draft: F64  # current draught, m

    @property
    def size(self) -> int:
        return int(self.t.shape[0])

    def take(self, sel: I64) -> "Phases":
        """The phases at `sel`, in that order: a small table that row gathers read from cache.

        Not grouped by vessel (`ptr` is empty): for `kinematics`, not for `track_at`.
        """
        cols = {name: getattr(self, name)[sel] for name in (*_COLUMNS, "end")}
        return Phases(ptr=np.zeros(0, dtype=np.int64), **cols)


@dataclass
class _Buffer:
    parts: dict[str, list[npt.NDArray[np.generic]]] = field(
        default_factory=lambda: {c: [] for c in _COLUMNS}
    )

    def add(self, mask: npt.NDArray[np.bool_] | None = None, /, **cols: Any) -> None:
        n = len(np.asarray(cols["vessel"]))
        for name in _COLUMNS:
            arr = np.broadcast_to(np.asarray(cols[name]), (n,))
            self.parts[name].append(arr[mask] if mask is not None else arr.copy())

    def build(self, n_vessels: int, span_end: F64) -> Phases:
        cols = {name: np.concatenate(parts) for name, parts in self.parts.items()}
        order = np.argsort(cols["vessel"], kind="stable")
        cols = {name: arr[order] for name, arr in cols.items()}
        return _finish(cols, n_vessels, span_end)


def _finish(cols: dict[str, npt.NDArray[np.generic]], n_vessels: int, span_end: F64) -> Phases:
    vessel = cols["vessel"].astype(np.int64)
    ptr = np.zeros(n_vessels + 1, dtype=np.int64)
    np.cumsum(np.bincount(vessel, minlength=n_vessels), out=ptr[1:])
    t = cols["t"].astype(np.float64)
    end = np.empty_like(t)
    end[:-1] = t[1:]
    last = ptr[1:] - 1
    end[last[last >= 0]] = span_end[ptr[1:] > ptr[:-1]]
    return Phases(
        ptr=ptr,
        vessel=vessel,
        t=t,
        end=end,
        path=cols["path"].astype(np.int64),
        s0=cols["s0"].astype(np.float64),
        v=cols["v"].astype(np.float64),
        amp=cols["amp"].astype(np.float64),
        nav=cols["nav"].astype(np.int64),
        event=cols["event"].astype(np.int64),
        port=cols["port"].astype(np.int64),
        dest=cols["dest"].astype(np.int64),
        eta=cols["eta"].astype(np.float64),
        draft=cols["draft"].astype(np.float64),
    )


def _type_array(attr: str, index: int | None = None) -> F64:
    values = [getattr(t, attr) for t in VESSEL_TYPES]
    return np.array([v[index] if index is not None else v for v in values], dtype=np.float64)


class _Model:
    """Per-type and per-port constants, as arrays, for one route network."""

    def __init__(self, net: RouteNet) -> None:
        self.net = net
        self.dist = net.distance()
        self.harbour = net.harbour
        self.vmin = _type_array("speed_kn", 0)
        self.vmax = _type_array("speed_kn", 1)
        self.berth_lo = _type_array("berth_h", 0) * H
        self.berth_hi = _type_array("berth_h", 1) * H
        self.anchor_p = _type_array("anchor_p")
        self.anchor_lo = _type_array("anchor_h", 0) * H
        self.anchor_hi = _type_array("anchor_h", 1) * H
        weight = np.array([p.weight for p in PORTS], dtype=np.float64)
        decay = np.exp(-self.dist[None, :, :] / _type_array("range_nm")[:, None, None])
        self.dest_weight = weight[None, None, :] * decay * net.allowed[None, :, :]
        self.port_weight = weight / weight.sum()
        # Harbour zones of a voyage: each at most 40 % of the path, so that even a hop between
        # neighbouring ports (sailed only when an epoch must end there) has a sea leg.
        self.h_out = np.minimum(self.harbour[:, None], 0.4 * self.dist)
        self.h_in = np.minimum(self.harbour[None, :], 0.4 * self.dist)
        self.harbour_nm = self.h_out + self.h_in
        self.sea_nm = np.maximum(self.dist - self.harbour_nm, 0.0)

    def transit_s(self, a: I64, b: I64, v_sea: F64, v_h: F64) -> F64:
        same = a == b
        t = (self.harbour_nm[a, b] / v_h + self.sea_nm[a, b] / v_sea) * H
        return np.where(same, 0.0, t)


def _start_port(seed: int, fleet: Fleet, vid: I64, r: I64) -> I64:
    cum = np.cumsum(np.array([p.weight for p in PORTS], dtype=np.float64))
    u = uniform(seed, Stream.START_PORT, vid, r)
    port = np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(PORTS) - 1)
    return np.where(fleet.vtype[vid] == FISHING, fleet.home_port[vid], port).astype(np.int64)


def _draw(seed: int, vid: I64, r: I64, k: int, fieldno: int) -> F64:
    return uniform(seed, Stream.VOYAGE, vid, r, k, fieldno)


# Over the size caps on purpose: vectorised arrays of one fleet, passed whole; a struct would copy
# them.
def _emit_voyage(  # noqa: PLR0913
    buf: _Buffer,
    m: _Model,
    vid: I64,
    t_dep: F64,
    a: I64,
    b: I64,
    v_sea: F64,
    v_h: F64,
    wait: F64,
    delta: F64,
    draft: F64,
    berth_draft: F64,
) -> F64:
    """Phases of one port-to-port voyage; returns the time the vessel is alongside at b."""
    net = m.net
    path = net.path_id(a, b)
    length = net.length[path]
    ha, hb = m.h_out[a, b], m.h_in[a, b]
    delta = np.minimum(delta, 0.6 * hb)
    t1 = t_dep + ha / v_h * H
    t2 = t1 + np.maximum(length - ha - hb, 0.0) / v_sea * H
    anchored = wait > 0
    t3 = t2 + delta / v_h * H
    t4 = t3 + wait
    tb = np.where(anchored, t4 + (hb - delta) / v_h * H, t2 + hb / v_h * H)
    nan = np.full_like(t_dep, np.nan)
    common = {"vessel": vid, "dest": b, "amp": 0.0}
    moving = {**common, "path": path, "eta": t2, "draft": draft}
    buf.add(t=t_dep, s0=0.0, v=v_h, nav=UNDER_WAY, event=DEPARTURE, port=a, **moving)
    buf.add(t=t1, s0=ha, v=v_sea, nav=UNDER_WAY, event=0, port=a, **moving)
    buf.add(t=t2, s0=length - hb, v=v_h, nav=UNDER_WAY, event=ARRIVAL, port=b, **moving)
    spot = length - hb + delta
    buf.add(anchored, t=t3, s0=spot, v=0.0, nav=AT_ANCHOR, event=ANCHORED, port=b, **moving)
    buf.add(anchored, t=t4, s0=spot, v=v_h, nav=UNDER_WAY, event=UNDERWAY, port=b, **moving)
    buf.add(
        t=tb,
        path=net.path_id(b, b),
        s0=0.0,
        v=0.0,
        nav=MOORED,
        event=BERTHED,
        port=b,
        eta=nan,
        draft=berth_draft,
        **common,
    )
    return tb


# Over the size caps on purpose: the vectorised schedule in one pass; split, its output must stay
# byte-identical.
def _emit_fishing(  # noqa: PLR0913
    buf: _Buffer,
    m: _Model,
    vid: I64,
    t_dep: F64,
    home: I64,
    q: I64,
    v_t: F64,
    v_h: F64,
    trawl: F64,
    amp: F64,
    s_g: F64,
    fish_s: F64,
    draft: F64,
    berth_draft: F64,
) -> F64:
    """Phases of a fishing trip out along the route towards q and back; returns berthing time."""
    net = m.net
    path = net.path_id(home, q)
    hh = m.harbour[home]
    t1 = t_dep + hh / v_h * H
    t2 = t1 + (s_g - hh) / v_t * H
    t3 = t2 + fish_s
    t4 = t3 + (s_g - hh) / v_t * H
    tb = t4 + hh / v_h * H
    nan = np.full_like(t_dep, np.nan)
    common = {"vessel": vid, "dest": home, "port": home}
    trip = {**common, "path": path, "eta": t4, "draft": draft}
    buf.add(t=t_dep, s0=0.0, v=v_h, amp=0.0, nav=UNDER_WAY, event=DEPARTURE, **trip)
    buf.add(t=t1, s0=hh, v=v_t, amp=0.0, nav=UNDER_WAY, event=0, **trip)
    buf.add(t=t2, s0=s_g, v=trawl, amp=amp, nav=FISHING_STATUS, event=0, **trip)
    buf.add(t=t3, s0=s_g, v=-v_t, amp=0.0, nav=UNDER_WAY, event=0, **trip)
    buf.add(t=t4, s0=hh, v=-v_h, amp=0.0, nav=UNDER_WAY, event=ARRIVAL, **trip)
    buf.add(
        t=tb,
        path=net.path_id(home, home),
        s0=0.0,
        v=0.0,
        amp=0.0,
        nav=MOORED,
        event=BERTHED,
        eta=nan,
        draft=berth_draft,
        **common,
    )
    return tb


# Over the size caps on purpose: the vectorised schedule in one pass; split, its output must stay
# byte-identical.
def epoch_schedule(seed: int, fleet: Fleet, net: RouteNet, r: int) -> Phases:  # noqa: PLR0915
    """Phases of every vessel during its epoch r (vectorised over the fleet)."""
    m = _Model(net)
    n = fleet.size
    vid = np.arange(n, dtype=np.int64)
    rr = np.full(n, r, dtype=np.int64)
    vtype = fleet.vtype
    fishing = vtype == FISHING
    t0 = fleet.epoch_offset + r * EPOCH_S
    t1 = t0 + EPOCH_S
    start = _start_port(seed, fleet, vid, rr)
    goal = _start_port(seed, fleet, vid, rr + 1)
    vmin, vmax = m.vmin[vtype], m.vmax[vtype]
    slowest = vmin + (vmax - vmin) * 0.6 * fleet.speed_bias  # lowest sea speed this ship uses
    berth_draft = np.round(fleet.draft * BERTH_LOAD, 1)
    buf = _Buffer()
    nan = np.full(n, np.nan)
    buf.add(
        vessel=vid,
        t=t0,
        path=net.path_id(start, start),
        s0=0.0,
        v=0.0,
        amp=0.0,
        nav=MOORED,
        event=0,
        port=start,
        dest=start,
        eta=nan,
        draft=berth_draft,
    )
    need = m.transit_s(start, goal, slowest, np.full(n, HARBOUR_KN[0]))
    b0 = m.berth_lo[vtype] + (m.berth_hi[vtype] - m.berth_lo[vtype]) * _draw(seed, vid, rr, 0, 0)
    t = t0 + np.clip(np.minimum(b0, EPOCH_S - need - H), 0.0, None)
    cur = start.copy()
    active = np.ones(n, dtype=bool)
    k = 0
    while active.any():
        k += 1
        idx = np.flatnonzero(active)
        u = [_draw(seed, idx, rr[idx], k, f) for f in range(10)]
        ty = vtype[idx]
        v_h = HARBOUR_KN[0] + (HARBOUR_KN[1] - HARBOUR_KN[0]) * u[1]
        berth = m.berth_lo[ty] + (m.berth_hi[ty] - m.berth_lo[ty]) * u[2]
        voyage_draft = np.round(fleet.draft[idx] * (0.55 + 0.45 * u[3]), 1)
        done = np.zeros(idx.shape, dtype=bool)

        fish = fishing[idx]
        if fish.any():
            fi = idx[fish]
            home = fleet.home_port[fi]
            reach = m.dist[home] - m.harbour[home][:, None] - m.harbour[None, :]
            ok = net.allowed[home] & (reach >= 40.0)
            cum = np.cumsum(ok, axis=1)
            has = cum[:, -1] > 0
            pick = np.minimum((u[0][fish] * cum[:, -1]).astype(np.int64), cum[:, -1] - 1)
            q = np.argmax(cum > pick[:, None], axis=1)
            hh = m.harbour[home]
            room = np.maximum(reach[np.arange(fi.size), q] - 20.0, 0.0)
            amp = 1.5 + 2.5 * u[4][fish]
            s_g = hh + 8.0 + amp + np.minimum(room - 2 * amp - 8.0, 120.0).clip(0) * u[5][fish]
            trawl = 2.5 + 2.0 * u[6][fish]
            cycle = 4 * amp / trawl * H
            fish_s = np.maximum(np.rint((6 + 42 * u[7][fish]) * H / cycle), 1) * cycle
            v_t = vmin[fi] + (vmax[fi] - vmin[fi]) * (0.6 * fleet.speed_bias[fi] + 0.4 * u[8][fish])
            trip = (2 * hh / v_h[fish] + 2 * (s_g - hh) / v_t) * H + fish_s
            go = has & (t[fi] + trip + berth[fish] <= t1[fi])
            g = fi[go]
            tb = _emit_fishing(
                buf,
                m,
                g,
                t[g],
                home[go],
                q[go],
                v_t[go],
                v_h[fish][go],
                trawl[go],
                amp[go],
                s_g[go],
                fish_s[go],
                voyage_draft[fish][go],
                berth_draft[g],
            )
            t[g] = tb + berth[fish][go]
            done[np.flatnonzero(fish)[~go]] = True

        cargo = ~fish
        if cargo.any():
            ci = idx[cargo]
            c_cur, c_goal = cur[ci], goal[ci]
            v_sea = vmin[ci] + (vmax[ci] - vmin[ci]) * (
                0.6 * fleet.speed_bias[ci] + 0.4 * u[4][cargo]
            )
            vh = v_h[cargo]
            tyc = ty[cargo]
            waits = u[5][cargo] < m.anchor_p[tyc]
            wait = np.where(
                waits,
                m.anchor_lo[tyc] + (m.anchor_hi[tyc] - m.anchor_lo[tyc]) * u[6][cargo] ** 2,
                0.0,
            )
            bc = berth[cargo]
            dur = (m.harbour_nm[c_cur] / vh[:, None] + m.sea_nm[c_cur] / v_sea[:, None]) * H
            back = (
                m.harbour_nm[:, c_goal].T / HARBOUR_KN[0]
                + m.sea_nm[:, c_goal].T / slowest[ci][:, None]
            ) * H
            back[np.arange(ci.size), c_goal] = 0.0
            fits = t[ci][:, None] + dur + (wait + bc + H)[:, None] + back <= t1[ci][:, None]
            w = m.dest_weight[tyc, c_cur] * fits
            cum = np.cumsum(w, axis=1)
            total = cum[:, -1]
            free = total > 0
            dest = np.argmax(cum > (u[0][cargo] * total)[:, None], axis=1)
            final = ~free & (c_cur != c_goal)
            dest = np.where(free, dest, c_goal)
            sail = free | final
            if sail.any():
                s = ci[sail]
                hb = m.h_in[c_cur[sail], dest[sail]]
                delta = 0.3 + (np.minimum(3.0, hb - 0.5) - 0.3).clip(0) * u[7][cargo][sail]
                # the last voyage of the epoch spends the spare time waiting at anchor
                arrive = t[s] + m.transit_s(c_cur[sail], dest[sail], v_sea[sail], vh[sail])
                spare = np.clip(t1[s] - arrive - bc[sail] - H, 0.0, MAX_FINAL_WAIT_S)
                wait_s = np.where(final[sail], spare, wait[sail])
                tb = _emit_voyage(
                    buf,
                    m,
                    s,
                    t[s],
                    c_cur[sail],
                    dest[sail],
                    v_sea[sail],
                    vh[sail],
                    wait_s,
                    delta,
                    voyage_draft[cargo][sail],
                    berth_draft[s],
                )
                t[s] = tb + bc[sail]
                cur[s] = dest[sail]
            done[np.flatnonzero(cargo)[~free]] = True
        active[idx[done]] = False
        if k > 10_000:  # pragma: no cover - a schedule bug, never a data condition
            raise RuntimeError("voyage schedule did not converge")
    return buf.build(n, t1)


def merge(first: Phases, second: Phases, span_end: F64) -> Phases:
    """Concatenate two consecutive schedules vessel by vessel (first's phases come first)."""
    n = first.ptr.shape[0] - 1
    cols = {}
    for name in _COLUMNS:
        joined = np.concatenate([getattr(first, name), getattr(second, name)])
        cols[name] = joined
    order = np.argsort(cols["vessel"], kind="stable")
    return _finish({k: v[order] for k, v in cols.items()}, n, span_end)


class Timeline:
    """The fleet's whole history: schedules per slot of `EPOCH_S`, computed lazily and cached.

    Slot k covers [k * EPOCH_S, (k + 1) * EPOCH_S) and holds, for every vessel, its epochs k - 1
    and k (a vessel's epochs are shifted by its offset, so those two cover the slot).
    """

    def __init__(self, seed: int, total_vessels: int, cache_slots: int = 2) -> None:
        self.seed = seed
        self.fleet = build_fleet(seed, total_vessels)
        self.net = route_net()
        self._epochs: OrderedDict[int, Phases] = OrderedDict()
        self._slots: OrderedDict[int, Phases] = OrderedDict()
        self._cache_slots = cache_slots

    def epoch(self, r: int) -> Phases:
        if r in self._epochs:
            self._epochs.move_to_end(r)
            return self._epochs[r]
        phases = epoch_schedule(self.seed, self.fleet, self.net, r)
        self._epochs[r] = phases
        while len(self._epochs) > self._cache_slots + 1:
            self._epochs.popitem(last=False)
        return phases

    def slot(self, k: int) -> Phases:
        if k in self._slots:
            self._slots.move_to_end(k)
            return self._slots[k]
        end = self.fleet.epoch_offset + (k + 1) * EPOCH_S
        phases = merge(self.epoch(k - 1), self.epoch(k), end)
        self._slots[k] = phases
        while len(self._slots) > self._cache_slots:
            self._slots.popitem(last=False)
        return phases

    @staticmethod
    def slots_between(lo: float, hi: float) -> range:
        return range(int(np.floor(lo / EPOCH_S)), int(np.floor((hi - 1e-6) / EPOCH_S)) + 1)
