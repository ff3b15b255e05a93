"""Late rows: find the closed windows whose source count changed, and re-sync exactly those.

Why: a row that becomes visible with a cursor value behind the checkpoint is invisible to the
forward cursor (the original lost such rows for good). Each partition's checkpoint keeps the
row count written per window for the last `lateness` (`Checkpoint.recent`). Every
`reconcileInterval` ONE aggregate query per (table, worker) counts the source rows of all those
windows of all the worker's partitions (`BigQuerySource.count_buckets`: only the cursor and key
columns are scanned); windows whose count differs are read again and upserted (idempotent: ids
are deterministic), and with `deletes: mirror` their Harper records that the source no longer
yields are deleted. Unchanged windows are never read. The recorded count then becomes the
source count seen by that aggregate (taken before the re-read, so any change after it shows up
at the next run instead of being masked).

Runs on the engine's thread between passes, so it never races the engine over the cached
checkpoints (`TableEngine.put_checkpoints`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harperbq.config import TableConfig
from harperbq.sync.engine import TableEngine
from harperbq.sync.grid import Cell, by_window, cell_sums, edges_of, recorded_cells
from harperbq.sync.resync import ResyncResult, Upsert, resync
from harperbq.sync.source import BigQuerySource
from harperbq.sync.state import Checkpoint, RecentWindow
from harperbq.sync.target import TargetTable
from harperbq.sync.windows import MICROS, iso, parse_iso

log = logging.getLogger("harperbq.sync.reconcile")


@dataclass
class ReconcileStats:
    """Totals since start, for status and metrics."""

    runs: int = 0
    queries: int = 0
    windows_checked: int = 0
    windows_resynced: int = 0
    rows_reread: int = 0
    rows_deleted: int = 0
    last_run_at: float | None = None
    last_duration_s: float | None = None


@dataclass
class ReconcileReport:
    """One run: how many windows were compared, which differed, what re-syncing them did."""

    windows_checked: int = 0
    changed: dict[Cell, tuple[int, int]] = field(default_factory=dict)
    """(written, source) counts of every cell that differed."""
    resynced: list[ResyncResult] = field(default_factory=list)
    queries: int = 0

    @property
    def rows_reread(self) -> int:
        return sum(r.rows_read for r in self.resynced)

    @property
    def rows_deleted(self) -> int:
        return sum(r.deleted for r in self.resynced)

    def to_json(self) -> dict[str, Any]:
        return {
            "windows_checked": self.windows_checked,
            "windows_changed": len(self.changed),
            "rows_reread": self.rows_reread,
            "rows_deleted": self.rows_deleted,
            "resynced": [r.to_json() for r in self.resynced[:50]],
        }


class Reconciler:
    """Late-row reconciliation (and mirror deletes) for one table on one worker."""

    def __init__(
        self,
        table: TableConfig,
        engine: TableEngine,
        source: BigQuerySource,
        upsert: Upsert,
        target: Callable[[], TargetTable],
        owned: Callable[[], Sequence[int]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.engine = engine
        self.source = source
        self.upsert = upsert
        self.target = target
        self.owned = owned
        self.clock = clock
        self.stats = ReconcileStats()

    def run(self, stop: threading.Event | None = None) -> ReconcileReport:
        """One reconciliation over the owned partitions' recorded windows."""
        started = time.monotonic()
        report = ReconcileReport()
        checkpoints = self.engine.checkpoints()
        cells = recorded_cells(checkpoints, sorted(self.owned()))
        if self.table.retention_s is not None:
            cutoff = int((self.clock() - self.table.retention_s) * MICROS)
            cells = {c: n for c, n in cells.items() if c.hi > cutoff}  # expired anyway
        report.windows_checked = len(cells)
        if cells:
            edges = edges_of(cells)
            parts = sorted({c.partition for c in cells})
            counted = self.source.count_buckets(edges, parts)
            report.queries = 1
            source = cell_sums(cells, edges, {k: v[0] for k, v in counted.items()})
            report.changed = {c: (n, source[c]) for c, n in cells.items() if source[c] != n}
            done = self._resync(report, stop)
            self._record(checkpoints, done)
        self._count(report, time.monotonic() - started)
        return report

    def _resync(
        self, report: ReconcileReport, stop: threading.Event | None
    ) -> dict[Cell, tuple[int, int]]:
        """Re-sync the changed cells, one source read per window; returns the cells done."""
        target = self.target()
        mirror = target if self.table.deletes == "mirror" else None
        done: dict[Cell, tuple[int, int]] = {}
        for window, parts in by_window(report.changed).items():
            if stop is not None and stop.is_set():
                break
            result = resync(
                self.source,
                self.upsert,
                window,
                parts,
                all_partitions=self.table.partitions,
                primary_key=self.table.primary_key,
                mirror=mirror,
                target=target,
            )
            report.resynced.append(result)
            for p in parts:
                cell = Cell(p, window.lo, window.hi)
                done[cell] = report.changed[cell]
            log.info(
                "table %s: re-synced [%s, %s) of partitions %s: %d rows read, %d deleted",
                self.table.id,
                iso(window.lo),
                iso(window.hi),
                parts,
                result.rows_read,
                result.deleted,
            )
        return done

    def _record(
        self, checkpoints: dict[int, Checkpoint], done: dict[Cell, tuple[int, int]]
    ) -> None:
        """Store the source counts of the re-synced cells as their written counts."""
        if not done:
            return
        updated: list[Checkpoint] = []
        for partition in sorted({c.partition for c in done}):
            cp = checkpoints[partition]
            recent: list[RecentWindow] = []
            for w in cp.recent:
                lo, hi = parse_iso(w["lo"]), parse_iso(w["hi"])
                counts = done.get(Cell(partition, lo, hi)) if lo < hi else None
                count = counts[1] if counts is not None else w["count"]
                recent.append(RecentWindow(lo=w["lo"], hi=w["hi"], count=count))
            updated.append(replace(cp, recent=recent))
        self.engine.put_checkpoints(updated)

    def _count(self, report: ReconcileReport, duration_s: float) -> None:
        s = self.stats
        s.runs += 1
        s.queries += report.queries
        s.windows_checked += report.windows_checked
        s.windows_resynced += sum(len(r.partitions) for r in report.resynced)
        s.rows_reread += report.rows_reread
        s.rows_deleted += report.rows_deleted
        s.last_run_at = self.clock()
        s.last_duration_s = duration_s
