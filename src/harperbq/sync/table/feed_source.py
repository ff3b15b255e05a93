"""The engine's source for one table: the change feed where BigQuery keeps one, event-time
windows where it does not (`feed.py` has the rules).

- `appends`: `APPENDS(TABLE t, lo, hi)` per commit-time window, each key's newest version by
  its cursor (as the event-time path does);
- `changes`: `CHANGES(...)`, each key's last change in the window wins: an upsert of its new
  image or the delete of its record;
- a window flagged `snapshot` (no checkpoint yet, or one older than the time-travel window) is
  the whole table as of the window's end, through the Storage Read API with `snapshot_time`
  (a time-travel query with `readApi: query`, or when the API is refused or not configured);
  the feed then goes on from that instant;
- `none`: the event-time reads of `BigQuerySource`, unchanged.

The mode is found out on first use (a `get_table` and two free dry runs) and kept.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from google.api_core import exceptions as api_exceptions

from harperbq.bigquery import history, read, server_clock, sql
from harperbq.bigquery.client import ClientSetupError
from harperbq.sync.table.engine import Page
from harperbq.sync.table.feed import (
    FeedChoice,
    Mode,
    change_rank,
    horizon_us,
    split_changes,
)
from harperbq.sync.table.source import BigQuerySource
from harperbq.sync.table.target import cursor_micros
from harperbq.sync.table.versions import NewestVersions
from harperbq.sync.table.windows import Window
from harperbq.times import MAX_US, MICROS, from_micros, to_micros

log = logging.getLogger("harperbq.sync.feed")

_CHANGE_COLUMNS = (
    sql.Column(sql.CHANGE_TS_COLUMN, "TIMESTAMP"),
    sql.Column(sql.CHANGE_TYPE_COLUMN, "STRING"),
)


def _change_micros(value: Any) -> int | None:
    return cursor_micros("TIMESTAMP", value)


class ChangeFeedSource:
    """Reads one table for the engine by the clock its mode says (see the module doc)."""

    def __init__(self, base: BigQuerySource, clock: Callable[[], float] | None = None) -> None:
        self.base = base
        # BigQuery's clock, not ours: ranges are judged against it (`bigquery.server_clock`).
        self.clock = clock or server_clock.for_client(base.client).now
        self._choice: FeedChoice | None = None
        self._travel_hours: int | None = None
        self._created_us: int | None = None

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

    @property
    def queries(self) -> int:
        return self.base.queries

    @property
    def storage_bytes_scanned(self) -> int:
        return self.base.storage_bytes_scanned

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
        choice, created = history.resolve(
            self.base.client, self.ref, self.base.table, self.base.policy
        )
        # BigQuery reports the creation time in ms, truncated: the first whole ms after it is
        # surely after the creation.
        self._created_us = to_micros(created) + 1000 if created is not None else None
        return choice

    def created_us(self) -> int | None:
        """When the table was created: a snapshot cannot be older (None: unknown)."""
        self.choice()
        return self._created_us

    def _time_travel_hours(self) -> int:
        return history.time_travel_hours(self.base.client, self.ref, self.base.policy)

    # -- the engine's Source -----------------------------------------------------------------

    def first_cursor(self, parts: Sequence[int] | None, after: int | None = None) -> int | None:
        return self.base.first_cursor(parts, after)

    def partition_unit(self) -> str | None:
        return self.base.partition_unit()

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
        # One query per window for every worker (all partitions; each keeps its own): the
        # windows are on a grid every worker plans alike (`TableEngine._next_window`).
        query = self._change_query(function, window, None)
        try:
            result = self.base.run_shared(
                query, shared_job_id(query), f"read_{function.lower()}", max(page_rows, 100)
            )
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
        batches = self.base.owned_rows(result.batches(), parts)
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
        for batch in batches:
            page = self.base.page(batch, columns)
            if versions is not None:
                page.records, page.partitions, page.superseded = versions.keep(
                    page.records, page.partitions
                )
            page.records, page.partitions, page.deleted, page.deleted_partitions = split_changes(
                page.records, page.partitions
            )
            yield page
            del page  # not held while the next page is converted

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

        def by_query() -> Iterator[Any]:
            query = sql.snapshot_query(base.ref, base.columns, at_us, restriction)
            rows = base.run(query, "read_snapshot", page_size=max(page_rows, 100))
            yield from base.owned_rows(rows.batches(), parts)

        if base.cfg.read_api == "query":
            batches = by_query()
        else:
            try:
                reader = base.storage()
            except ClientSetupError as exc:  # no Storage Read API here: the query it is
                log.warning("table %s: snapshot by query: %s", base.table.id, exc)
                batches = by_query()
            else:
                storage = base.owned_rows(reader.read(base.ref, names, restriction, at), parts)
                batches = base.storage_or(storage, by_query)
        versions = base.newest_versions()
        for batch in batches:
            page = base.page(batch)
            if versions is not None:
                page.records, page.partitions, page.superseded = versions.keep(
                    page.records, page.partitions
                )
            yield page
            del page  # not held while the next page is converted


def shared_job_id(query: sql.Query) -> str:
    """The same id for the same query text and parameters: every worker asking for one window
    asks for one job (`read.run_shared_query`)."""
    params = read.query_params(query)
    text = query.sql + "|" + "|".join(f"{k}={params[k]}" for k in sorted(params))
    return "harperbq_" + hashlib.sha256(text.encode()).hexdigest()[:40]
