"""Validation: exact per-record comparison per closed window and partition, BigQuery vs Harper.

Why this way (the original compared estimates; counting rows per cell let a deleted record next
to a foreign one cancel out, and saw changed values only in a small spot check):
- Two stages. Stage 1, every cell (partition x closed window), cheap: a digest on both sides,
  (rows, sums of the 32-bit halves of FARM_FINGERPRINT of each row's digest text over the
  columns that have a canonical text shared by SQL and Python: `sql.DIGEST_TYPES`). BigQuery
  computes it in ONE aggregate query (`sql.bucket_digests_query`, keeping each primary key's
  newest row: Harper holds one record per key); Harper's side comes from one indexed range scan
  of the cursor attribute, each record's partition recomputed with the reads' own function
  (`sync.partitions`) and its digest with `sync.digest`. Equal digests: the cell is right.
- Stage 2, only the cells whose digests differ plus a bounded random sample of the others
  (`validation.sampleRows`, which also covers the columns no digest can: FLOAT64, NUMERIC,
  GEOGRAPHY, JSON, STRUCT, ARRAY): the source rows are read in full and converted exactly as
  the sync converts them, Harper's records of the same cells are read in full, and every id is
  classified: missing (in no Harper cell), foreign (in Harper, not in the source), changed
  (same id and cell, different values) or moved (the record is in Harper under another
  cursor or partition). Counted exactly, per id.
- Closed windows only: each partition's windows behind its checkpoint, over the last `lateness`
  (or `since`): the windows the engine recorded (so late rows still waiting for the reconciler
  are told apart from drift: the source count then differs from the count written), plus fixed
  buckets where nothing was recorded. Windows older than `now - retention` are skipped.
- `repair`: upserts exactly the missing, changed and moved records (the newest source version
  of a key; never over a newer version the running sync wrote meanwhile), deletes foreign ones
  with `deletes: mirror`, and re-syncs pending cells (`sync.resync`), never touching
  checkpoints, so it is safe beside a running sync.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from google.cloud import bigquery

from harperbq.bigquery import server_clock
from harperbq.bigquery.sql import Column, digest_columns
from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync import health as hl
from harperbq.sync.checks import digest as dg
from harperbq.sync.checks.resync import resync
from harperbq.sync.state import CLOCK_COMMIT, AuditEntry, AuditKind
from harperbq.sync.table.assembly import ReadSide, assemble
from harperbq.sync.table.grid import (
    Cell,
    bucket_of,
    by_window,
    cell_sums,
    covering_cells,
    edges_of,
    recorded_cells,
)
from harperbq.sync.table.keys import WindowIds
from harperbq.sync.table.source import BigQuerySource
from harperbq.sync.table.target import SCAN_ROWS, TargetRecord, TargetTable
from harperbq.sync.table.windows import Window
from harperbq.times import MICROS, iso, utc_now_iso

log = logging.getLogger("harperbq.sync.validate")

FILL_BUCKETS = 12
"""Stretches of the horizon no recorded window covers are checked in buckets of horizon/12."""
STAGE2_PAGE_ROWS = 2_000
"""Source rows per page in stage 2: each page is compared and dropped, so small pages bound
the rows in flight (the rows to repair are kept apart)."""
UPSERT_ROWS = 1_000
LISTED = 50
"""At most this many windows are listed per kind in results..."""
AUDIT_LISTED = 15
"""... and in audit entries (whose details are capped at 16 KiB)."""
EXAMPLES = 10

MISSING, FOREIGN, CHANGED, MOVED = "missing", "foreign", "changed", "moved"


@dataclass
class CellDiff:
    """One (partition, window) whose records differ from the source, by kind, exactly."""

    partition: int
    lo: int
    hi: int
    source: int
    harper: int
    written: int | None
    kind: str  # drift | pending
    missing: int = 0
    foreign: int = 0
    changed: int = 0
    moved: int = 0

    @property
    def cell(self) -> Cell:
        return Cell(self.partition, self.lo, self.hi)

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "lo": iso(self.lo),
            "hi": iso(self.hi),
            "source": self.source,
            "harper": self.harper,
            "written": self.written,
            "kind": self.kind,
            "missing": self.missing,
            "foreign": self.foreign,
            "changed": self.changed,
            "moved": self.moved,
        }


@dataclass
class Sample:
    """The clean cells (equal digests) compared record by record anyway."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"windows": self.windows[:LISTED], "rows": self.rows}


@dataclass
class RepairPlan:
    """What `--repair` writes: source records to upsert, foreign ids, cells to re-sync."""

    upserts: dict[str, dict[str, Any]] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    resync: set[Cell] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes or self.resync)


@dataclass
class ValidationResult:
    """What one validation of one table found (and, with repair, fixed)."""

    table_id: str
    health: str = hl.UNKNOWN
    checked_at: str = ""
    duration_s: float = 0.0
    progress: hl.Progress = field(default_factory=hl.Progress)
    horizon: tuple[int, int] | None = None
    windows_checked: int = 0
    windows_compared: int = 0
    rows_source: int = 0
    rows_harper: int = 0
    rows_compared: int = 0
    missing_rows: int = 0
    foreign_rows: int = 0
    changed_rows: int = 0
    moved_rows: int = 0
    retained_rows: int = 0
    drift: list[CellDiff] = field(default_factory=list)
    pending: list[CellDiff] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    sample: Sample = field(default_factory=Sample)
    repaired: list[dict[str, Any]] = field(default_factory=list)
    repaired_rows: int = 0
    repaired_upserts: int = 0
    repaired_deletes: int = 0
    bytes_billed: int = 0
    mirror: bool = False
    error: str | None = None
    after: ValidationResult | None = None
    """With repair: the same validation run again once the repair was done."""
    plan: RepairPlan = field(default_factory=RepairPlan, repr=False)

    @property
    def final_health(self) -> str:
        """The table's state when this run ended: after the repair if one was made."""
        return self.after.health if self.after is not None else self.health

    @property
    def extra_rows(self) -> int:
        """Foreign records counted as drift (with `deletes: mirror`; else they are retained)."""
        return self.foreign_rows if self.mirror else 0

    @property
    def drift_rows(self) -> int:
        """Records missing, changed or moved, plus foreign ones with `deletes: mirror`."""
        return self.missing_rows + self.changed_rows + self.moved_rows + self.extra_rows

    @property
    def pending_rows(self) -> int:
        return sum(abs(d.source - d.harper) for d in self.pending)

    @property
    def has_drift(self) -> bool:
        return self.drift_rows > 0

    @property
    def ok(self) -> bool:
        """Nothing an operator must act on (lagging is fine: it is catching up)."""
        return self.error is None and self.final_health in (hl.HEALTHY, hl.LAGGING)

    def to_json(self, listed: int = LISTED) -> dict[str, Any]:
        after = self.after
        return {
            "table": self.table_id,
            "health": self.health,
            "checked_at": self.checked_at,
            "duration_s": round(self.duration_s, 3),
            **self.progress.to_json(),
            "horizon": (
                {"lo": iso(self.horizon[0]), "hi": iso(self.horizon[1])} if self.horizon else None
            ),
            "windows_checked": self.windows_checked,
            "windows_compared": self.windows_compared,
            "rows_source": self.rows_source,
            "rows_harper": self.rows_harper,
            "rows_compared": self.rows_compared,
            "drift_windows": len(self.drift),
            "drift_rows": self.drift_rows,
            "missing_rows": self.missing_rows,
            "foreign_rows": self.foreign_rows,
            "extra_rows": self.extra_rows,
            "changed_rows": self.changed_rows,
            "moved_rows": self.moved_rows,
            "retained_rows": self.retained_rows,
            "drift": [d.to_json() for d in self.drift[:listed]],
            "pending_windows": len(self.pending),
            "pending_rows": self.pending_rows,
            "pending": [d.to_json() for d in self.pending[:listed]],
            "examples": self.examples[:EXAMPLES],
            "sample": self.sample.to_json(),
            "bytes_billed": self.bytes_billed,
            "repaired_windows": len(self.repaired),
            "repaired_rows": self.repaired_rows,
            "repaired_upserts": self.repaired_upserts,
            "repaired_deletes": self.repaired_deletes,
            "repaired": self.repaired[:listed],
            "after": None if after is None else _summary(after),
            "error": self.error,
        }


@dataclass(slots=True)
class _Version:
    """One source row of a compared cell as stage 2 keeps it: the row itself only when it is
    not equal to Harper's record in its cell (it may need repairing), so that the compared
    cells' rows are not all held at once."""

    row: dict[str, Any] | None
    """The converted row with its id; None when Harper's record in this cell equals it."""
    at: int
    """Cursor µs."""
    cell: Cell
    tie: int
    """The row's digest fingerprint: of versions with one cursor, the larger wins."""
    differ: list[str] = field(default_factory=list)
    """The columns in which Harper's record in this cell differs (none there: empty)."""


@dataclass
class _Found:
    """Stage 2's view of the compared cells: source rows and Harper records by id."""

    source: dict[str, _Version] = field(default_factory=dict)
    """id -> its version (for keys, the newest one only)."""
    harper: dict[str, tuple[TargetRecord, Cell]] = field(default_factory=dict)
    """id -> Harper's record in a compared cell (its values dropped once its window is read)."""


class Validator:
    """Validates one table over all its partitions (any node may run it: Harper replicates)."""

    def __init__(
        self,
        side: ReadSide[BigQuerySource],
        *,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.side = side
        self.cfg = side.config
        self.table = side.table
        self.harper = side.harper
        self.worker_id = side.worker_id
        # BigQuery's clock: "now" of a commit-time validation is an as-of time it must accept.
        self.clock = clock or server_clock.for_client(side.source.client).now
        self.rng = rng or random.Random()
        self.state = side.state
        self.source = side.source
        self._his: dict[int, int] = {}
        """Each partition's checkpoint `hi` (µs) when the validation began."""
        self._edges: Sequence[int] = ()
        self._bucket_rows: Sequence[int] = ()
        """Records per bucket of `_edges` (all partitions; the larger side's count): what a
        stage-2 scan of Harper expects, so that it is split into bounded answers."""

    @property
    def target(self) -> TargetTable:
        return self.side.target()

    @property
    def keyed(self) -> bool:
        return bool(self.table.primary_key)

    def run(self, *, repair: bool = False, since_s: float | None = None) -> ValidationResult:
        """Validate (and with repair, fix), record the result in `SyncAudit`, return it.
        Errors are reported in the result (and audited), not raised."""
        started = time.monotonic()
        result = ValidationResult(self.table.id, checked_at=utc_now_iso())
        result.mirror = self.table.deletes == "mirror"
        try:
            self.source.refresh_schema()
            self._validate(result, since_s)
            if repair and self._repair(result):
                result.after = ValidationResult(self.table.id, checked_at=utc_now_iso())
                result.after.mirror = result.mirror
                self._validate(result.after, since_s)
        except Exception as exc:
            log.warning("validation of %s failed: %s", self.table.id, exc)
            result.error = f"{type(exc).__name__}: {exc}"[:2000]
        result.duration_s = time.monotonic() - started
        result.bytes_billed = self.source.bytes_billed
        self._audit(result)
        return result

    # -- stage 1: digests of every cell ---------------------------------------------------------

    def _validate(self, result: ValidationResult, since_s: float | None) -> None:
        now = self.clock()
        checkpoints = self.state.get_checkpoints(self.table.id)
        result.progress = hl.progress(
            checkpoints,
            now=now,
            settle_s=self.table.settle_s,
            lagging_after_s=self.table.steady_threshold_s,
            stalled_after_s=self.cfg.validation.stalled_after_s,
        )
        if not result.progress.partitions_synced:
            self._never_synced(result, now)
            return
        horizon_us = int((self.table.lateness_s if since_s is None else since_s) * MICROS)
        cutoff = self._retention_cutoff(now)
        parts = range(self.table.partitions)
        recorded = {
            c: n
            for c, n in recorded_cells(checkpoints, parts).items()
            if cutoff is None or c.lo >= cutoff  # older records are expired on purpose
        }
        cells: list[Cell] = []
        self._his = {}
        # A change feed's checkpoints count commit time: compare the event-time cells up to
        # now with BigQuery as of the oldest checkpoint (time travel); partitions already past
        # it may hold newer commits, so their differences wait for the next run (pending).
        synced = {p: cp.hi for p, cp in checkpoints.items() if cp.hi is not None}
        commit = bool(synced) and all(checkpoints[p].clock == CLOCK_COMMIT for p in synced)
        as_of = min(synced.values()) if commit else None
        later = {p for p, hi in synced.items() if commit and hi != as_of}
        for p in parts:
            if p not in synced:
                continue
            hi = self._his[p] = int(now * MICROS) if commit else synced[p]
            lo = max(hi - horizon_us, cutoff) if cutoff is not None else hi - horizon_us
            if hi > lo:
                fill = max(1, (hi - lo) // FILL_BUCKETS)
                cells.extend(covering_cells(p, recorded, lo, hi, fill))
        if not cells:
            result.health = hl.verdict(result.progress, False)
            return
        edges = edges_of(cells)
        result.horizon = (edges[0], edges[-1])
        columns = digest_columns(self.source.columns)
        buckets = self.source.digest_buckets(edges, columns, newest_by_key=self.keyed, as_of=as_of)
        rows = cell_sums(cells, edges, {k: n for k, (n, _) in buckets.items()})
        source = _cell_digests(cells, edges, {k: d for k, (_, d) in buckets.items()})
        expected = [0] * len(edges)
        for (_, b), (n, _) in buckets.items():
            if 1 <= b < len(edges):
                expected[b] += n
        scanned = self._scan_harper(edges, expected, columns)
        for (_, b), digest in scanned.items():
            expected[b] = max(expected[b], digest.rows)  # Harper may hold more (extra rows)
        self._edges, self._bucket_rows = edges, expected
        harper = _cell_digests(cells, edges, scanned)
        result.windows_checked = len(cells)
        result.rows_source = sum(d.rows for d in source.values())
        result.rows_harper = sum(d.rows for d in harper.values())
        differing: list[Cell] = []
        for cell in cells:
            if source[cell] == harper[cell]:
                continue
            written = recorded.get(cell)
            if (written is not None and written != rows[cell]) or cell.partition in later:
                # late rows (or source deletes) the reconciler has yet to re-sync: not a verdict
                result.pending.append(_diff(cell, source[cell], harper[cell], written, "pending"))
            else:
                differing.append(cell)
        sample = self._sample([c for c in cells if source[c] == harper[c]], rows)
        result.sample.windows = [
            {"partition": c.partition, **_window_json(c.window)} for c in sample
        ]
        result.sample.rows = sum(rows[c] for c in sample)
        self._compare(result, differing, sample, rows, source, harper, recorded)
        result.health = hl.verdict(result.progress, result.has_drift)

    def _never_synced(self, result: ValidationResult, now: float) -> None:
        """No checkpoint at all: healthy if the source is empty too, else judged by how long
        its oldest row has been waiting."""
        first = self.source.first_cursor(None)
        if first is None:
            result.health = hl.HEALTHY
            return
        behind = max(0.0, now - self.table.settle_s - first / MICROS)
        stalled = behind > self.cfg.validation.stalled_after_s
        result.progress = hl.Progress(
            behind_s=behind,
            stalled_partitions=list(range(self.table.partitions)) if stalled else [],
            lagging=behind > self.table.steady_threshold_s,
        )
        result.health = hl.verdict(result.progress, False)

    def _retention_cutoff(self, now: float) -> int | None:
        if self.table.retention_s is None:
            return None
        return int((now - self.table.retention_s) * MICROS)

    def _scan_harper(
        self, edges: Sequence[int], expected: Sequence[int], columns: Sequence[Column]
    ) -> dict[tuple[int, int], dg.Digest]:
        """Digests of Harper's records per (partition, bucket), scanned in cursor ranges
        expected to hold at most SCAN_ROWS records each."""
        names = [c.name for c in columns]
        out: dict[tuple[int, int], dg.Digest] = {}
        start, held = 0, 0
        for b in range(1, len(edges)):
            held += expected[b]
            if held >= SCAN_ROWS or b == len(edges) - 1:
                scan = self.target.records(edges[start], edges[b], names, expected_rows=held)
                for record in scan:
                    bucket = bucket_of(edges, record.cursor_us)
                    if bucket is not None:
                        key = (record.partition, bucket)
                        out[key] = out.get(key, dg.Digest()) + dg.of_row(record.values, columns)
                start, held = b, 0
        return out

    def _sample(self, clean: Sequence[Cell], rows: dict[Cell, int]) -> list[Cell]:
        """Random clean cells holding at most `validation.sampleRows` rows together."""
        budget = self.cfg.validation.sample_rows
        chosen: list[Cell] = []
        for cell in self.rng.sample(list(clean), len(clean)):
            if 0 < rows[cell] <= budget:
                chosen.append(cell)
                budget -= rows[cell]
        return chosen

    # -- stage 2: record by record, in the differing and sampled cells ---------------------------

    # Over the size caps on purpose: one branch per way a record can differ, each counted apart.
    def _compare(  # noqa: C901
        self,
        result: ValidationResult,
        differing: Sequence[Cell],
        sample: Sequence[Cell],
        rows: dict[Cell, int],
        source: dict[Cell, dg.Digest],
        harper: dict[Cell, dg.Digest],
        recorded: dict[Cell, int],
    ) -> None:
        """Classify every id of the given cells; fill the counts, diffs and repair plan."""
        plan = result.plan
        cells = [*differing, *sample]
        if not cells:
            plan.resync |= {d.cell for d in result.pending}
            return
        found, changed_meanwhile = self._read_both(cells, rows)
        for cell in changed_meanwhile:  # the source moved on since the aggregate
            result.pending.append(
                _diff(cell, source[cell], harper[cell], recorded.get(cell), "pending")
            )
        skip = set(changed_meanwhile)
        result.windows_compared = len(cells) - len(skip)
        result.rows_compared = sum(1 for v in found.source.values() if v.cell not in skip)
        diffs: dict[Cell, CellDiff] = {}

        def note(cell: Cell, kind: str, record_id: str, **extra: Any) -> None:
            if kind == FOREIGN and not result.mirror:
                result.retained_rows += 1  # a source delete kept: `deletes: none`
                return
            diff = diffs.get(cell)
            if diff is None:
                diff = diffs[cell] = _diff(
                    cell, source[cell], harper[cell], recorded.get(cell), "drift"
                )
            setattr(diff, kind, getattr(diff, kind) + 1)
            attribute = f"{kind}_rows"
            setattr(result, attribute, getattr(result, attribute) + 1)
            if len(result.examples) < EXAMPLES:
                result.examples.append({"id": record_id, "problem": kind, **extra})

        lookup: list[str] = []
        for record_id, version in found.source.items():
            cell, row = version.cell, version.row
            if cell in skip or row is None:
                continue  # row None: equal to Harper's record in its cell
            held = found.harper.get(record_id)
            if held is None:
                lookup.append(record_id)
                continue
            stored, where = held
            if where != cell:
                note(cell, MOVED, record_id, stored_at=iso(stored.cursor_us))
                self._plan_upsert(plan, row, version.at)
                continue
            note(cell, CHANGED, record_id, columns=version.differ[:5])
            self._plan_upsert(plan, row, version.at)
        elsewhere = self.target.lookup(lookup)
        overtaken: set[Cell] = set()
        for record_id in lookup:
            version = found.source[record_id]
            row, at, cell = version.row, version.at, version.cell
            assert row is not None  # only rows that differ from Harper's are looked up
            other = elsewhere.get(record_id)
            if other is None:
                note(cell, MISSING, record_id)
            elif self.keyed and other.cursor_us > at:
                if other.cursor_us >= self._his.get(other.partition, other.cursor_us):
                    overtaken.add(cell)  # a newer version the running sync is writing
                continue  # else superseded: the newer version is in a cell whose digest matched
            else:
                note(cell, MOVED, record_id, stored_at=iso(other.cursor_us))
            self._plan_upsert(plan, row, at)
        for record_id, (_, where) in found.harper.items():
            if where not in skip and record_id not in found.source:
                note(where, FOREIGN, record_id)
                if result.mirror:
                    plan.deletes.append(record_id)
        pending = {d.cell for d in result.pending}
        for cell in sorted(overtaken - pending):
            result.pending.append(
                _diff(cell, source[cell], harper[cell], recorded.get(cell), "pending")
            )
        plan.resync |= {d.cell for d in result.pending}
        result.drift = sorted(diffs.values(), key=lambda d: (d.lo, d.partition))

    def _plan_upsert(self, plan: RepairPlan, row: dict[str, Any], at: int) -> None:
        record_id = str(row["id"])
        plan.upserts[record_id] = row
        plan.cursors[record_id] = at

    def _read_both(self, cells: Sequence[Cell], rows: dict[Cell, int]) -> tuple[_Found, list[Cell]]:
        """Harper's records of the cells, then the source rows (converted as the sync converts
        them, ids as the sync makes them) streamed past them, window by window: a row equal to
        Harper's record in its cell is kept as a few numbers, not as a row, and Harper's values
        are dropped once their window is compared, so memory holds one window's records and
        the rows to repair, not every compared row twice. Also the cells whose source row count
        is no longer the aggregate's."""
        found = _Found()
        wanted = set(cells)
        read: dict[Cell, int] = dict.fromkeys(cells, 0)
        names = [c.name for c in self.source.columns]
        digested = digest_columns(self.source.columns)
        for window, parts in by_window(cells).items():
            held = self._rows_between(window.lo, window.hi)
            here: list[str] = []
            for record in self.target.records(window.lo, window.hi, names, expected_rows=held):
                cell = Cell(record.partition, window.lo, window.hi)
                if cell in wanted:
                    found.harper[record.id] = (record, cell)
                    here.append(record.id)
            for page_records, page_parts in self._read(window, parts):
                for row, partition in zip(page_records, page_parts, strict=True):
                    cell = Cell(partition, window.lo, window.hi)
                    if cell not in wanted:
                        continue
                    read[cell] += 1
                    self._keep_newest(found, row, cell, names, digested)
            for record_id in here:  # compared: only where they are is needed from now on
                record, cell = found.harper[record_id]
                found.harper[record_id] = (replace(record, values={}), cell)
        return found, [c for c in cells if read[c] != rows[c]]

    def _rows_between(self, lo: int, hi: int) -> int:
        """Records of every partition expected in `[lo, hi)` (whole buckets of stage 1)."""
        edges = self._edges
        return sum(
            self._bucket_rows[b]
            for b in range(1, len(edges))
            if lo <= edges[b - 1] and edges[b] <= hi
        )

    def _keep_newest(
        self,
        found: _Found,
        row: dict[str, Any],
        cell: Cell,
        names: Sequence[str],
        digested: Sequence[Column],
    ) -> None:
        """Keep a row's version; of one key's versions, the newest cursor wins (ties: the
        larger fingerprint, as the digest query breaks them). The row itself is kept only if
        Harper's record in its cell differs or is not there."""
        record_id = str(row["id"])
        at = self.target.micros(row.get(self.source.cursor.name))
        if at is None:
            return
        tie = dg.row_fingerprint(row, digested)
        held = found.source.get(record_id)
        if held is not None and (at, tie) <= (held.at, held.tie):
            return
        stored = found.harper.get(record_id)
        if stored is None or stored[1] != cell:
            found.source[record_id] = _Version(row, at, cell, tie)
            return
        values = stored[0].values
        differ = [n for n in names if not _same(row.get(n), values.get(n))]
        found.source[record_id] = _Version(row if differ else None, at, cell, tie, differ)

    def _read(
        self, window: Window, parts: Sequence[int]
    ) -> Iterator[tuple[list[dict[str, Any]], list[int]]]:
        ids = WindowIds(self.table.primary_key)
        read_parts = None if len(parts) == self.table.partitions else parts
        for page in self.source.read(window, read_parts, STAGE2_PAGE_ROWS):
            for record in page.records:
                record["id"] = ids.id_for(record)
            yield page.records, page.partitions

    # -- repair -------------------------------------------------------------------------------

    def _repair(self, result: ValidationResult) -> bool:
        """Upsert the missing, changed and moved records, delete foreign ones (mirror),
        re-sync pending cells; True if there was anything to repair."""
        plan = result.plan
        if not plan:
            return False
        upserts = self._not_overtaken(plan)
        for start in range(0, len(upserts), UPSERT_ROWS):
            self._upsert(upserts[start : start + UPSERT_ROWS])
        result.repaired_upserts = len(upserts)
        if plan.deletes:
            result.repaired_deletes = self.target.delete(plan.deletes)
        mirror = self.target if result.mirror else None
        for window, parts in by_window(plan.resync).items():
            done = resync(
                self.source,
                self._upsert,
                window,
                parts,
                all_partitions=self.table.partitions,
                primary_key=self.table.primary_key,
                mirror=mirror,
                target=self.target,
            )
            result.repaired.append(done.to_json())
            result.repaired_rows += done.rows_read
        result.repaired_rows += result.repaired_upserts + result.repaired_deletes
        log.info(
            "repaired %s: %d records upserted, %d deleted, %d windows re-synced",
            self.table.id,
            result.repaired_upserts,
            result.repaired_deletes,
            len(result.repaired),
        )
        return True

    def _not_overtaken(self, plan: RepairPlan) -> list[dict[str, Any]]:
        """The planned upserts, less keys the running sync has meanwhile written a newer
        version of (beyond the checkpoint the validation saw): an older one never wins."""
        if not self.keyed:
            return list(plan.upserts.values())
        now = self.target.lookup(list(plan.upserts))
        out = []
        for record_id, row in plan.upserts.items():
            stored = now.get(record_id)
            if (
                stored is not None
                and stored.cursor_us > plan.cursors[record_id]
                and stored.cursor_us >= self._his.get(stored.partition, stored.cursor_us)
            ):
                continue
            out.append(row)
        return out

    def _upsert(self, records: list[dict[str, Any]]) -> None:
        self.side.sink.upsert(records)  # the engine's write path and write metric

    def _audit(self, result: ValidationResult) -> None:
        message = (
            f"{result.health}: {result.windows_checked} windows checked, "
            f"{result.drift_rows} rows drift in {len(result.drift)} windows "
            f"({result.missing_rows} missing, {result.foreign_rows} foreign, "
            f"{result.changed_rows} changed, {result.moved_rows} moved), "
            f"{result.pending_rows} rows pending"
            + (
                f", repaired: {result.repaired_upserts} upserted, "
                f"{result.repaired_deletes} deleted, {len(result.repaired)} windows re-synced"
                if result.after is not None
                else ""
            )
            + (f", then {result.after.health}" if result.after is not None else "")
            + (f"; error: {result.error}" if result.error else "")
        )
        try:
            self.state.audit(
                AuditEntry(
                    kind=AuditKind.VALIDATION,
                    table_id=self.table.id,
                    message=message,
                    details=result.to_json(listed=AUDIT_LISTED),
                    worker_id=self.worker_id,
                )
            )
        except Exception as exc:  # the audit trail may be what is failing; the result stands
            log.warning("could not record the validation of %s: %s", self.table.id, exc)


def _cell_digests(
    cells: Sequence[Cell], edges: Sequence[int], buckets: dict[tuple[int, int], dg.Digest]
) -> dict[Cell, dg.Digest]:
    """Each cell's digest: the exact sum of its buckets' (rows, high, low), as `cell_sums`."""
    rows = cell_sums(cells, edges, {k: d.rows for k, d in buckets.items()})
    high = cell_sums(cells, edges, {k: d.high for k, d in buckets.items()})
    low = cell_sums(cells, edges, {k: d.low for k, d in buckets.items()})
    return {c: dg.Digest(rows[c], high[c], low[c]) for c in cells}


def _diff(
    cell: Cell, source: dg.Digest, harper: dg.Digest, written: int | None, kind: str
) -> CellDiff:
    return CellDiff(cell.partition, cell.lo, cell.hi, source.rows, harper.rows, written, kind)


def _same(a: Any, b: Any) -> bool:
    """Values equal as Harper gives them back (JSON: 1.0 may come back as 1)."""
    return bool(a == b)


def _summary(result: ValidationResult) -> dict[str, Any]:
    return {
        "health": result.health,
        "windows_checked": result.windows_checked,
        "drift_windows": len(result.drift),
        "drift_rows": result.drift_rows,
        "missing_rows": result.missing_rows,
        "foreign_rows": result.foreign_rows,
        "changed_rows": result.changed_rows,
        "moved_rows": result.moved_rows,
        "pending_rows": result.pending_rows,
    }


def _window_json(window: Window) -> dict[str, Any]:
    return {"lo": iso(window.lo), "hi": iso(window.hi)}


def validate_tables(
    cfg: Config,
    harper: HarperClient,
    bigquery_client: bigquery.Client,
    table_ids: Sequence[str] | None = None,
    *,
    repair: bool = False,
    since_s: float | None = None,
    worker_id: str = "cli",
) -> list[ValidationResult]:
    """Validate the given tables (all configured when None), one after the other."""
    wanted = [cfg.table(t) for t in table_ids] if table_ids else list(cfg.tables)
    return [
        Validator(assemble(cfg, table, worker_id, harper, bigquery_client)).run(
            repair=repair, since_s=since_s
        )
        for table in wanted
    ]
