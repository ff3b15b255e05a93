"""Tracks: bounds, speeds, order in time, on the water, antimeridian, epochs, cadence."""

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pytest
from global_land_mask import globe

from harperbq.synth.fleet import EPOCH_S
from harperbq.synth.params import SynthParams
from harperbq.synth.reference import PORTS, VESSEL_TYPES
from harperbq.synth.routes import haversine_nm, route_net
from harperbq.synth.tables import Generator
from harperbq.synth.track import track_at

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MAX_KN = {t.code: t.speed_kn[1] for t in VESSEL_TYPES}


@lru_cache(maxsize=1)
def two_days() -> tuple[Generator, pa.Table]:
    gen = Generator(SynthParams(total_vessels=300, seed=5))
    return gen, gen.positions(T0, T0 + 2 * 86_400)


def col(table: pa.Table, name: str) -> np.ndarray:
    column = table[name]
    if pa.types.is_timestamp(column.type):
        return np.asarray(column.cast(pa.int64()).to_numpy() / 1e6)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def test_positions_are_within_bounds_and_well_formed() -> None:
    _, pos = two_days()
    lat, lon = col(pos, "latitude"), col(pos, "longitude")
    assert pos.num_rows > 100_000
    assert ((lat >= -90) & (lat <= 90)).all() and ((lon >= -180) & (lon < 180)).all()
    course, heading = col(pos, "course"), col(pos, "heading")
    assert ((course >= 0) & (course < 360)).all()
    assert (((heading >= 0) & (heading < 360)) | (heading == 511)).all()
    assert set(col(pos, "status")) <= {
        "UNDERWAY_USING_ENGINE",
        "AT_ANCHOR",
        "MOORED",
        "ENGAGED_IN_FISHING",
    }
    assert set(col(pos, "nav_status")) <= {0, 1, 5, 7}
    assert set(col(pos, "report_date")) == {"20260101", "20260102"}


def test_reported_speed_stays_within_the_type_limits() -> None:
    _, pos = two_days()
    speed, vtype = col(pos, "speed_knots"), col(pos, "vessel_type")
    for code, top in MAX_KN.items():
        sel = vtype == code
        assert sel.any(), code
        assert speed[sel].max() <= top + 0.25, code
    assert (speed >= 0).all()
    moored = col(pos, "nav_status") == 5
    assert (speed[moored] == 0).all()


def _by_vessel(pos: pa.Table) -> tuple[np.ndarray, ...]:
    mmsi = col(pos, "mmsi").astype(np.int64)
    t = col(pos, "timestamp")
    order = np.lexsort((t, mmsi))
    return (
        mmsi[order],
        t[order],
        col(pos, "latitude")[order],
        col(pos, "longitude")[order],
        col(pos, "vessel_type")[order],
    )


def test_each_vessel_reports_in_strictly_increasing_time() -> None:
    _, pos = two_days()
    mmsi, t, *_ = _by_vessel(pos)
    same = mmsi[1:] == mmsi[:-1]
    assert (np.diff(t)[same] > 0).all()


def test_no_jumps_anywhere_including_the_antimeridian() -> None:
    _, pos = two_days()
    mmsi, t, lat, lon, vtype = _by_vessel(pos)
    same = mmsi[1:] == mmsi[:-1]
    dist = haversine_nm(lat[:-1], lon[:-1], lat[1:], lon[1:])
    implied = dist / (np.diff(t) / 3600.0)
    limit = np.array([MAX_KN[v] for v in vtype[1:]]) * 1.02 + 0.5
    assert (implied[same] <= limit[same]).all(), implied[same].max()


def test_ships_cross_the_antimeridian_without_a_jump() -> None:
    gen = Generator(SynthParams(total_vessels=2000, seed=5))
    ph = gen.timeline.slot(int(T0 // EPOCH_S))
    # a sea phase during which the ship passes longitude 180, found by sampling each phase
    net = gen.timeline.net
    moving = np.flatnonzero((np.abs(ph.v) > 10) & (ph.event == 0) & (ph.amp == 0))
    frac = np.linspace(0, 1, 200)
    lo = hi = None
    for j in moving:
        t = ph.t[j] + frac * (ph.end[j] - ph.t[j])
        lon = net.locate(np.full(t.shape, ph.path[j]), ph.s0[j] + ph.v[j] * (t - ph.t[j]) / 3600)[1]
        jump = np.flatnonzero(np.abs(np.diff(lon)) > 180)
        if jump.size:
            lo, hi = t[jump[0]], t[jump[0] + 1]
            break
    assert lo is not None and hi is not None, "expected a trans-Pacific voyage"

    def lon_at(t: float) -> float:
        return float(net.locate(ph.path[[j]], ph.s0[[j]] + ph.v[[j]] * (t - ph.t[j]) / 3600)[1][0])

    side = np.sign(lon_at(lo))
    for _ in range(50):  # bisect to the crossing instant
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.sign(lon_at(mid)) == side else (lo, mid)
    pos = gen.positions(lo - 1800, lo + 1800)
    mine = col(pos, "mmsi").astype(np.int64) == gen.fleet.mmsi[ph.vessel[j]]
    lat, lon = col(pos, "latitude")[mine], col(pos, "longitude")[mine]
    assert mine.sum() > 20
    assert (np.abs(lon) > 179).any() and (lon > 0).any() and (lon < 0).any()
    step = haversine_nm(lat[:-1], lon[:-1], lat[1:], lon[1:])
    assert step.max() < 1.0  # one report interval at sea speed, never a map-wide jump


def test_at_least_99_percent_of_under_way_positions_are_on_water() -> None:
    _, pos = two_days()
    moving = col(pos, "speed_knots") > 0
    lat, lon = col(pos, "latitude")[moving], col(pos, "longitude")[moving]
    water = globe.is_ocean(lat.copy(), lon.copy())
    assert water.mean() >= 0.99, water.mean()
    # berths and anchorages are on the water too (the land mask says so for every port)
    still = ~moving
    still_water = globe.is_ocean(
        col(pos, "latitude")[still].copy(), col(pos, "longitude")[still].copy()
    )
    assert still_water.mean() >= 0.999


def test_route_paths_unwrap_across_the_antimeridian() -> None:
    net = route_net()
    a = next(i for i, p in enumerate(PORTS) if p.code == "CNSHA")
    b = next(i for i, p in enumerate(PORTS) if p.code == "USLAX")
    path = int(net.path_id(a, b))
    s = np.linspace(0, net.length[path], 20_000)
    lat, lon, _ = net.locate(np.full(s.shape, path), s)
    step = haversine_nm(lat[:-1], lon[:-1], lat[1:], lon[1:])
    assert step.max() < 2 * net.length[path] / 20_000 + 0.01
    assert (np.abs(np.diff(lon)) > 180).sum() == 1  # wraps exactly once, at 180
    assert 4800 < net.length[path] < 6500  # Shanghai - Los Angeles is about 5 700 nm


def test_singapore_rotterdam_goes_via_suez_not_across_asia() -> None:
    net = route_net()
    a = next(i for i, p in enumerate(PORTS) if p.code == "SGSIN")
    b = next(i for i, p in enumerate(PORTS) if p.code == "NLRTM")
    path = int(net.path_id(a, b))
    assert 8000 < net.length[path] < 8800
    lat, lon, _ = net.locate(np.full(2000, path), np.linspace(0, net.length[path], 2000))
    assert ((np.abs(lat - 30.5) < 1.5) & (np.abs(lon - 32.4) < 1.0)).any()  # Suez Canal


def test_sea_speeds_of_every_voyage_lie_in_the_type_range() -> None:
    gen, _ = two_days()
    ph = gen.timeline.slot(int(T0 // EPOCH_S))
    vtype = gen.fleet.vtype[ph.vessel]
    sea = (ph.event == 0) & (ph.nav == 0) & (np.abs(ph.v) > 10.5)
    for k, vt in enumerate(VESSEL_TYPES):
        sel = sea & (vtype == k)
        if vt.code != "FISHING":
            assert sel.any()
        speeds = np.abs(ph.v[sel])
        assert (speeds >= vt.speed_kn[0] - 1e-9).all() and (speeds <= vt.speed_kn[1] + 1e-9).all()


def test_the_track_is_continuous_across_epoch_boundaries() -> None:
    gen, _ = two_days()
    fleet = gen.fleet
    vessels = np.arange(0, 300, 7)
    boundary = (
        fleet.epoch_offset[vessels]
        + np.ceil((T0 - fleet.epoch_offset[vessels]) / EPOCH_S) * EPOCH_S
    )
    before = track_at(gen.timeline, vessels, boundary - 1e-3)
    after = track_at(gen.timeline, vessels, boundary + 1e-3)
    d = haversine_nm(before.latitude, before.longitude, after.latitude, after.longitude)
    assert d.max() < 1e-3
    assert (before.nav == 5).all() and (after.nav == 5).all()  # epochs end and begin alongside


def test_report_cadence_follows_speed_and_status() -> None:
    _, pos = two_days()
    mmsi, t, *_ = _by_vessel(pos)
    nav = col(pos, "nav_status")
    speed = col(pos, "speed_knots")
    order = np.lexsort((col(pos, "timestamp"), col(pos, "mmsi").astype(np.int64)))
    nav, speed = nav[order], speed[order]
    same = (mmsi[1:] == mmsi[:-1]) & (nav[1:] == nav[:-1])
    gap = np.diff(t)
    moored = same & (nav[1:] == 5)
    assert np.median(gap[moored]) == pytest.approx(1080)  # 3 min x 6
    fast = same & (nav[1:] == 0) & (speed[1:] > 23.5)
    slow = same & (nav[1:] == 0) & (speed[1:] < 13.5) & (speed[1:] > 0)
    assert np.median(gap[fast]) == pytest.approx(12)
    assert np.median(gap[slow]) == pytest.approx(60)


def test_sampling_interval_scales_volume() -> None:
    coarse = Generator(SynthParams(total_vessels=50, seed=5, sampling_interval_s=120))
    fine = Generator(SynthParams(total_vessels=50, seed=5, sampling_interval_s=30))
    n_coarse = coarse.positions(T0, T0 + 6 * 3600).num_rows
    n_fine = fine.positions(T0, T0 + 6 * 3600).num_rows
    assert 3.6 < n_fine / n_coarse < 4.4
