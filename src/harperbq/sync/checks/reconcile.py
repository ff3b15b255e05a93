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
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harperbq.config import TableConfig
from harperbq.sync.checks.resync import ResyncResult, Upsert, resync
from harperbq.sync.state import Checkpoint, RecentWindow
from harperbq.sync.table.engine import TableEngine
from harperbq.sync.table.grid import Cell, by_window, cell_sums, edges_of, recorded_cells
from harperbq.sync.table.source import BigQuerySource
from harperbq.sync.table.target import TargetTable
from harperbq.times import MICROS, iso

log = logging.getLogger("harperbq.sync.reconcile")
BEYOND_LATENESS = "beyond_lateness"
NULL_CURSOR = "null_cursor"
NULL_CURSOR_CHECK_S = 3600.0


@dataclass
class ReconcileStats:
    """Totals since start, for status and metrics."""

    runs: int = 0
    queries: int = 0
    windows_checked: int = 0
    windows_resynced: int = 0
    rows_reread: int = 0
    rows_deleted: int = 0
    rows_beyond_lateness: int = 0
    null_cursor_rows: int = 0  # at the last count
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
    beyond: dict[Cell, tuple[int, int]] = field(default_factory=dict)
    """(written, source) counts of cells older than `lateness` that differed: watched only."""
    rows_beyond_lateness: int = 0
    null_cursor_rows: int | None = None  # None: not counted in this run
    not_needed: str | None = None
    """Why nothing was compared: the table is read by its change feed, where a late row is
    a new commit (`sync.feed`)."""

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
            "rows_beyond_lateness": self.rows_beyond_lateness,
            "null_cursor_rows": self.null_cursor_rows,
            "resynced": [r.to_json() for r in self.resynced[:50]],
            **({"not_needed": self.not_needed} if self.not_needed else {}),
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
        self._null_checked_at = -math.inf

    def run(self, stop: threading.Event | None = None) -> ReconcileReport:
        """One reconciliation over the owned partitions' recorded windows."""
        started = time.monotonic()
        report = ReconcileReport()
        if self.engine.status.read_mode in ("snapshot", "following"):
            # No event-time scan: late rows and backfills are commits the feed reads, and
            # NULL cursors need no cursor there.
            report.not_needed = "change feed: late rows arrive as new commits"
            self._count(report, time.monotonic() - started)
            return report
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
            changed = {c: (n, source[c]) for c, n in cells.items() if source[c] != n}
            horizon = self._horizons(checkpoints)
            report.changed = {c: v for c, v in changed.items() if c.hi > horizon[c.partition]}
            report.beyond = {c: v for c, v in changed.items() if c not in report.changed}
            done = self._resync(report, stop)
            self._report_beyond(report, horizon)
            self._record(checkpoints, {**done, **report.beyond})
        self._null_cursors(report)
        self._count(report, time.monotonic() - started)
        return report

    def _horizons(self, checkpoints: dict[int, Checkpoint]) -> dict[int, int]:
        """Per partition, `hi - lateness`: windows ending at or before it are only watched."""
        lateness = int(self.table.lateness_s * MICROS)
        return {p: cp.hi - lateness for p, cp in checkpoints.items() if cp.hi is not None}

    def _report_beyond(self, report: ReconcileReport, horizon: dict[int, int]) -> None:
        """Rows that arrived later than `lateness`: not synced (by design), but reported with
        the fix, once (their window then records the source count)."""
        late = {c: s - n for c, (n, s) in report.beyond.items() if s > n}
        if not late:
            return
        rows = sum(late.values())
        report.rows_beyond_lateness = rows
        by_reason = self.engine.status.skipped_by_reason
        by_reason[BEYOND_LATENESS] = by_reason.get(BEYOND_LATENESS, 0) + rows
        oldest = min(c.lo for c in late)
        behind_s = max(horizon[c.partition] for c in late) - oldest
        since = f"{math.ceil((behind_s / MICROS + self.table.lateness_s) / 60) + 1}m"
        fix = (
            f"harperbq sync validate --table {self.table.id} --since {since} --repair, "
            f"or raise lateness (now {self.table.lateness_s:g} s)"
        )
        log.warning(
            "table %s: %d rows arrived later than lateness (%g s) in %d windows; not synced: %s",
            self.table.id,
            rows,
            self.table.lateness_s,
            len(late),
            fix,
        )
        self.engine.sink.audit(
            BEYOND_LATENESS,
            {
                "code": BEYOND_LATENESS,
                "count": rows,
                "lateness_s": self.table.lateness_s,
                "windows": [
                    {"partition": c.partition, "lo": iso(c.lo), "hi": iso(c.hi), "rows": n}
                    for c, n in sorted(late.items())[:15]
                ],
                "fix": fix,
            },
        )

    def _null_cursors(self, report: ReconcileReport) -> None:
        """Count source rows with a NULL cursor (never synced) once per hour per table, on the
        worker owning partition 0; report them when there are any."""
        now = self.clock()
        if 0 not in self.owned() or now - self._null_checked_at < NULL_CURSOR_CHECK_S:
            return
        self._null_checked_at = now
        count = self.source.null_cursors()
        report.queries += 1
        report.null_cursor_rows = count
        new = count - self.stats.null_cursor_rows
        self.stats.null_cursor_rows = count
        if count <= 0:
            return
        if new > 0:
            by_reason = self.engine.status.skipped_by_reason
            by_reason[NULL_CURSOR] = by_reason.get(NULL_CURSOR, 0) + new
        cursor = self.table.cursor_column
        self.engine.sink.audit(
            NULL_CURSOR,
            {
                "code": NULL_CURSOR,
                "count": count,
                "column": cursor,
                "fix": f"set {cursor} on those rows (or make it REQUIRED); rows without a "
                "cursor belong to no window and are never synced",
            },
        )

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
                lo, hi = w["lo"], w["hi"]
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
        s.rows_beyond_lateness += report.rows_beyond_lateness
        s.last_run_at = self.clock()
        s.last_duration_s = duration_s
