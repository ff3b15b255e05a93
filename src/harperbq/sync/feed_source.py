"""The engine's source for one table: the change feed where BigQuery keeps one, event-time
windows where it does not (`sync.feed` has the rules).

- `appends`: `APPENDS(TABLE t, lo, hi)` per commit-time window, each key's newest version by
  its cursor (as the event-time path does);
- `changes`: `CHANGES(...)`, each key's last change in the window wins: an upsert of its new
  image or the delete of its record;
- a window flagged `snapshot` (no checkpoint yet, or one older than the time-travel window) is
  the whole table as of the window's end, through the Storage Read API with `snapshot_time`
  (a time-travel query when the API is refused); the feed then goes on from that instant;
- `none`: the event-time reads of `BigQuerySource`, unchanged.

The mode is found out on first use (a `get_table` and two free dry runs) and kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from google.api_core import exceptions as api_exceptions

from harperbq.bigquery import sql
from harperbq.bigquery.retry import call_with_retry
from harperbq.sync.engine import Page
from harperbq.sync.feed import (
    FeedChoice,
    Mode,
    change_rank,
    choose,
    horizon_us,
    split_changes,
)
from harperbq.sync.source import BigQuerySource
from harperbq.sync.target import cursor_micros
from harperbq.sync.versions import NewestVersions
from harperbq.sync.windows import MAX_US, MICROS, Window, from_micros, to_micros

log = logging.getLogger("harperbq.sync.feed")

DEFAULT_TIME_TRAVEL_HOURS = 7 * 24
_CHANGE_COLUMNS = (
    sql.Column(sql.CHANGE_TS_COLUMN, "TIMESTAMP"),
    sql.Column(sql.CHANGE_TYPE_COLUMN, "STRING"),
)


def _change_micros(value: Any) -> int | None:
    return cursor_micros("TIMESTAMP", value)


class ChangeFeedSource:
    """Reads one table for the engine by the clock its mode says (see the module doc)."""

    def __init__(self, base: BigQuerySource, clock: Callable[[], float] = time.time) -> None:
        self.base = base
        self.clock = clock
        self._choice: FeedChoice | None = None
        self._travel_hours: int | None = None

    # -- what status, metrics and the assembly read ------------------------------------------

    @property
    def ref(self) -> sql.TableRef:
        return self.base.ref

    @property
    def cursor(self) -> sql.Column:
        return self.base.cursor

    @property
    def partition_key(self) -> list[sql.Column]:
        return self.base.partition_key

    @property
    def bytes_billed(self) -> int:
        return self.base.bytes_billed

    def spent(self) -> dict[str, float | int]:
        return self.base.spent()

    # -- the mode ----------------------------------------------------------------------------

    def choice(self) -> FeedChoice:
        """The mode and why (found out once; `forget` after the table changed)."""
        if self._choice is None:
            self._choice = self._probe()
            log.info(
                "table %s: read as %s (%s)",
                self.base.table.id,
                self._choice.mode,
                self._choice.reason,
                extra={"table": self.base.table.id, "change_feed": self._choice.mode},
            )
        return self._choice

    def feed_mode(self) -> Mode:
        return self.choice().mode

    def forget(self) -> None:
        self._choice = None
        self._travel_hours = None

    def horizon_us(self) -> int:
        """Windows starting before this are read as a snapshot (`feed.horizon_us`)."""
        if self._travel_hours is None:
            self._travel_hours = self._time_travel_hours()
        return horizon_us(int(self.clock() * MICROS), self._travel_hours)

    def _probe(self) -> FeedChoice:
        table = self.base.table
        requested = table.change_feed
        if requested == "none":
            return choose("none", table=str(self.ref), appends_ok=False, changes_ok=False,
                          keyed=False, mirror_deletes=False)  # fmt: skip
        found = call_with_retry(
            lambda: self.base.client.get_table(str(self.ref), retry=None),  # type: ignore[arg-type]
            self.base.policy,
            operation="get_table",
        )
        regular = (found.table_type or "TABLE") == "TABLE"
        appends_ok = regular and self._accepts("APPENDS")
        changes_ok = appends_ok and self._accepts("CHANGES")
        return choose(
            requested,
            table=str(self.ref),
            appends_ok=appends_ok,
            changes_ok=changes_ok,
            keyed=bool(table.primary_key),
            mirror_deletes=table.deletes == "mirror",
        )

    def _accepts(self, function: str) -> bool:
        """Whether BigQuery accepts `function` on the table: a dry run (free) of a one-minute
        range that ended a minute ago."""
        now = int(self.clock() * MICROS)
        query = self._change_query(function, Window(now - 120 * MICROS, now - 60 * MICROS), None)
        try:
            self.base.client.query(
                query.sql, job_config=query.job_config(dry_run=True, use_query_cache=False)
            )
        except (api_exceptions.BadRequest, api_exceptions.InvalidArgument) as exc:
            log.info("table %s: %s refused: %s", self.base.table.id, function, exc)
            return False
        return True

    def _time_travel_hours(self) -> int:
        project, dataset = self.ref.project, self.ref.dataset
        found = call_with_retry(
            lambda: self.base.client.get_dataset(f"{project}.{dataset}", retry=None),  # type: ignore[arg-type]
            self.base.policy,
            operation="get_dataset",
        )
        hours = getattr(found, "max_time_travel_hours", None)
        return int(hours) if hours else DEFAULT_TIME_TRAVEL_HOURS

    # -- the engine's Source -----------------------------------------------------------------

    def first_cursor(self, parts: Sequence[int] | None, after: int | None = None) -> int | None:
        return self.base.first_cursor(parts, after)

    def read(self, window: Window, parts: Sequence[int] | None, page_rows: int) -> Iterator[Page]:
        mode = self.feed_mode()
        if mode == "none":
            yield from self.base.read(window, parts, page_rows)
        elif window.snapshot:
            yield from self._snapshot(window.hi, parts, page_rows)
        else:
            yield from self._changes(mode, window, parts, page_rows)

    def _change_query(self, function: str, window: Window, parts: Sequence[int] | None) -> Any:
        return sql.change_query(
            self.ref,
            self.base.columns,
            function,
            window.lo,
            window.hi,
            partition_key=self.partition_key,
            partitions=self.base.table.partitions,
            parts=parts,
        )

    def _changes(
        self, mode: Mode, window: Window, parts: Sequence[int] | None, page_rows: int
    ) -> Iterator[Page]:
        function = "CHANGES" if mode == "changes" else "APPENDS"
        query = self._change_query(function, window, parts)
        try:
            result = self.base.run(query, f"read_{function.lower()}", page_size=max(page_rows, 100))
        except api_exceptions.BadRequest as exc:
            if "time travel" not in str(exc).lower():
                raise
            # The range starts before the time-travel window (shortened since we looked, or
            # a clock far off): the snapshot as of `hi` holds every row the range would have.
            log.warning(
                "table %s: BigQuery refused the range from %s (%s); reading a snapshot",
                self.base.table.id,
                window.lo,
                exc,
            )
            self._travel_hours = None
            yield from self._snapshot(window.hi, parts, page_rows)
            return
        columns = [*self.base.columns, *_CHANGE_COLUMNS]
        if mode == "changes":
            # The last change of each key wins: by commit time, then DELETE before UPDATE.
            versions = (
                NewestVersions(
                    self.base.table.primary_key,
                    sql.CHANGE_TS_COLUMN,
                    _change_micros,
                    change_rank,
                )
                if self.base.table.primary_key
                else None
            )
        else:
            versions = self.base.newest_versions()
        for batch in result.batches():
            page = self.base.page(batch, columns)
            if versions is not None:
                page.records, page.partitions, page.superseded = versions.keep(
                    page.records, page.partitions
                )
            page.records, page.partitions, page.deleted, page.deleted_partitions = split_changes(
                page.records, page.partitions
            )
            yield page

    def _snapshot(self, at_us: int, parts: Sequence[int] | None, page_rows: int) -> Iterator[Page]:
        """The table as of `at_us`: every row a feed from `at_us` on must not read again."""
        base = self.base
        at = from_micros(at_us)
        names = [c.name for c in base.columns]
        start = base.table.start_timestamp
        restriction = (
            sql.window_restriction(base.cursor, to_micros(start), MAX_US)
            if start is not None
            else ""
        )
        storage = base.owned_rows(base.storage().read(base.ref, names, restriction, at), parts)

        def by_query() -> Iterator[Any]:
            query = sql.snapshot_query(base.ref, base.columns, at_us, restriction)
            rows = base.run(query, "read_snapshot", page_size=max(page_rows, 100))
            yield from base.owned_rows(rows.batches(), parts)

        versions = base.newest_versions()
        for batch in base.storage_or(storage, by_query):
            page = base.page(batch)
            if versions is not None:
                page.records, page.partitions, page.superseded = versions.keep(
                    page.records, page.partitions
                )
            yield page
