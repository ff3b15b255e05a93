"""The change feed's rules: how far back a range may start, how long one may be, and what one
window of change-history rows does to Harper (the mode itself: `bigquery.history`).

Why a commit-time clock: BigQuery's `APPENDS`/`CHANGES` return the rows committed in a range and
bill the data written in it, not the table; a row inserted today with a November event time is
today's change, so late rows and backfills arrive by construction, with no reconciliation scan.
Event-time windows (`none`) remain for views and external tables, which have no change history.

Pure functions over native values; the source applies them (`sync.feed_source`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harperbq.bigquery.history import FeedChoice, FeedUnavailableError, Mode, Requested, choose
from harperbq.bigquery.sql import CHANGE_TS_COLUMN, CHANGE_TYPE_COLUMN
from harperbq.sync.table.windows import Window
from harperbq.times import MICROS

Record = dict[str, Any]

HORIZON_MARGIN_US = 3600 * MICROS
"""A range must start inside the time-travel window when its query runs, not only when it was
planned: ranges starting within this margin of the window's edge go through a snapshot."""
__all__ = ["FeedChoice", "FeedUnavailableError", "Mode", "Requested", "choose"]
READ_MODES = ("snapshot", "following", "event-time")
"""What `sync status` shows per table: copying a snapshot, following the change feed, or
reading event-time windows."""


def horizon_us(now_us: int, time_travel_hours: int) -> int:
    """The oldest range start BigQuery accepts for a range read now, minus a margin: a window
    starting earlier is read as a snapshot instead."""
    return now_us - time_travel_hours * 3600 * MICROS + HORIZON_MARGIN_US


LONGEST_WINDOW_US = 3600 * MICROS
"""A window covers at most an hour of commits (or one grid step, if longer; `pollInterval` is
at most a day, the longest range `CHANGES` accepts): the unit a crash re-reads."""
GROWTH = 8
"""Window sizes are the grid step times a power of 8, each starting on a multiple of itself."""


def feed_window(lo: int, cap: int, grid_us: int) -> Window | None:
    """The next commit-time window from `lo`, or None when no whole grid step fits below
    `cap` (caught up).

    Windows lie on a grid every worker computes alike (the step is the table's poll interval):
    the largest block `grid * 8^k` (at most an hour) that starts at `lo`, is aligned to its own
    size and ends by `cap` rounded down to the grid. Two workers at the same checkpoint thus ask
    for the same window, hence the same query, which BigQuery runs and bills once
    (`bigquery.read.run_shared_query`). A start off the grid (where a snapshot ended) first
    closes up to the next grid line."""
    if grid_us < 1:
        raise ValueError(f"grid step must be positive, got {grid_us}")
    end = cap // grid_us * grid_us
    if lo >= end:
        return None
    if lo % grid_us:
        return Window(lo, min(-(-lo // grid_us) * grid_us, end))
    size = grid_us
    longest = max(grid_us, LONGEST_WINDOW_US)
    while size * GROWTH <= longest and lo % (size * GROWTH) == 0 and lo + size * GROWTH <= end:
        size *= GROWTH
    return Window(lo, lo + size)


def is_delete(record: Mapping[str, Any]) -> bool:
    return record.get(CHANGE_TYPE_COLUMN) == "DELETE"


def change_rank(record: Mapping[str, Any]) -> int:
    """Tie-break of two changes of one key at the same commit time: BigQuery reports an UPDATE
    as the DELETE of the old image and the UPDATE of the new one, in one transaction, so the
    non-DELETE wins."""
    return 0 if is_delete(record) else 1


def split_changes(
    records: Sequence[Record], partitions: Sequence[int]
) -> tuple[list[Record], list[int], list[Record], list[int]]:
    """(rows to upsert, their partitions, rows whose key is to be deleted, theirs), without
    the change-history columns."""
    upserts: list[Record] = []
    upsert_parts: list[int] = []
    deletes: list[Record] = []
    delete_parts: list[int] = []
    for record, partition in zip(records, partitions, strict=True):
        if is_delete(record):
            deletes.append(record)
            delete_parts.append(partition)
        else:
            upserts.append(record)
            upsert_parts.append(partition)
        record.pop(CHANGE_TS_COLUMN, None)
        record.pop(CHANGE_TYPE_COLUMN, None)
    return upserts, upsert_parts, deletes, delete_parts
