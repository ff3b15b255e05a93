"""Leases by the observer's monotonic clock: the beat counter, never the writer's wall clock."""

from datetime import UTC, datetime, timedelta

import pytest

from harperbq.sync.cluster.leases import Leases
from harperbq.sync.state import WorkerRecord


def record(worker: str, beat: int, last_seen: datetime) -> WorkerRecord:
    return WorkerRecord(worker, "n", last_seen.isoformat(), last_seen.isoformat(), beat)


def beats(records: list[WorkerRecord]) -> list[tuple[str, int]]:
    return [(r.worker_id, r.beat) for r in records]


def test_first_sight_is_live_for_one_lease() -> None:
    leases = Leases(6)
    assert leases.observe([("a", 7)], now=100.0) == ["a"]
    assert leases.observe([("a", 7)], now=105.9) == ["a"]
    assert leases.observe([("a", 7)], now=106.0) == []
    assert leases.changed_since_first_sight() == []


def test_a_beat_that_stops_changing_is_dead_after_the_lease() -> None:
    leases = Leases(6)
    for t, beat in ((0.0, 1), (2.0, 2), (4.0, 3)):
        assert leases.observe([("a", beat)], now=t) == ["a"]
    assert leases.changed_since_first_sight() == ["a"]
    assert leases.observe([("a", 3)], now=9.9) == ["a"]
    assert leases.observe([("a", 3)], now=10.0) == []
    assert leases.observe([("a", 4)], now=11.0) == ["a"]  # beating again: live again


def test_skewed_wall_clocks_are_irrelevant() -> None:
    """One writer's clock 10 minutes ahead, one 10 minutes behind: only their beats count."""
    real = datetime(2026, 1, 1, tzinfo=UTC)
    leases = Leases(6)
    for step in range(5):
        at = real + timedelta(seconds=2 * step)
        ahead = record("ahead", step, at + timedelta(minutes=10))
        behind = record("behind", step, at - timedelta(minutes=10))
        assert leases.observe(beats([ahead, behind]), now=2.0 * step) == ["ahead", "behind"]
    # `ahead` stops beating: its future wall-clock time does not keep it alive.
    frozen = record("ahead", 4, real + timedelta(hours=1))
    for step in range(5, 9):
        behind = record("behind", step, real - timedelta(minutes=10))
        live = leases.observe(beats([frozen, behind]), now=2.0 * step)
    assert live == ["behind"]


def test_removed_workers_are_forgotten() -> None:
    leases = Leases(6)
    leases.observe([("a", 1), ("b", 1)], now=0.0)
    assert leases.observe([("b", 2)], now=1.0) == ["b"]
    assert leases.observe([("a", 1), ("b", 2)], now=2.0) == ["a", "b"]  # back: first sight


def test_lease_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lease must be positive"):
        Leases(0)
