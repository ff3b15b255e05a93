"""Validation: exact counts per closed window and partition, BigQuery vs Harper, plus spot checks.

Why this way (the original compared estimates, with a partition function different from its
reads, so its numbers could never agree):
- Exact on both sides. BigQuery: one `RANGE_BUCKET` aggregate over the cursor and key columns
  (`COUNT(DISTINCT key)` for keyed tables: Harper holds one record per key). Harper: one indexed
  range scan of the cursor attribute returning id and partition-key columns; each record's
  partition is recomputed with the reads' own function (`sync.partitions`). Counting Harper per
  window over all partitions would be exact too, but could neither say which partition drifted
  nor let `--repair` re-read only that partition.
- Closed windows only: each partition's windows behind its checkpoint, over the last `lateness`
  (or `since`): the windows the engine recorded (so late rows still waiting for the reconciler
  are told apart from drift: the source count then differs from the count written), plus fixed
  buckets where nothing was recorded. Windows older than `now - retention` are skipped.
- Spot checks in both directions by id: a few sampled windows are read from the source in full;
  their ids are compared with Harper's ids of the same cells both ways, and a sample of records
  field by field.
- `repair`: re-syncs exactly the drifted and pending cells (`sync.resync`), never touching
  checkpoints, so it is safe beside a running sync.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.cloud import bigquery

from harperbq.bigquery.retry import RetryPolicy
from harperbq.config import Config, TableConfig
from harperbq.harper.client import HarperClient
from harperbq.sync import health as hl
from harperbq.sync.grid import (
    Cell,
    by_window,
    cell_sums,
    count_into,
    covering_cells,
    edges_of,
    recorded_cells,
)
from harperbq.sync.keys import WindowIds
from harperbq.sync.resync import resync
from harperbq.sync.source import BigQuerySource
from harperbq.sync.state import AuditEntry, AuditKind, StateStore, utc_now_iso
from harperbq.sync.target import TargetTable
from harperbq.sync.windows import MICROS, Window, iso, parse_iso

log = logging.getLogger("harperbq.sync.validate")

FILL_BUCKETS = 12
"""Stretches of the horizon no recorded window covers are checked in buckets of horizon/12."""
SCAN_ROWS = 50_000
"""Harper is scanned in cursor ranges expected to hold at most this many records each."""
SPOT_WINDOWS = 2
SPOT_MAX_ROWS = 5_000
SPOT_FIELDS = 20
LISTED = 50
"""At most this many windows are listed per kind in results..."""
AUDIT_LISTED = 15
"""... and in audit entries (whose details are capped at 16 KiB)."""


@dataclass(frozen=True)
class CellDiff:
    """One (partition, window) whose Harper count differs from the source."""

    partition: int
    lo: int
    hi: int
    source: int
    harper: int
    written: int | None
    kind: str  # missing | extra | pending

    def to_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "lo": iso(self.lo),
            "hi": iso(self.hi),
            "source": self.source,
            "harper": self.harper,
            "written": self.written,
            "kind": self.kind,
        }


@dataclass
class SpotCheck:
    cells: list[Cell] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    source_ids: int = 0
    harper_ids: int = 0
    missing_in_harper: int = 0
    extra_in_harper: int = 0
    compared: int = 0
    mismatched: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "source_ids": self.source_ids,
            "harper_ids": self.harper_ids,
            "missing_in_harper": self.missing_in_harper,
            "extra_in_harper": self.extra_in_harper,
            "compared": self.compared,
            "mismatched": self.mismatched,
            "examples": self.examples[:10],
        }


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
    rows_source: int = 0
    rows_harper: int = 0
    drift: list[CellDiff] = field(default_factory=list)
    pending: list[CellDiff] = field(default_factory=list)
    retained_rows: int = 0
    spot: SpotCheck = field(default_factory=SpotCheck)
    repaired: list[dict[str, Any]] = field(default_factory=list)
    repaired_rows: int = 0
    mirror: bool = False
    error: str | None = None
    after: ValidationResult | None = None
    """With repair: the same validation run again once the repair was done."""

    @property
    def final_health(self) -> str:
        """The table's state when this run ended: after the repair if one was made."""
        return self.after.health if self.after is not None else self.health

    @property
    def missing_rows(self) -> int:
        return sum(d.source - d.harper for d in self.drift if d.kind == "missing")

    @property
    def extra_rows(self) -> int:
        return sum(d.harper - d.source for d in self.drift if d.kind == "extra")

    @property
    def drift_rows(self) -> int:
        """Rows missing from Harper plus (with `deletes: mirror`) rows Harper should not have."""
        return self.missing_rows + self.extra_rows

    @property
    def pending_rows(self) -> int:
        return sum(abs(d.source - d.harper) for d in self.pending)

    @property
    def has_drift(self) -> bool:
        spot = self.spot
        extra = self.mirror and spot.extra_in_harper
        return bool(self.drift or spot.missing_in_harper or spot.mismatched or extra)

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
            "rows_source": self.rows_source,
            "rows_harper": self.rows_harper,
            "drift_windows": len(self.drift),
            "drift_rows": self.drift_rows,
            "missing_rows": self.missing_rows,
            "extra_rows": self.extra_rows,
            "drift": [d.to_json() for d in self.drift[:listed]],
            "pending_windows": len(self.pending),
            "pending_rows": self.pending_rows,
            "pending": [d.to_json() for d in self.pending[:listed]],
            "retained_rows": self.retained_rows,
            "spot": self.spot.to_json(),
            "repaired_windows": len(self.repaired),
            "repaired_rows": self.repaired_rows,
            "repaired": self.repaired[:listed],
            "after": None if after is None else _summary(after),
            "error": self.error,
        }


class Validator:
    """Validates one table over all its partitions (any node may run it: Harper replicates)."""

    def __init__(
        self,
        cfg: Config,
        table: TableConfig,
        harper: HarperClient,
        bigquery_client: bigquery.Client,
        *,
        worker_id: str = "cli",
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.table = table
        self.harper = harper
        self.worker_id = worker_id
        self.clock = clock
        self.rng = rng or random.Random()
        self.state = StateStore(harper, cfg.harper.state_database)
        self.source = BigQuerySource(
            bigquery_client,
            cfg.bigquery,
            table,
            RetryPolicy.from_config(cfg.retry, cfg.bigquery),
        )
        self._target: TargetTable | None = None

    @property
    def target(self) -> TargetTable:
        if self._target is None:
            self._target = TargetTable(
                self.harper,
                self.cfg.harper.database,
                self.table.target_table,
                self.source.cursor,
                self.source.partition_key,
                self.table.partitions,
            )
        return self._target

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
        self._audit(result)
        return result

    # -- counts -----------------------------------------------------------------------------

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
        for p in parts:
            cp = checkpoints.get(p)
            if cp is None or not cp.hi:
                continue
            hi = parse_iso(cp.hi)
            lo = max(hi - horizon_us, cutoff) if cutoff is not None else hi - horizon_us
            if hi > lo:
                fill = max(1, (hi - lo) // FILL_BUCKETS)
                cells.extend(covering_cells(p, recorded, lo, hi, fill))
        if not cells:
            result.health = hl.verdict(result.progress, False)
            return
        edges = edges_of(cells)
        result.horizon = (edges[0], edges[-1])
        keyed = bool(self.table.primary_key)
        buckets = self.source.count_buckets(edges, None, distinct_keys=keyed)
        rows = cell_sums(cells, edges, {k: v[0] for k, v in buckets.items()})
        keys = cell_sums(cells, edges, {k: v[1] for k, v in buckets.items()})
        sample = self._sample(cells, rows)
        harper_counts, sample_ids = self._scan_harper(edges, buckets, sample)
        harper = cell_sums(cells, edges, harper_counts)
        result.windows_checked = len(cells)
        result.rows_source = sum(keys.values())
        result.rows_harper = sum(harper.values())
        for cell in cells:
            self._classify(result, cell, keys[cell], rows[cell], harper[cell], recorded.get(cell))
        pending = {Cell(d.partition, d.lo, d.hi) for d in result.pending}
        checkable = [c for c in sample if c not in pending]  # late rows there: not a verdict
        self._spot_check(result, checkable, sample_ids, keys)
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

    def _classify(
        self,
        result: ValidationResult,
        cell: Cell,
        source: int,
        source_rows: int,
        harper: int,
        written: int | None,
    ) -> None:
        if harper == source:
            return
        if written is not None and written != source_rows:
            kind = "pending"  # late rows (or source deletes) the reconciler has yet to re-sync
        elif harper < source:
            kind = "missing"
        elif result.mirror:
            kind = "extra"
        else:
            result.retained_rows += harper - source  # source deletes kept: `deletes: none`
            return
        diff = CellDiff(cell.partition, cell.lo, cell.hi, source, harper, written, kind)
        (result.pending if kind == "pending" else result.drift).append(diff)

    def _scan_harper(
        self,
        edges: Sequence[int],
        buckets: dict[tuple[int, int], tuple[int, int]],
        sample: Sequence[Cell],
    ) -> tuple[dict[tuple[int, int], int], dict[Cell, set[str]]]:
        """Harper's records per (partition, bucket), scanned in ranges of bounded size; ids
        are kept only for the sampled cells."""
        expected = [0] * len(edges)
        for (_, b), (n, _) in buckets.items():
            if 1 <= b < len(edges):
                expected[b] += n
        counts: dict[tuple[int, int], int] = {}
        ids: dict[Cell, set[str]] = {cell: set() for cell in sample}
        start, held = 0, 0
        for b in range(1, len(edges)):
            held += expected[b]
            if held >= SCAN_ROWS or b == len(edges) - 1:
                for record in self.target.records(edges[start], edges[b]):
                    count_into(counts, edges, record.partition, record.cursor_us)
                    for cell in sample:
                        if cell.partition == record.partition and (
                            cell.lo <= record.cursor_us < cell.hi
                        ):
                            ids[cell].add(record.id)
                start, held = b, 0
        return counts, ids

    # -- spot checks --------------------------------------------------------------------------

    def _sample(self, cells: Sequence[Cell], rows: dict[Cell, int]) -> list[Cell]:
        candidates = [c for c in cells if 0 < rows[c] <= SPOT_MAX_ROWS]
        return self.rng.sample(candidates, min(SPOT_WINDOWS, len(candidates)))

    def _spot_check(
        self,
        result: ValidationResult,
        sample: Sequence[Cell],
        harper_ids: dict[Cell, set[str]],
        counted: dict[Cell, int],
    ) -> None:
        """Ids both ways and fields, for the sampled cells. A cell whose source changed since
        the aggregate (rows arriving late right now) is skipped: that is the reconciler's job."""
        spot = result.spot
        for cell in sample:
            records = {}
            for page in self._read(cell.window, [cell.partition]):
                for record, partition in zip(page[0], page[1], strict=True):
                    if partition == cell.partition:
                        records[record["id"]] = record
            if len(records) != counted[cell]:
                log.info("spot check of %s skipped a cell that changed meanwhile", self.table.id)
                continue
            source_ids, in_harper = set(records), harper_ids.get(cell, set())
            spot.cells.append(cell)
            spot.windows.append({"partition": cell.partition, **_window_json(cell.window)})
            spot.source_ids += len(source_ids)
            spot.harper_ids += len(in_harper)
            missing, extra = sorted(source_ids - in_harper), sorted(in_harper - source_ids)
            spot.missing_in_harper += len(missing)
            spot.extra_in_harper += len(extra)
            spot.examples += [{"id": i, "problem": "missing in Harper"} for i in missing[:3]]
            spot.examples += [{"id": i, "problem": "not in the source"} for i in extra[:3]]
            both = sorted(source_ids & in_harper)
            chosen = self.rng.sample(both, min(SPOT_FIELDS, len(both)))
            self._compare_fields(spot, [records[i] for i in chosen])

    def _read(
        self, window: Window, parts: Sequence[int]
    ) -> Iterator[tuple[list[dict[str, Any]], list[int]]]:
        ids = WindowIds(self.table.primary_key)
        for page in self.source.read(window, parts, 10_000):
            for record in page.records:
                record["id"] = ids.id_for(record)
            yield page.records, page.partitions

    def _compare_fields(self, spot: SpotCheck, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        columns = [c.name for c in self.source.columns]
        stored = self.harper.search_by_id(
            self.cfg.harper.database,
            self.table.target_table,
            [str(r["id"]) for r in records],
            attributes=["id", *columns],
        )
        by_id = {str(row.get("id")): row for row in stored}
        for record in records:
            spot.compared += 1
            row = by_id.get(str(record["id"]), {})
            differing = [c for c in columns if row.get(c) != record.get(c)]
            if differing:
                spot.mismatched += 1
                spot.examples.append(
                    {"id": record["id"], "problem": "fields differ", "columns": differing[:5]}
                )

    # -- repair -------------------------------------------------------------------------------

    def _repair(self, result: ValidationResult) -> bool:
        """Re-sync every drifted or pending cell; True if there was anything to repair."""
        bad = {Cell(d.partition, d.lo, d.hi) for d in [*result.drift, *result.pending]}
        if result.spot.missing_in_harper or result.spot.mismatched:
            bad |= set(result.spot.cells)
        mirror = self.target if result.mirror else None
        for window, parts in by_window(bad).items():
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
        if bad:
            log.info(
                "repaired %s: %d windows, %d rows re-synced",
                self.table.id,
                len(result.repaired),
                result.repaired_rows,
            )
        return bool(bad)

    def _upsert(self, records: list[dict[str, Any]]) -> None:
        self.harper.upsert(self.cfg.harper.database, self.table.target_table, records)

    def _audit(self, result: ValidationResult) -> None:
        message = (
            f"{result.health}: {result.windows_checked} windows checked, "
            f"{result.drift_rows} rows drift in {len(result.drift)} windows, "
            f"{result.pending_rows} rows pending"
            + (f", {result.repaired_rows} rows re-synced" if result.repaired else "")
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


def _summary(result: ValidationResult) -> dict[str, Any]:
    return {
        "health": result.health,
        "windows_checked": result.windows_checked,
        "drift_windows": len(result.drift),
        "drift_rows": result.drift_rows,
        "pending_rows": result.pending_rows,
        "spot_missing": result.spot.missing_in_harper,
        "spot_mismatched": result.spot.mismatched,
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
        Validator(cfg, table, harper, bigquery_client, worker_id=worker_id).run(
            repair=repair, since_s=since_s
        )
        for table in wanted
    ]
