"""Gap detection: the missing ranges are exactly the complement of what was written."""

from hypothesis import given, settings
from hypothesis import strategies as st

from harperbq.synth.window import HourCoverage, missing_ranges, retention_cutoff

H = 3600.0


def test_nothing_written_everything_missing() -> None:
    assert missing_ranges([], 0.0, 7200.0) == [(0.0, 7200.0)]


def test_partial_hours_at_both_ends() -> None:
    cov = [HourCoverage(0.0, 10, 600.0, 3599.0), HourCoverage(3600.0, 5, 3600.0, 4000.0)]
    assert missing_ranges(cov, 0.0, 3 * H) == [
        (0.0, 600.0),
        (3599.000001, 3600.0),
        (4000.000001, 3 * H),
    ]
    assert missing_ranges(cov, 600.0, 3599.0) == []


def covered(rows: set[float]) -> list[HourCoverage]:
    hours: dict[float, list[float]] = {}
    for t in rows:
        hours.setdefault(t // H * H, []).append(t)
    return [HourCoverage(h, len(ts), min(ts), max(ts)) for h, ts in hours.items()]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=35),
            st.integers(min_value=1, max_value=12),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(min_value=1, max_value=97),
)
def test_runs_with_and_without_backfill_then_a_full_fill_restore_every_row_once(
    runs: list[tuple[int, int, bool]], step: int
) -> None:
    """Simulate `start` runs the way window.py writes: each run first fills gaps (the whole
    window with backfill, only the current hour without), then writes live until it stops."""
    instants = [float(t) for t in range(0, int(8 * H), step)]
    written: list[float] = []
    clock = 0.0
    for begin, length, backfill in runs:
        now = max(clock, begin * 600.0)
        lo = 0.0 if backfill else now // H * H
        for a, b in missing_ranges(covered(set(written)), lo, now):
            written += [t for t in instants if a <= t < b]
        stop = min(now + length * 600.0, 8 * H)
        written += [t for t in instants if now <= t < stop]
        clock = stop
    assert len(written) == len(set(written))  # nothing written twice
    for a, b in missing_ranges(covered(set(written)), 0.0, 8 * H):
        written += [t for t in instants if a <= t < b]
    assert sorted(written) == instants  # a final fill restores exactly the full set


def test_retention_cutoff_is_a_day_boundary() -> None:
    now = 1_767_225_600.0 + 5 * 3600 + 17
    assert retention_cutoff(now, 30) == 1_767_225_600.0 - 30 * 86_400
