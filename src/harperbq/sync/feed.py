"""The change feed's rules: which clock a table is read by, how far back a range may start, and
what one window of change-history rows does to Harper.

Why a commit-time clock: BigQuery's `APPENDS`/`CHANGES` return the rows committed in a range and
bill the data written in it, not the table; a row inserted today with a November event time is
today's change, so late rows and backfills arrive by construction, with no reconciliation scan.
Event-time windows (`none`) remain for views and external tables, which have no change history.

Pure functions over native values; the source applies them (`sync.feed_source`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harperbq.bigquery.sql import CHANGE_TS_COLUMN, CHANGE_TYPE_COLUMN
from harperbq.sync.windows import MICROS

Mode = Literal["appends", "changes", "none"]
Requested = Literal["auto", "appends", "changes", "none"]
Record = dict[str, Any]

MAX_CHANGES_RANGE_US = 86_400 * MICROS
"""`CHANGES` takes a range of at most one day per call."""
HORIZON_MARGIN_US = 3600 * MICROS
"""A range must start inside the time-travel window when its query runs, not only when it was
planned: ranges starting within this margin of the window's edge go through a snapshot."""
READ_MODES = ("snapshot", "following", "event-time")
"""What `sync status` shows per table: copying a snapshot, following the change feed, or
reading event-time windows."""


class FeedUnavailableError(Exception):
    """The configured `changeFeed` cannot read this table: the configuration must change."""

    permanent = True


@dataclass(frozen=True)
class FeedChoice:
    mode: Mode
    reason: str


def choose(
    requested: Requested,
    *,
    table: str,
    appends_ok: bool,
    changes_ok: bool,
    keyed: bool,
    mirror_deletes: bool,
) -> FeedChoice:
    """The mode for a table, from what was configured and what BigQuery accepts for it
    (`appends_ok`: a regular table; `changes_ok`: with `enable_change_history`). Raises
    `FeedUnavailableError` naming the fix when an explicit choice cannot work."""
    if requested == "none":
        return FeedChoice("none", "changeFeed: none (event-time windows, by choice)")
    if requested == "appends" and not appends_ok:
        raise FeedUnavailableError(
            f"changeFeed: appends cannot read {table}: BigQuery's APPENDS works on regular "
            "tables only (not views, external or wildcard tables); set changeFeed: none"
        )
    if requested == "changes" and not changes_ok:
        raise FeedUnavailableError(
            f"changeFeed: changes cannot read {table}: CHANGES needs the table option "
            f"enable_change_history (ALTER TABLE `{table}` SET OPTIONS "
            "(enable_change_history = TRUE)); or set changeFeed: appends"
        )
    if requested in ("appends", "changes"):
        return FeedChoice(requested, f"changeFeed: {requested} (configured)")
    if not appends_ok:
        return FeedChoice("none", "no change history (a view or external table): event-time")
    if changes_ok and keyed:
        return FeedChoice("changes", "enable_change_history is set and the table has a key")
    if mirror_deletes:
        return FeedChoice(
            "none",
            "deletes: mirror and no enable_change_history: APPENDS cannot see deletes, so "
            "event-time windows with reconciliation (set the option to use changes)",
        )
    return FeedChoice("appends", "a regular table: inserts by commit time")


def horizon_us(now_us: int, time_travel_hours: int) -> int:
    """The oldest range start BigQuery accepts for a range read now, minus a margin: a window
    starting earlier is read as a snapshot instead."""
    return now_us - time_travel_hours * 3600 * MICROS + HORIZON_MARGIN_US


def longest_range_us(mode: Mode) -> int | None:
    """The longest window one change-history call may cover (None: no limit)."""
    return MAX_CHANGES_RANGE_US if mode == "changes" else None


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
