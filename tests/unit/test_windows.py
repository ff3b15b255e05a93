"""Window planning: half-open, bounded by now - settle, contiguous, adaptive within bounds."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from harperbq.phases import Phase
from harperbq.sync.table.windows import (
    MAX_WINDOW_US,
    MIN_WINDOW_US,
    PhasePolicy,
    Window,
    adapt_length,
    next_window,
)
from harperbq.times import MAX_US, MIN_US, from_micros, iso, parse_iso, to_micros

instants = st.integers(min_value=0, max_value=4_102_444_800_000_000)  # 1970..2100
lengths = st.integers(min_value=1, max_value=MAX_WINDOW_US)


@given(lo=instants, now=instants, settle=st.integers(0, 3_600_000_000), length=lengths)
def test_window_never_passes_settle_limit(lo: int, now: int, settle: int, length: int) -> None:
    window = next_window(lo, now, settle, length)
    if lo >= now - settle:
        assert window is None
    else:
        assert window is not None
        assert window.lo == lo < window.hi <= now - settle
        assert window.length <= length


@given(
    start=instants, span=st.integers(1, 10**12), lengths=st.lists(lengths, min_size=1, max_size=50)
)
def test_windows_tile_the_range_without_gaps(start: int, span: int, lengths: list[int]) -> None:
    """Consecutive windows cover [start, limit) exactly: every instant is in exactly one window."""
    now = start + span
    lo, covered = start, 0
    for length in lengths * 100:
        window = next_window(lo, now, 0, length)
        if window is None:
            break
        assert window.lo == lo
        covered += window.length
        lo = window.hi
    assert lo == start + covered
    assert lo <= now


@given(
    length=lengths,
    rows=st.integers(0, 10**7),
    target=st.integers(1, 100_000),
    cut=st.integers(1, MAX_WINDOW_US),
)
def test_adapted_length_is_bounded(length: int, rows: int, target: int, cut: int) -> None:
    window = Window(0, min(length, cut))
    new = adapt_length(length, rows, target, window)
    assert MIN_WINDOW_US <= new <= MAX_WINDOW_US
    if rows == 0:
        assert new >= min(window.length, MAX_WINDOW_US)
    if rows > 2 * target:
        assert new < window.length or window.length == MIN_WINDOW_US


def test_dense_window_shrinks_toward_target() -> None:
    hour = 3_600_000_000
    assert adapt_length(hour, 20_000, 500, Window(0, hour)) == hour // 40


def test_phases_follow_the_original_thresholds() -> None:
    policy = PhasePolicy()
    assert policy.phase(7200) is Phase.INITIAL
    assert policy.phase(3600) is Phase.CATCHUP
    assert policy.phase(301) is Phase.CATCHUP
    assert policy.phase(300) is Phase.STEADY
    assert [policy.batch_size(p) for p in Phase] == [10_000, 1_000, 500]


@given(instants)
def test_micros_round_trip_and_iso_order(micros: int) -> None:
    assert to_micros(from_micros(micros)) == micros
    assert (iso(micros) < iso(micros + 1)) and len(iso(micros)) == 27


def test_naive_datetimes_are_utc() -> None:
    naive = datetime(2024, 1, 1, 12, 0, 0, 123456)
    assert to_micros(naive) == to_micros(naive.replace(tzinfo=UTC))
    assert iso(to_micros(naive)) == "2024-01-01T12:00:00.123456Z"


every_instant = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999)
)


@given(moment=every_instant)
def test_window_and_state_times_round_trip_over_the_whole_range(moment: datetime) -> None:
    """Years 1..9999, including below 1000 (`strftime("%Y")` does not pad them): the text is
    fixed width, parses back exactly, and sorts as time does."""
    from harperbq import times

    aware = moment.replace(tzinfo=UTC)
    micros = to_micros(aware)
    text = iso(micros)
    assert len(text) == len("2024-01-01T00:00:00.000000Z")
    assert parse_iso(text) == micros
    assert times.iso_datetime(aware) == text and times.parse_iso_datetime(text) == aware


@given(a=every_instant, b=every_instant)
def test_time_text_order_is_time_order(a: datetime, b: datetime) -> None:
    ta, tb = iso(to_micros(a)), iso(to_micros(b))
    assert (ta < tb) == (a < b)


def test_bounds_outside_the_range_are_clamped() -> None:
    assert iso(MIN_US - 3_600_000_000) == "0001-01-01T00:00:00.000000Z"
    assert iso(MAX_US) == "9999-12-31T23:59:59.999999Z"
