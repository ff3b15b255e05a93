"""Re-sync one closed window of some partitions: read it again, upsert it, optionally mirror
deletes. Shared by late-row reconciliation and `validate --repair`.

Why it is safe at any time: ids are deterministic (`sync.keys`), so upserting a window again
changes nothing that was right and restores what was missing or late. Mirror deletes remove
only records of exactly these (partition, window) cells whose ids the source no longer yields,
and only after the source read, so a row present in the source is never deleted by its read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harperbq.sync.table.engine import Source
from harperbq.sync.table.keys import WindowIds
from harperbq.sync.table.target import TargetTable
from harperbq.sync.table.versions import drop_older_than_stored
from harperbq.sync.table.windows import Window
from harperbq.times import iso

log = logging.getLogger("harperbq.sync.resync")

Upsert = Callable[[list[dict[str, Any]]], None]
_PAGE_ROWS = 10_000


@dataclass
class ResyncResult:
    window: Window
    partitions: list[int]
    rows_read: int = 0
    rows_skipped: int = 0
    rows_kept_newer: int = 0  # not written: Harper holds a newer version of the key
    deleted: int = 0
    ids: dict[int, set[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "lo": iso(self.window.lo),
            "hi": iso(self.window.hi),
            "partitions": self.partitions,
            "rows_read": self.rows_read,
            "rows_skipped": self.rows_skipped,
            "rows_kept_newer": self.rows_kept_newer,
            "deleted": self.deleted,
        }


def resync(
    source: Source,
    upsert: Upsert,
    window: Window,
    partitions: Sequence[int],
    *,
    all_partitions: int,
    primary_key: Sequence[str],
    mirror: TargetTable | None = None,
    target: TargetTable | None = None,
) -> ResyncResult:
    """Read `window` of `partitions` from the source, upsert every row (confirmed), and with
    `mirror` delete that window's Harper records of these partitions the source lacks.

    With `target` and a primary key, a row whose Harper record already holds a NEWER cursor
    value (a later version synced from a later window) is not written (`sync.versions`)."""
    parts = sorted(set(partitions))
    result = ResyncResult(window, parts, ids={p: set() for p in parts})
    read_parts = None if len(parts) == all_partitions else parts
    ids = WindowIds(primary_key)  # one per window read: keeps `~k` copy ids exact
    for page in source.read(window, read_parts, _PAGE_ROWS):
        for record, partition in zip(page.records, page.partitions, strict=True):
            record["id"] = ids.id_for(record)
            result.ids.setdefault(partition, set()).add(record["id"])
        records = page.records
        if target is not None and primary_key and records:
            stored = target.stored_cursors([str(r["id"]) for r in records])
            records, older = drop_older_than_stored(
                records, stored, target.cursor.name, target.micros
            )
            result.rows_kept_newer += older
        if records:
            upsert(records)
        result.rows_read += len(page.records)
        result.rows_skipped += len(page.problems)
    if mirror is not None:
        wanted = set(parts)
        extra = [
            r.id
            for r in mirror.records(window.lo, window.hi)
            if r.partition in wanted and r.id not in result.ids.get(r.partition, set())
        ]
        result.deleted = mirror.delete(extra)
        if extra:
            log.info(
                "mirror delete: %d records of [%s, %s) gone from the source",
                len(extra),
                iso(window.lo),
                iso(window.hi),
            )
    return result
