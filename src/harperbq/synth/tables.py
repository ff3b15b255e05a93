"""The three tables as Arrow, for any window of write time: three views of one timeline.

A window [lo, hi) holds the rows *written* in it: `ingested_at` in [lo, hi). A row's `ingested_at`
equals its own time, except for late rows (a `late_fraction` of rows, each late by 1 s to
`late_max_s`), so late rows carry a timestamp older than the window they are written with, as in a
real pipeline. Duplicates (`duplicate_fraction`) are exact copies written in the same window.
Because every row's times are fixed by the timeline, generating [a, c) gives exactly the rows of
[a, b) followed by those of [b, c), whatever a < b < c.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.cloud import bigquery

from harperbq.synth.cadence import (
    instants,
    instants_by_phase,
    report_interval_s,
    static_interval_s,
)
from harperbq.synth.fleet import EPOCH_S
from harperbq.synth.hashing import Stream, extend, hash64, to_unit, uniform
from harperbq.synth.params import SynthParams
from harperbq.synth.reference import DEPARTURE, EVENT_TYPES, FLAGS, NAV_STATUS, PORTS, VESSEL_TYPES
from harperbq.synth.track import kinematics
from harperbq.synth.voyages import Phases, Timeline

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
TS = pa.timestamp("us", tz="UTC")
_F = bigquery.SchemaField

POSITIONS_SCHEMA = [
    _F("timestamp", "TIMESTAMP", "REQUIRED"),
    _F("mmsi", "STRING", "REQUIRED"),
    _F("imo", "STRING", "REQUIRED"),
    _F("vessel_name", "STRING", "REQUIRED"),
    _F("vessel_type", "STRING", "REQUIRED"),
    _F("flag", "STRING", "REQUIRED"),
    _F("length", "INTEGER", "REQUIRED"),
    _F("beam", "INTEGER", "REQUIRED"),
    _F("draft", "FLOAT", "REQUIRED"),
    _F("latitude", "FLOAT", "REQUIRED"),
    _F("longitude", "FLOAT", "REQUIRED"),
    _F("speed_knots", "FLOAT", "REQUIRED"),
    _F("course", "INTEGER", "REQUIRED"),
    _F("heading", "INTEGER", "REQUIRED"),
    _F("status", "STRING", "REQUIRED"),
    _F("destination", "STRING", "NULLABLE"),
    _F("eta", "TIMESTAMP", "NULLABLE"),
    _F("report_date", "STRING", "REQUIRED"),
    _F("nav_status", "INTEGER", "REQUIRED"),
    _F("ingested_at", "TIMESTAMP", "REQUIRED"),
]
EVENTS_SCHEMA = [
    _F("event_time", "TIMESTAMP", "REQUIRED"),
    _F("port_id", "STRING", "REQUIRED"),
    _F("port_name", "STRING", "NULLABLE"),
    _F("vessel_mmsi", "STRING", "REQUIRED"),
    _F("event_type", "STRING", "REQUIRED"),
    _F("status", "STRING", "NULLABLE"),
    _F("latitude", "FLOAT", "NULLABLE"),
    _F("longitude", "FLOAT", "NULLABLE"),
    _F("ingested_at", "TIMESTAMP", "REQUIRED"),
]
METADATA_SCHEMA = [
    _F("last_updated", "TIMESTAMP", "REQUIRED"),
    _F("mmsi", "STRING", "REQUIRED"),
    _F("imo", "STRING", "NULLABLE"),
    _F("vessel_name", "STRING", "NULLABLE"),
    _F("vessel_type", "STRING", "NULLABLE"),
    _F("flag", "STRING", "NULLABLE"),
    _F("callsign", "STRING", "NULLABLE"),
    _F("length", "INTEGER", "NULLABLE"),
    _F("beam", "INTEGER", "NULLABLE"),
    _F("draft", "INTEGER", "NULLABLE"),
    _F("gross_tonnage", "INTEGER", "NULLABLE"),
    _F("deadweight", "INTEGER", "NULLABLE"),
    _F("year_built", "INTEGER", "NULLABLE"),
    _F("home_port", "STRING", "NULLABLE"),
    _F("owner", "STRING", "NULLABLE"),
    _F("status", "STRING", "NULLABLE"),
    _F("destination", "STRING", "NULLABLE"),
    _F("eta", "TIMESTAMP", "NULLABLE"),
    _F("ingested_at", "TIMESTAMP", "REQUIRED"),
]


@dataclass(frozen=True)
class TableSpec:
    """What the writer needs to know about one table kind."""

    kind: str  # positions | events | metadata
    schema: list[bigquery.SchemaField]
    time_column: str
    mmsi_column: str


POSITIONS = TableSpec("positions", POSITIONS_SCHEMA, "timestamp", "mmsi")
EVENTS = TableSpec("events", EVENTS_SCHEMA, "event_time", "vessel_mmsi")
METADATA = TableSpec("metadata", METADATA_SCHEMA, "last_updated", "mmsi")
SPECS = (POSITIONS, EVENTS, METADATA)

_ARROW_TYPES = {
    "TIMESTAMP": TS,
    "STRING": pa.string(),
    "INTEGER": pa.int64(),
    "FLOAT": pa.float64(),
}


def arrow_schema(schema: list[bigquery.SchemaField]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(f.name, _ARROW_TYPES[f.field_type], nullable=f.mode != "REQUIRED")
            for f in schema
        ]
    )


def to_seconds(value: float | datetime) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a time zone (UTC)")
        return value.timestamp()
    return float(value)


def _sort(table: pa.Table, time_col: str, mmsi_col: str) -> pa.Table:
    """Write order: by ingested_at, then time, then MMSI (so windows concatenate exactly)."""
    keys = [("ingested_at", "ascending"), (time_col, "ascending"), (mmsi_col, "ascending")]
    return table.sort_by(keys)


class _Background:
    """Runs fn in a short-lived thread; result() joins it and returns (or raises) its outcome.

    One thread per call, joined before the call returns: nothing outlives the window.
    """

    def __init__(self, fn: Callable[[], dict[str, pa.Array]]) -> None:
        self._fn = fn
        self._value: dict[str, pa.Array] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="synth-text", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> dict[str, pa.Array]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


@dataclass(frozen=True)
class _PhaseColumns:
    interval: I64  # position-report interval, s
    vertex: npt.NDArray[np.int32]  # route vertex each phase was last seen at (-1: not yet)


@dataclass(frozen=True)
class WindowRows:
    positions: pa.Table
    events: pa.Table
    metadata: pa.Table

    def by_kind(self, kind: str) -> pa.Table:
        return {"positions": self.positions, "events": self.events, "metadata": self.metadata}[kind]


class Generator:
    """Rows of the three tables for write windows, from one timeline and its parameters."""

    def __init__(self, params: SynthParams, timeline: Timeline | None = None) -> None:
        self.params = params
        self.timeline = timeline or Timeline(params.seed, params.total_vessels)
        fleet = self.timeline.fleet
        self.fleet = fleet
        self._mmsi = fleet.mmsi_str()
        self._imo = fleet.imo_str()
        self._type = np.array([VESSEL_TYPES[i].code for i in fleet.vtype])
        self._flag_codes = np.array([f.code for f in FLAGS])[fleet.flag]
        self._port_code = np.array([p.code for p in PORTS])
        self._port_name = np.array([p.name for p in PORTS])
        self._home = self._port_name[fleet.home_port]
        self._mmsi_rank = np.argsort(np.argsort(fleet.mmsi)).astype(np.int64)
        # Arrow copies of the per-vessel strings, built once (rows take from them by index).
        self._names = pa.array(fleet.name)
        self._calls = pa.array(fleet.callsign)
        self._owners = pa.array(fleet.owner)
        self._mmsi_a = pa.array(self._mmsi)
        self._imo_a = pa.array(self._imo)
        self._type_a = pa.array(self._type)
        self._flag_a = pa.array(self._flag_codes)
        self._home_a = pa.array(self._home)
        codes = sorted(NAV_STATUS)
        self._status_codes = np.array(codes)
        self._status_a = pa.array([NAV_STATUS[c] for c in codes])
        self._phase_cache: dict[int, tuple[Phases, _PhaseColumns]] = {}
        # the first step of every per-row noise draw, hash64(seed, NOISE, vessel), per vessel
        self._noise_prefix = hash64(
            params.seed, Stream.NOISE, np.arange(fleet.size, dtype=np.int64)
        )
        # status text index per AIS code, as a table (what searchsorted over the codes gives)
        self._status_lut = np.searchsorted(self._status_codes, np.arange(max(codes) + 1))

    # -- shared helpers ---------------------------------------------------------------------
    def _lateness(self, stream_key: I64, vessel: I64) -> I64:
        p = self.params
        if p.late_fraction <= 0:
            return np.zeros(vessel.shape, dtype=np.int64)
        late = uniform(p.seed, Stream.LATE, vessel, stream_key) < p.late_fraction
        size = 1 + np.floor(uniform(p.seed, Stream.LATENESS, vessel, stream_key) * p.late_max_s)
        return np.where(late, size, 0).astype(np.int64) * 1_000_000

    def _copies(self, stream_key: I64, vessel: I64) -> I64:
        p = self.params
        if p.duplicate_fraction <= 0:
            return np.arange(vessel.shape[0], dtype=np.int64)
        dup = uniform(p.seed, Stream.DUPLICATE, vessel, stream_key) < p.duplicate_fraction
        return np.repeat(np.arange(vessel.shape[0], dtype=np.int64), np.where(dup, 2, 1))

    def _slots(self, lo: float, hi: float) -> list[tuple[Phases, float, float]]:
        """Slot schedules and the sub-range of [lo - late horizon, hi) each one serves."""
        start = lo - self.params.late_horizon_s
        out = []
        for k in Timeline.slots_between(start, hi):
            a, b = max(start, k * EPOCH_S), min(hi, (k + 1) * EPOCH_S)
            if a < b:
                out.append((self.timeline.slot(k), a, b))
        return out

    def _str(self, values: npt.NDArray[np.str_] | pa.Array, index: I64) -> pa.Array:
        dictionary = values if isinstance(values, pa.Array) else pa.array(values)
        return pc.take(dictionary, pa.array(index))

    def _nav_text(self, nav: I64) -> pa.Array:
        lut = self._status_lut
        if nav.size and int(nav.min()) >= 0 and int(nav.max()) < lut.shape[0]:
            return self._str(self._status_a, lut[nav])
        return self._str(self._status_a, np.searchsorted(self._status_codes, nav))

    @staticmethod
    def _ts(us: I64, null: npt.NDArray[np.bool_] | None = None) -> pa.Array:
        return pa.array(us, type=pa.int64(), mask=null).cast(TS)

    # -- vessel_positions -------------------------------------------------------------------
    def positions(self, lo: float | datetime, hi: float | datetime) -> pa.Table:
        lo_s, hi_s = to_seconds(lo), to_seconds(hi)
        parts = [self._positions_slot(ph, a, b, lo_s, hi_s) for ph, a, b in self._slots(lo_s, hi_s)]
        parts = [t for t in parts if t is not None]
        if not parts:
            return arrow_schema(POSITIONS_SCHEMA).empty_table()
        if len(parts) == 1:
            return parts[0]
        return _sort(pa.concat_tables(parts), "timestamp", "mmsi")

    def _write_order(self, ingested_us: I64, t_us: I64, vessel: I64, lo: float) -> I64:
        """Write order (ingested_at, timestamp, mmsi) as one integer sort: cheaper than Arrow's.

        Rows must come in (MMSI rank, time) order, as `instants_by_phase(..., rank=...)` gives
        them. Keys
        are unique but for exact copies (which give identical rows whichever comes first), so an
        unstable sort is as good as a stable one.
        """
        k1 = ingested_us // 1_000_000 - int(np.floor(lo))
        if not k1.size:
            return np.zeros(0, dtype=np.int64)
        if ingested_us is t_us:  # nothing late: a stable sort by second keeps MMSI rank order
            top = int(k1.max())
            if int(k1.min()) >= 0 and top < 1 << 16:
                return np.argsort(k1.astype(np.uint16), kind="stable")
            return np.argsort(k1, kind="stable")
        late = (ingested_us - t_us) // 1_000_000
        if k1.max() >= 1 << 22 or late.max() >= 1 << 22:
            return np.lexsort((self._mmsi_rank[vessel], t_us, ingested_us))
        key = (k1 << 42) | (((1 << 22) - 1 - late) << 20) | self._mmsi_rank[vessel]
        return np.argsort(key)

    def _per_phase(self, ph: Phases) -> "_PhaseColumns":
        """Per-phase inputs of the position rows, kept for the slots in use (windows of one slot
        share them: the bench makes six calls per slot, `synth start` one a minute)."""
        hit = self._phase_cache.get(id(ph))
        if hit is not None and hit[0] is ph:
            return hit[1]
        cols = _PhaseColumns(
            interval=report_interval_s(ph, self.params.sampling_interval_s),
            vertex=np.full(ph.size, -1, dtype=np.int32),
        )
        self._phase_cache[id(ph)] = (ph, cols)
        while len(self._phase_cache) > 2:  # as many slots as the timeline keeps
            self._phase_cache.pop(next(iter(self._phase_cache)))
        return cols

    def _position_text(
        self, sub: Phases, local: I64, t: I64, vessel: I64, nav: I64
    ) -> dict[str, pa.Array]:
        """The string columns of position rows (in the rows' order)."""
        day_str, day_idx = self._day_strings(t)
        return {
            "mmsi": self._str(self._mmsi_a, vessel),
            "imo": self._str(self._imo_a, vessel),
            "vessel_name": self._str(self._names, vessel),
            "vessel_type": self._str(self._type_a, vessel),
            "flag": self._str(self._flag_a, vessel),
            "status": self._nav_text(nav),
            "destination": self._str(self._port_name, sub.dest[local]),
            "report_date": self._str(day_str, day_idx),
        }

    def _day_strings(self, t: I64) -> tuple[npt.NDArray[np.str_], I64]:
        """report_date (YYYYMMDD) per row: the days spanned, and each row's index among them."""
        day = t // 86_400
        first, last = int(day.min()), int(day.max())
        names = np.array(
            [
                datetime.fromtimestamp(d * 86_400, UTC).strftime("%Y%m%d")
                for d in range(first, last + 1)
            ]
        )
        return names, day - first

    def _positions_slot(
        self, ph: Phases, a: float, b: float, lo: float, hi: float
    ) -> pa.Table | None:
        p = self.params
        per = self._per_phase(ph)
        sel, local, t = instants_by_phase(
            ph, per.interval, self.fleet.report_offset, a, b, rank=self._mmsi_rank
        )
        if t.size == 0:
            return None
        sub = ph.take(sel)  # the window's phases: row gathers below read from cache
        vessel = sub.vessel[local]
        t_us = t * 1_000_000
        late = p.late_fraction > 0
        ingested = t_us + self._lateness(t_us, vessel) if late else t_us
        keep: I64 | None = None
        if late or not (ingested.min() >= lo * 1e6 and ingested.max() < hi * 1e6):
            keep = np.flatnonzero((ingested >= lo * 1e6) & (ingested < hi * 1e6))
            if keep.size == 0:
                return None
        if p.duplicate_fraction > 0:
            base = keep if keep is not None else np.arange(t.shape[0], dtype=np.int64)
            keep = base[self._copies(t_us[base], vessel[base])]
        if keep is not None:
            local, t, t_us, vessel = local[keep], t[keep], t_us[keep], vessel[keep]
            ingested = ingested[keep] if late else t_us
        if t.size == 0:
            return None
        order = self._write_order(ingested, t_us, vessel, lo)
        local_w, t_w = local[order], t[order]
        t_us_w, vessel_w = t_w * 1_000_000, sub.vessel[local_w]
        nav = sub.nav[local_w]
        # The text columns need only the rows' vessels, phases and days: Arrow builds them in a
        # second thread (it releases the GIL) while the positions are computed here.
        text = _Background(lambda: self._position_text(sub, local_w, t_w, vessel_w, nav))
        hint = per.vertex[sel].astype(np.int64)
        # The state is computed in instant order (a phase's rows together, so the route lookups
        # walk from one search per phase), then every column is put in write order.
        k = kinematics(
            p.seed,
            self.timeline.net,
            sub,
            local,
            t.astype(np.float64),
            self.fleet.heading_missing,
            grouped=True,
            vertex=hint,
            noise_prefix=self._noise_prefix,
        )
        per.vertex[sel] = hint
        noise = (to_unit(extend(self._noise_prefix[vessel], t_us, 2)) - 0.5) * 0.4
        moving = k.speed_kn > 0
        sog = np.where(moving, np.maximum(np.round(k.speed_kn + noise, 1), 0.1), 0.0)
        local, t_us, vessel = local_w, t_us_w, vessel_w
        ingested = ingested[order] if late else t_us
        eta_null = np.isnan(sub.eta)
        eta_us = np.where(eta_null, 0, np.rint(np.nan_to_num(sub.eta) * 1e6)).astype(np.int64)
        numbers = {
            "timestamp": self._ts(t_us),
            "length": pa.array(self.fleet.length[vessel]),
            "beam": pa.array(self.fleet.beam[vessel]),
            "draft": pa.array(sub.draft[local]),
            "latitude": pa.array(np.round(k.latitude[order], 6)),
            "longitude": pa.array(np.round(k.longitude[order], 6)),
            "speed_knots": pa.array(sog[order]),
            "course": pa.array(np.rint(k.course[order]).astype(np.int64) % 360),
            "heading": pa.array(k.heading[order]),
            "eta": self._ts(eta_us[local], eta_null[local]),
            "nav_status": pa.array(nav),
            "ingested_at": self._ts(ingested),
        }
        cols = {**numbers, **text.result()}
        cols = {f.name: cols[f.name] for f in POSITIONS_SCHEMA}
        return pa.Table.from_pydict(cols, schema=arrow_schema(POSITIONS_SCHEMA))

    # -- port_events ------------------------------------------------------------------------
    def _event_rows(
        self, lo: float, hi: float, only: int | None = None
    ) -> list[tuple[Phases, I64, I64, I64]]:
        """(schedule, phase idx, event time us, ingested us) of events written in [lo, hi)."""
        out = []
        for ph, a, b in self._slots(lo, hi):
            sel = (ph.event > 0) & (ph.t >= a) & (ph.t < b)
            if only is not None:
                sel &= ph.event == only
            idx = np.flatnonzero(sel)
            t_us = np.rint(ph.t[idx] * 1e6).astype(np.int64)
            vessel = ph.vessel[idx]
            ingested = t_us + self._lateness(t_us * 8 + ph.event[idx], vessel)
            keep = (ingested >= lo * 1e6) & (ingested < hi * 1e6)
            idx, t_us, ingested = idx[keep], t_us[keep], ingested[keep]
            rows = self._copies(t_us * 8 + ph.event[idx], ph.vessel[idx])
            out.append((ph, idx[rows], t_us[rows], ingested[rows]))
        return out

    def events(self, lo: float | datetime, hi: float | datetime) -> pa.Table:
        lo_s, hi_s = to_seconds(lo), to_seconds(hi)
        parts = []
        for ph, idx, t_us, ingested in self._event_rows(lo_s, hi_s):
            if idx.size == 0:
                continue
            k = kinematics(
                self.params.seed, self.timeline.net, ph, idx, ph.t[idx], self.fleet.heading_missing
            )
            vessel = ph.vessel[idx]
            parts.append(
                pa.Table.from_pydict(
                    {
                        "event_time": self._ts(t_us),
                        "port_id": self._str(self._port_code, ph.port[idx]),
                        "port_name": self._str(self._port_name, ph.port[idx]),
                        "vessel_mmsi": self._str(self._mmsi_a, vessel),
                        "event_type": self._str(np.array(EVENT_TYPES), ph.event[idx]),
                        "status": self._nav_text(ph.nav[idx]),
                        "latitude": pa.array(np.round(k.latitude, 6)),
                        "longitude": pa.array(np.round(k.longitude, 6)),
                        "ingested_at": self._ts(ingested),
                    },
                    schema=arrow_schema(EVENTS_SCHEMA),
                )
            )
        return self._sorted(parts, EVENTS_SCHEMA, "event_time", "vessel_mmsi")

    def _sorted(
        self,
        parts: list[pa.Table],
        schema: list[bigquery.SchemaField],
        time_col: str,
        mmsi_col: str,
    ) -> pa.Table:
        if not parts:
            return arrow_schema(schema).empty_table()
        return _sort(pa.concat_tables(parts), time_col, mmsi_col)

    # -- vessel_metadata --------------------------------------------------------------------
    def metadata(self, lo: float | datetime, hi: float | datetime) -> pa.Table:
        """Static/voyage reports every 6 min x scale per vessel, plus one at every departure."""
        lo_s, hi_s = to_seconds(lo), to_seconds(hi)
        p = self.params
        step = static_interval_s(p.sampling_interval_s)
        parts = []
        for ph, a, b in self._slots(lo_s, hi_s):
            interval = np.full(ph.size, step, dtype=np.int64)
            phase, t = instants(ph, interval, self.fleet.report_offset, a, b)
            t_us = t * 1_000_000
            vessel = ph.vessel[phase]
            ingested = t_us + self._lateness(t_us * 8 + 7, vessel)
            keep = (ingested >= lo_s * 1e6) & (ingested < hi_s * 1e6)
            rows = np.flatnonzero(keep)[self._copies((t_us * 8 + 7)[keep], vessel[keep])]
            parts.append(self._metadata_table(ph, phase[rows], t_us[rows], ingested[rows]))
        for ph, idx, t_us, ingested in self._event_rows(lo_s, hi_s, only=DEPARTURE):
            parts.append(self._metadata_table(ph, idx, t_us, ingested))
        parts = [t for t in parts if t.num_rows]
        return self._sorted(parts, METADATA_SCHEMA, "last_updated", "mmsi")

    def _metadata_table(self, ph: Phases, phase: I64, t_us: I64, ingested: I64) -> pa.Table:
        f = self.fleet
        vessel = ph.vessel[phase]
        eta = ph.eta[phase]
        eta_null = np.isnan(eta)
        return pa.Table.from_pydict(
            {
                "last_updated": self._ts(t_us),
                "mmsi": self._str(self._mmsi_a, vessel),
                "imo": self._str(self._imo_a, vessel),
                "vessel_name": self._str(self._names, vessel),
                "vessel_type": self._str(self._type_a, vessel),
                "flag": self._str(self._flag_a, vessel),
                "callsign": self._str(self._calls, vessel),
                "length": pa.array(f.length[vessel]),
                "beam": pa.array(f.beam[vessel]),
                "draft": pa.array(np.rint(ph.draft[phase]).astype(np.int64)),
                "gross_tonnage": pa.array(f.gross_tonnage[vessel]),
                "deadweight": pa.array(f.deadweight[vessel]),
                "year_built": pa.array(f.year_built[vessel]),
                "home_port": self._str(self._home_a, vessel),
                "owner": self._str(self._owners, vessel),
                "status": self._nav_text(ph.nav[phase]),
                "destination": self._str(self._port_name, ph.dest[phase]),
                "eta": self._ts(
                    np.where(eta_null, 0, np.rint(np.nan_to_num(eta) * 1e6)).astype(np.int64),
                    eta_null,
                ),
                "ingested_at": self._ts(ingested),
            },
            schema=arrow_schema(METADATA_SCHEMA),
        )

    def window(self, lo: float | datetime, hi: float | datetime) -> WindowRows:
        """All three tables for the write window [lo, hi)."""
        return WindowRows(self.positions(lo, hi), self.events(lo, hi), self.metadata(lo, hi))

    def table(self, kind: str, lo: float | datetime, hi: float | datetime) -> pa.Table:
        return {"positions": self.positions, "events": self.events, "metadata": self.metadata}[
            kind
        ](lo, hi)
