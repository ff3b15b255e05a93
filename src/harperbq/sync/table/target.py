"""The Harper side of one synced table, seen by cursor range: which records, in which partition.

Why: validation, `deletes: mirror` and `retention` all need Harper's records of a cursor range
per virtual partition, and Harper does not store the partition. A record carries the partition
key columns (they are always among the synced columns), so its partition is recomputed with
the very function the reads use (`sync.partitions`, bit-exact with BigQuery's SQL). The range
is fetched with an indexed `between` scan of the cursor attribute and re-filtered here in exact
integer µs, so the cursor's stored text form (ISO with `Z`, civil DATETIME, DATE, INT64) never
decides membership by string comparison alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from harperbq.bigquery.sql import MICROS_PER_DAY, Column
from harperbq.bigquery.types import format_datetime, format_timestamp
from harperbq.harper.client import HarperClient
from harperbq.harper.models import Condition
from harperbq.sync.cluster.partitions import partition_of
from harperbq.times import from_micros, parse_iso

_EPOCH_DAY = date(1970, 1, 1)
SCAN_ROWS = 10_000
"""Harper is scanned in cursor ranges expected to hold at most this many records each: one
answer is parsed whole, so this bounds the memory of every scan (at 50 000 records of the
soak's positions, one scan added about 100 MiB to the sync's resident set)."""


def cursor_micros(kind: str, value: Any) -> int | None:
    """µs (raw value for INT64) of a cursor value in its Harper form (as converted and stored);
    None if it is not one."""
    try:
        if kind == "INT64":
            return int(value) if isinstance(value, int | str) else None
        if not isinstance(value, str):
            return None
        if kind == "DATE":
            return (date.fromisoformat(value) - _EPOCH_DAY).days * MICROS_PER_DAY
        return parse_iso(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class TargetRecord:
    id: str
    cursor_us: int
    partition: int
    values: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """The attributes asked for with `records(..., attributes=...)`."""


@dataclass
class TargetTable:
    """Harper records of one synced table, by cursor range and partition."""

    client: HarperClient
    database: str
    table: str
    cursor: Column
    partition_key: Sequence[Column]
    partitions: int

    # -- cursor values: µs <-> the form Harper stores --------------------------------------

    def stored(self, micros: int) -> Any:
        """The cursor value as Harper stores it, for a bound µs (DATE: the day holding it)."""
        kind = self.cursor.type
        if kind == "TIMESTAMP":
            return format_timestamp(micros)
        if kind == "DATETIME":
            return format_datetime(from_micros(micros).replace(tzinfo=None))
        if kind == "DATE":
            return from_micros(micros).date().isoformat()
        return int(micros)

    def micros(self, value: Any) -> int | None:
        """µs (raw value for INT64) of a stored cursor value; None if it is not one."""
        return cursor_micros(self.cursor.type, value)

    # -- reads -------------------------------------------------------------------------------

    def records(
        self,
        lo: int,
        hi: int,
        attributes: Sequence[str] = (),
        *,
        expected_rows: int = 0,
        max_rows: int = SCAN_ROWS,
    ) -> Iterator[TargetRecord]:
        """Every record with `lo <= cursor < hi` (µs), with its partition and the named
        `attributes` (in `values`). Harper answers a search whole, so a range expected to hold
        more than `max_rows` records is scanned in that many equal sub-ranges (each an indexed
        scan): one answer held in memory at a time, whatever the range's size."""
        if hi <= lo:
            return
        scans = max(1, -(-expected_rows // max_rows))
        step = -(-(hi - lo) // scans)
        for start in range(lo, hi, step):
            yield from self._scan(start, min(start + step, hi), attributes)

    def _scan(self, lo: int, hi: int, attributes: Sequence[str]) -> Iterator[TargetRecord]:
        names = [c.name for c in self.partition_key]
        wanted = list(dict.fromkeys(["id", self.cursor.name, *names, *attributes]))
        rows = self.client.search(
            self.database,
            self.table,
            [Condition(self.cursor.name, "between", [self.stored(lo), self.stored(hi)])],
            attributes=wanted,
        )
        for row in rows:
            at = self.micros(row.get(self.cursor.name))
            if at is None or not lo <= at < hi or row.get("id") is None:
                continue
            partition = self.partition_of(row)
            values = {a: row.get(a) for a in attributes}
            yield TargetRecord(str(row["id"]), at, partition, values)

    def partition_of(self, row: dict[str, Any]) -> int:
        """The partition of a stored record, from its partition-key attributes."""
        names = [c.name for c in self.partition_key]
        types = [c.type for c in self.partition_key]
        return partition_of([row.get(n) for n in names], self.partitions, types)

    def lookup(self, ids: Sequence[str], batch: int = 1_000) -> dict[str, TargetRecord]:
        """The records with these ids wherever their cursor is (absent ids are left out)."""
        names = [c.name for c in self.partition_key]
        wanted = list(dict.fromkeys(["id", self.cursor.name, *names]))
        out: dict[str, TargetRecord] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), batch):
            chunk = unique[start : start + batch]
            for row in self.client.search_by_id(
                self.database, self.table, chunk, attributes=wanted
            ):
                at = self.micros(row.get(self.cursor.name))
                if row.get("id") is None or at is None:
                    continue
                out[str(row["id"])] = TargetRecord(str(row["id"]), at, self.partition_of(row))
        return out

    def stored_cursors(self, ids: Sequence[str], *, chunk: int = 5_000) -> dict[str, int]:
        """The cursor (µs) Harper holds for each of these ids that exists (re-read paths)."""
        out: dict[str, int] = {}
        for start in range(0, len(ids), chunk):
            rows = self.client.search_by_id(
                self.database,
                self.table,
                list(ids[start : start + chunk]),
                attributes=["id", self.cursor.name],
            )
            for row in rows:
                at = self.micros(row.get(self.cursor.name))
                if row.get("id") is not None and at is not None:
                    out[str(row["id"])] = at
        return out

    # -- writes ------------------------------------------------------------------------------

    def delete(self, ids: Sequence[str]) -> int:
        return self.client.delete(self.database, self.table, list(ids)) if ids else 0

    def expire(
        self,
        cutoff_us: int,
        *,
        batch: int = 5_000,
        max_batches: int = 20,
        stop: threading.Event | None = None,
    ) -> int:
        """Delete records whose cursor is older than cutoff, `batch` ids per request and at
        most `max_batches` requests per call (the next call goes on), so one run never holds
        a long or huge request. Returns how many were deleted."""
        if batch < 1:
            raise ValueError("batch must be >= 1")
        bound = self.stored(cutoff_us)
        # A DATE cursor's stored day of the cutoff still holds younger rows: strictly before it.
        deleted = 0
        for _ in range(max_batches):
            if stop is not None and stop.is_set():
                break
            rows = self.client.search(
                self.database,
                self.table,
                [Condition(self.cursor.name, "less_than", bound)],
                attributes=["id", self.cursor.name],
                limit=batch,
            )
            ids = [
                str(r["id"])
                for r in rows
                if r.get("id") is not None
                and (at := self.micros(r.get(self.cursor.name))) is not None
                and at < cutoff_us
            ]
            if ids:
                deleted += self.delete(ids)
            if len(rows) < batch:
                break
        return deleted
