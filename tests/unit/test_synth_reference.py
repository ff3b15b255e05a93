"""Reference data: ports on the water (land mask), vessel types, flags and MIDs."""

import numpy as np
from global_land_mask import globe

from harperbq.synth.reference import FLAGS, PORTS, VESSEL_TYPES
from harperbq.synth.routes import haversine_nm


def on_water(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return np.asarray(globe.is_ocean(lat.copy(), lon.copy()))


def test_the_29_weighted_ports_of_the_original() -> None:
    weights = {p.name: p.weight for p in PORTS}
    assert len(PORTS) == 29
    assert len({p.code for p in PORTS}) == 29
    assert weights["Singapore"] == 10 and weights["Shanghai"] == 9 and weights["Rotterdam"] == 7
    assert weights["Dubai/Jebel Ali"] == 6 and weights["Lagos"] == 2
    assert sum(weights.values()) == 127


def test_every_berth_and_approach_is_on_the_water() -> None:
    for port in PORTS:
        pts = np.array(port.path)
        assert on_water(pts[:, 0], pts[:, 1]).all(), port.name
        for (la1, lo1), (la2, lo2) in zip(port.path[:-1], port.path[1:], strict=True):
            n = (
                int(
                    haversine_nm(
                        np.array([la1]), np.array([lo1]), np.array([la2]), np.array([lo2])
                    )[0]
                    / 0.01
                )
                + 2
            )
            lat, lon = np.linspace(la1, la2, n), np.linspace(lo1, lo2, n)
            assert on_water(lat, lon).all(), f"{port.name}: approach leg crosses land"


def test_berths_are_at_the_port_not_at_city_centres_far_away() -> None:
    # The original's inland coordinates (city centres) are what we must not use; ours sit within
    # a few km of the terminals, the farthest being river ports the land mask cannot resolve.
    original_centres = {"Houston": (29.7604, -95.3698), "Hamburg": (53.5511, 9.9937)}
    for port in PORTS:
        if port.name in original_centres:
            la, lo = original_centres[port.name]
            d = haversine_nm(
                np.array([la]), np.array([lo]), np.array([port.berth[0]]), np.array([port.berth[1]])
            )
            assert d[0] > 5, "berth must not be the inland city centre"


def test_vessel_types_match_the_original_shares_and_ranges() -> None:
    codes = {t.code: t for t in VESSEL_TYPES}
    assert set(codes) == {"CONTAINER", "BULK_CARRIER", "TANKER", "CARGO", "PASSENGER", "FISHING"}
    assert abs(sum(t.share for t in VESSEL_TYPES) - 1.0) < 1e-9
    assert codes["CONTAINER"].speed_kn == (18, 25) and codes["CONTAINER"].length_m == (200, 400)
    assert codes["TANKER"].draft_m == (10, 18) and codes["FISHING"].speed_kn == (8, 14)


def test_mids_are_three_digit_and_belong_to_one_flag() -> None:
    seen: dict[int, str] = {}
    for flag in FLAGS:
        assert len(flag.code) == 2 and flag.mids
        for mid in flag.mids:
            assert 201 <= mid <= 775
            assert mid not in seen, f"MID {mid} of {flag.code} also used by {seen.get(mid)}"
            seen[mid] = flag.code
    for port in PORTS:
        assert any(f.code == port.country for f in FLAGS), port.country
