"""The time-window plan: where the next window starts and ends, how long it should be, which phase.

Windows are half-open `[lo, hi)` in integer microseconds since the Unix epoch (UTC). A half-open
window never splits a group of equal timestamps, so no tie-breaker is needed and rows are never
skipped at a boundary. `hi` never passes `now - settle`, so rows still arriving are not overtaken.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from harperbq.phases import Phase
from harperbq.times import MAX_US, MICROS, MIN_US, from_micros, to_micros

MIN_WINDOW_US = 1  # one tick: equal timestamps cannot be split further, and need not be
MAX_WINDOW_US = 7 * 24 * 3600 * MICROS
GROW_MAX = 8.0
SHRINK_MAX = 1 / 64


@dataclass(frozen=True)
class PhasePolicy:
    """The original plugin's phases: batch size and poll interval chosen by lag."""

    initial_batch_size: int = 10_000
    catchup_batch_size: int = 1_000
    steady_batch_size: int = 500
    catchup_threshold_s: float = 3600.0
    steady_threshold_s: float = 300.0
    initial_poll_s: float = 1.0
    catchup_poll_s: float = 5.0
    steady_poll_s: float = 30.0

    def phase(self, lag_s: float) -> Phase:
        if lag_s > self.catchup_threshold_s:
            return Phase.INITIAL
        if lag_s > self.steady_threshold_s:
            return Phase.CATCHUP
        return Phase.STEADY

    def batch_size(self, phase: Phase) -> int:
        return {
            Phase.INITIAL: self.initial_batch_size,
            Phase.CATCHUP: self.catchup_batch_size,
            Phase.STEADY: self.steady_batch_size,
        }[phase]

    def poll_s(self, phase: Phase) -> float:
        return {
            Phase.INITIAL: self.initial_poll_s,
            Phase.CATCHUP: self.catchup_poll_s,
            Phase.STEADY: self.steady_poll_s,
        }[phase]


@dataclass(frozen=True)
class Window:
    lo: int
    hi: int
    snapshot: bool = False
    """Read as the whole table as of `hi` (change feed: no usable range start)."""

    @property
    def length(self) -> int:
        return self.hi - self.lo


def limit(now_us: int, settle_us: int) -> int:
    """The newest instant a window may reach: rows younger than `settle` may still be arriving."""
    return now_us - settle_us


def next_window(lo: int, now_us: int, settle_us: int, length_us: int) -> Window | None:
    """The next window from lo, or None when lo has reached `now - settle` (caught up)."""
    end = limit(now_us, settle_us)
    if lo >= end:
        return None
    return Window(lo, min(lo + max(length_us, MIN_WINDOW_US), end))


PARTITION_UNITS = ("HOUR", "DAY", "MONTH", "YEAR")


def partition_end(micros: int, unit: str) -> int:
    """The end (exclusive, µs) of the BigQuery time partition holding `micros` (UTC)."""
    if unit == "HOUR":
        step = 3600 * MICROS
    elif unit == "DAY":
        step = 86_400 * MICROS
    else:
        moment = from_micros(min(max(micros, MIN_US), MAX_US))
        if unit == "YEAR":
            if moment.year >= 9999:
                return MAX_US + 1
            return to_micros(datetime(moment.year + 1, 1, 1, tzinfo=UTC))
        if unit != "MONTH":
            raise ValueError(f"not a time partitioning unit: {unit!r}")
        if moment.month == 12:
            if moment.year >= 9999:
                return MAX_US + 1
            return to_micros(datetime(moment.year + 1, 1, 1, tzinfo=UTC))
        return to_micros(datetime(moment.year, moment.month + 1, 1, tzinfo=UTC))
    return (micros // step + 1) * step


def align_to_partitions(window: Window, cap: int, unit: str | None) -> Window:
    """A window stretched to the end of the time partition its last instant is in (never past
    `cap`): on a table partitioned by the cursor and not clustered on it, any window bills the
    whole partitions it touches, so each is read in one window per pass, not one per window."""
    if unit is None or window.hi >= cap:
        return window
    return Window(window.lo, min(cap, max(window.hi, partition_end(window.hi - 1, unit))))


def adapt_length(length_us: int, rows: int, target: int, window: Window) -> int:
    """Next window length aiming at `target` rows: grow on sparse windows, shrink on dense ones.

    A window cut short by `now - settle` speaks only for its own length. Growth is at most 8x a
    step and shrinking at most 64x, so one burst (say 10 000 rows on one timestamp) cannot send the
    plan into a long crawl of near-empty micro-windows. Bounded to [1 tick, 7 days].
    """
    basis = min(window.length, length_us)
    factor = GROW_MAX if rows <= 0 else min(GROW_MAX, max(SHRINK_MAX, max(target, 1) / rows))
    return max(MIN_WINDOW_US, min(MAX_WINDOW_US, int(basis * factor)))
