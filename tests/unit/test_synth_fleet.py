"""Fleet identities: counts, uniqueness, MID/flag, IMO check digits, dimensions, determinism."""

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harperbq.synth.fleet import MAX_VESSELS, build_fleet, imo_check_digit, valid_imo
from harperbq.synth.reference import FLAGS, VESSEL_TYPES


def test_exact_size_and_unique_identities() -> None:
    fleet = build_fleet(7, 5000)
    assert fleet.size == 5000
    assert len(np.unique(fleet.mmsi)) == 5000
    assert len(np.unique(fleet.imo)) == 5000
    assert len(np.unique(fleet.callsign)) == 5000
    assert all(len(str(m)) == 9 for m in fleet.mmsi[:100])


def test_mmsi_mid_matches_the_flag_and_callsign_its_prefix() -> None:
    fleet = build_fleet(7, 5000)
    mid = fleet.mmsi // 1_000_000
    for i in range(fleet.size):
        flag = FLAGS[fleet.flag[i]]
        assert mid[i] in flag.mids
        assert str(fleet.callsign[i]).startswith(flag.callsign_prefix)


def test_imo_numbers_carry_a_valid_check_digit() -> None:
    fleet = build_fleet(7, 5000)
    assert all(valid_imo(int(imo)) for imo in fleet.imo)
    assert valid_imo(9074729) and not valid_imo(9074728)  # a published IMO number, and a typo


@given(st.integers(min_value=100_000, max_value=999_999))
def test_check_digit_matches_definition(base: int) -> None:
    digit = int(imo_check_digit(np.array([base]))[0])
    assert valid_imo(base * 10 + digit)
    assert not valid_imo(base * 10 + (digit + 1) % 10)


def test_dimensions_and_tonnage_are_consistent_with_type_and_size() -> None:
    fleet = build_fleet(3, 20000)
    for k, vt in enumerate(VESSEL_TYPES):
        sel = fleet.vtype == k
        assert sel.any()
        assert (
            fleet.length[sel].min() >= vt.length_m[0] and fleet.length[sel].max() <= vt.length_m[1]
        )
        assert fleet.draft[sel].min() >= vt.draft_m[0] and fleet.draft[sel].max() <= vt.draft_m[1]
        assert (fleet.beam[sel] <= vt.max_beam_m + 0.5).all()
        assert (fleet.beam[sel] <= fleet.length[sel] / vt.length_beam[0] + 0.5).all()
        # bigger ships carry more: tonnage rises with length within a type
        assert np.corrcoef(fleet.length[sel], fleet.gross_tonnage[sel])[0, 1] > 0.8
        assert np.corrcoef(fleet.length[sel], fleet.deadweight[sel])[0, 1] > 0.8
    passenger = fleet.vtype == 4
    cargo = fleet.vtype == 0
    # passenger ships: high GT, low deadweight; cargo ships the other way round
    assert np.median(fleet.gross_tonnage[passenger] / fleet.deadweight[passenger]) > 5
    assert np.median(fleet.gross_tonnage[cargo] / fleet.deadweight[cargo]) < 1.5


def test_type_shares_hold_for_every_fleet_size() -> None:
    for n in (20, 137, 10_000):
        fleet = build_fleet(42, n)
        counts = np.bincount(fleet.vtype, minlength=len(VESSEL_TYPES))
        for k, vt in enumerate(VESSEL_TYPES):
            assert abs(counts[k] - vt.share * n) <= 2, (n, vt.code)


def test_deterministic_and_a_small_fleet_is_a_prefix_of_a_big_one() -> None:
    build_fleet.cache_clear()
    a, b = build_fleet(42, 1000), build_fleet(42, 50)
    build_fleet.cache_clear()
    again = build_fleet(42, 1000)
    assert (a.mmsi == again.mmsi).all() and list(a.name) == list(again.name)
    assert (a.mmsi[:50] == b.mmsi).all() and (a.imo[:50] == b.imo).all()
    other = build_fleet(43, 1000)
    assert (a.mmsi != other.mmsi).mean() > 0.9


def test_no_silent_cap() -> None:
    with pytest.raises(ValueError, match="between 1 and"):
        build_fleet(1, MAX_VESSELS + 1)


def test_a_fleet_of_100000_builds_fast() -> None:
    build_fleet.cache_clear()
    started = time.perf_counter()
    fleet = build_fleet(11, 100_000)
    assert fleet.size == 100_000
    assert time.perf_counter() - started < 5.0
