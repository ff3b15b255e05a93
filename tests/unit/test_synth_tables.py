"""The three tables: determinism, additivity, knobs, events where the tracks are, integrity."""

import itertools
from functools import lru_cache

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from harperbq.synth.params import SynthParams
from harperbq.synth.reference import PORTS
from harperbq.synth.routes import haversine_nm
from harperbq.synth.tables import POSITIONS_SCHEMA, Generator, arrow_schema
from harperbq.synth.track import track_at

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
KNOBS = SynthParams(
    total_vessels=40, seed=9, late_fraction=0.2, late_max_s=900, duplicate_fraction=0.05
)


@lru_cache(maxsize=4)
def generator(params: SynthParams) -> Generator:
    return Generator(params)


def ts(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table[name].cast(pa.int64()).to_numpy() / 1e6)


def test_schema_keeps_the_original_columns_and_types() -> None:
    names = [f.name for f in POSITIONS_SCHEMA]
    original = [
        "timestamp",
        "mmsi",
        "imo",
        "vessel_name",
        "vessel_type",
        "flag",
        "length",
        "beam",
        "draft",
        "latitude",
        "longitude",
        "speed_knots",
        "course",
        "heading",
        "status",
        "destination",
        "eta",
        "report_date",
    ]
    assert names[: len(original)] == original
    types = {f.name: f.field_type for f in POSITIONS_SCHEMA}
    assert types["mmsi"] == "STRING" and types["course"] == "INTEGER" and types["draft"] == "FLOAT"
    table = generator(SynthParams(total_vessels=10)).positions(T0, T0 + 600)
    assert table.schema == arrow_schema(POSITIONS_SCHEMA)


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a = Generator(SynthParams(total_vessels=30, seed=1)).window(T0, T0 + 7200)
    b = Generator(SynthParams(total_vessels=30, seed=1)).window(T0, T0 + 7200)
    c = Generator(SynthParams(total_vessels=30, seed=2)).window(T0, T0 + 7200)
    assert (
        a.positions.equals(b.positions)
        and a.events.equals(b.events)
        and a.metadata.equals(b.metadata)
    )
    assert not a.positions.equals(c.positions)


@settings(max_examples=12, deadline=None)
@given(st.floats(min_value=1.0, max_value=3 * 3600 - 1.0), st.sampled_from([0.0, 0.5, 0.999]))
def test_generating_a_c_equals_a_b_then_b_c(split: float, frac: float) -> None:
    gen = generator(KNOBS)
    a, c = T0, T0 + 3 * 3600
    b = a + split + frac
    for kind in ("positions", "events", "metadata"):
        whole = gen.table(kind, a, c)
        parts = pa.concat_tables([gen.table(kind, a, b), gen.table(kind, b, c)])
        assert whole.equals(parts), kind


def test_additivity_across_many_small_windows_and_a_schedule_slot_boundary() -> None:
    gen = generator(KNOBS)
    from harperbq.synth.fleet import EPOCH_S

    boundary = np.ceil(T0 / EPOCH_S) * EPOCH_S
    a, c = boundary - 1800, boundary + 1800
    whole = gen.positions(a, c)
    parts = pa.concat_tables([gen.positions(t, t + 60) for t in np.arange(a, c, 60)])
    assert whole.num_rows == parts.num_rows > 0
    assert whole.sort_by(
        [("ingested_at", "ascending"), ("timestamp", "ascending"), ("mmsi", "ascending")]
    ).equals(
        parts.sort_by(
            [("ingested_at", "ascending"), ("timestamp", "ascending"), ("mmsi", "ascending")]
        )
    )


def test_late_rows_are_older_than_their_window_within_the_maximum() -> None:
    gen = generator(KNOBS)
    pos = gen.positions(T0 + 3600, T0 + 7200)
    t, ingested = ts(pos, "timestamp"), ts(pos, "ingested_at")
    late = ingested > t
    assert 0.15 < late.mean() < 0.25
    assert (ingested - t).max() <= 900
    assert (t[late] < T0 + 3600).any()  # some rows written in this window are older than it
    assert ((ingested >= T0 + 3600) & (ingested < T0 + 7200)).all()


def test_duplicates_are_exact_copies() -> None:
    pos = generator(KNOBS).positions(T0, T0 + 3600)
    rows = pos.to_pylist()
    keys = [(r["mmsi"], r["timestamp"]) for r in rows]
    unique = set(keys)
    assert 0.03 < 1 - len(unique) / len(keys) < 0.07
    seen: dict[tuple[str, object], dict[str, object]] = {}
    for key, row in zip(keys, rows, strict=True):
        if key in seen:
            assert seen[key] == row
        seen[key] = row
    no_dups = SynthParams(total_vessels=40, seed=9, late_fraction=0.2, late_max_s=900)
    assert generator(no_dups).positions(T0, T0 + 3600).num_rows == len(unique)


def test_same_vessels_in_all_three_tables() -> None:
    gen = generator(SynthParams(total_vessels=60, seed=3))
    w = gen.window(T0, T0 + 86_400)
    pos = set(w.positions["mmsi"].to_pylist())
    meta = set(w.metadata["mmsi"].to_pylist())
    events = set(w.events["vessel_mmsi"].to_pylist())
    assert len(pos) == 60 and pos == meta
    assert events and events <= pos
    # and the same identity everywhere
    names = dict(
        zip(w.positions["mmsi"].to_pylist(), w.positions["vessel_name"].to_pylist(), strict=True)
    )
    for m, n in zip(
        w.metadata["mmsi"].to_pylist(), w.metadata["vessel_name"].to_pylist(), strict=True
    ):
        assert names[m] == n


def test_events_happen_where_and_when_the_track_says() -> None:
    gen = generator(SynthParams(total_vessels=60, seed=3))
    events = gen.events(T0, T0 + 3 * 86_400)
    assert events.num_rows > 20
    mmsi = np.array(events["vessel_mmsi"].to_pylist(), dtype=np.int64)
    vessel = np.array([int(np.flatnonzero(gen.fleet.mmsi == m)[0]) for m in mmsi])
    t = ts(events, "event_time")
    state = track_at(gen.timeline, vessel, t + 1e-6)  # the track just after the event
    d = haversine_nm(
        state.latitude,
        state.longitude,
        events["latitude"].to_numpy(),
        events["longitude"].to_numpy(),
    )
    assert d.max() < 0.001  # the same place, within 2 m
    status = {0: "UNDERWAY_USING_ENGINE", 1: "AT_ANCHOR", 5: "MOORED", 7: "ENGAGED_IN_FISHING"}
    assert [status[int(n)] for n in state.nav] == events["status"].to_pylist()
    ports = {p.code: p for p in PORTS}
    for row in events.to_pylist():
        berth = ports[row["port_id"]].berth
        d = haversine_nm(
            np.array([row["latitude"]]),
            np.array([row["longitude"]]),
            np.array([berth[0]]),
            np.array([berth[1]]),
        )[0]
        if row["event_type"] in ("BERTHED", "DEPARTURE"):
            assert d < 0.01, row
        else:
            assert d < 25, row  # arrival and anchorage lie on the port's approach


def test_positions_agree_with_events_around_each_port_call() -> None:
    gen = generator(SynthParams(total_vessels=60, seed=3))
    w = gen.window(T0, T0 + 3 * 86_400)
    pos = w.positions
    p_mmsi = np.array(pos["mmsi"].to_pylist())
    p_t = ts(pos, "timestamp")
    p_nav = pos["nav_status"].to_numpy()
    expected_after = {"BERTHED": 5, "ANCHORED": 1, "DEPARTURE": 0, "UNDERWAY": 0}
    checked = 0
    for row in w.events.to_pylist():
        want = expected_after.get(row["event_type"])
        if want is None:
            continue
        t = row["event_time"].timestamp()
        mine = np.flatnonzero((p_mmsi == row["vessel_mmsi"]) & (p_t >= t))
        if mine.size == 0:
            continue
        first = mine[np.argmin(p_t[mine])]
        if p_t[first] - t < 600:  # the next report, if it comes before the state changes again
            assert p_nav[first] == want, row
            checked += 1
    assert checked > 10


def test_port_calls_follow_the_event_grammar() -> None:
    gen = generator(SynthParams(total_vessels=60, seed=3))
    events = gen.events(T0, T0 + 20 * 86_400).sort_by(
        [("vessel_mmsi", "ascending"), ("event_time", "ascending")]
    )
    follows = {
        "DEPARTURE": {"ARRIVAL"},
        "ARRIVAL": {"ANCHORED", "BERTHED"},
        "ANCHORED": {"UNDERWAY"},
        "UNDERWAY": {"BERTHED"},
        "BERTHED": {"DEPARTURE"},
    }
    rows = events.to_pylist()
    pairs = 0
    for prev, cur in itertools.pairwise(rows):
        if prev["vessel_mmsi"] != cur["vessel_mmsi"]:
            continue
        assert cur["event_type"] in follows[prev["event_type"]], (prev, cur)
        if prev["event_type"] != "DEPARTURE":
            assert cur["port_id"] == prev["port_id"]  # one port call stays in one port
        pairs += 1
    assert pairs > 100


def test_metadata_has_static_reports_and_a_voyage_update_at_each_departure() -> None:
    gen = generator(SynthParams(total_vessels=60, seed=3))
    w = gen.window(T0, T0 + 86_400)
    meta = w.metadata
    per_vessel = np.bincount(
        np.unique(meta["mmsi"].to_numpy(zero_copy_only=False), return_inverse=True)[1]
    )
    assert per_vessel.min() >= 40  # every 36 min at the default sampling interval
    departures = [r for r in w.events.to_pylist() if r["event_type"] == "DEPARTURE"]
    updates = {(r["mmsi"], r["last_updated"]) for r in meta.to_pylist()}
    assert departures and all((d["vessel_mmsi"], d["event_time"]) in updates for d in departures)
