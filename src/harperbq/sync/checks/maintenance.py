"""The periodic work of one table on one worker: reconcile late rows, expire, validate, and
prune the audit trail.

Why here and not in the engine: each job has its own cadence, and none may block the others'
tables. The runner calls `Maintenance` on the engine's own thread after every caught-up pass,
so reconciliation (which corrects the engine's recorded counts) never races a window in flight.
The first reconciliation runs right after the first catch-up (late rows that arrived while no
sync ran are found at once, not one `reconcileInterval` later), then every `reconcileInterval`;
`sync run --once` reconciles before it exits (`final`).
Per table, the worker owning partition 0 (exactly one live worker, by the same rendezvous
assignment every worker computes) also expires old records (`retention`) and runs the scheduled
validation over all partitions; validation runs in a background thread because it may scan a
whole `lateness` of records, and touches no checkpoint.
`SyncAudit` is shared by every table, so one table's maintenance prunes it (`AuditPruner`): that
of the first configured table by id, on its partition-0 owner, at most once an hour.

Failures are logged, audited (kind `error`) and retried at the next due time; they never stop
the sync itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from harperbq.config import Config, TableConfig
from harperbq.memory import release_unused
from harperbq.sync.checks.reconcile import Reconciler, ReconcileReport
from harperbq.sync.checks.validate import ValidationResult, Validator
from harperbq.sync.table.assembly import ReadSide
from harperbq.sync.table.engine import TableEngine
from harperbq.sync.table.source import BigQuerySource
from harperbq.sync.table.target import TargetTable
from harperbq.times import MICROS, iso

log = logging.getLogger("harperbq.sync.maintenance")
RECONCILE_AUDIT = "reconcile"
"""`SyncAudit` kind of a reconciliation that re-synced windows, or ran in `--once`."""
AUDIT_PRUNE_INTERVAL_S = 3600.0
"""How often the audit trail is pruned: its retention is counted in days, so hourly is plenty."""
AUDIT_PRUNE_BATCH = 5_000
AUDIT_PRUNE_MAX_BATCHES = 20
"""At most 100 000 entries per run: a trail grown for months drains over a few runs, and no run
holds the table's thread for long."""


class AuditPruner:
    """Deletes `SyncAudit` entries older than `sync.auditRetention`, at most once an hour.

    Cluster-safe rather than exclusive: normally one worker in the cluster runs it (see the
    module note), but two workers pruning at once (nodes configured with different tables, or
    during a handover) only delete some old entries twice, which is harmless.
    """

    def __init__(
        self,
        prune: Callable[[str, int], int],
        retention_s: float,
        *,
        clock: Callable[[], float] = time.time,
        batch: int = AUDIT_PRUNE_BATCH,
        max_batches: int = AUDIT_PRUNE_MAX_BATCHES,
    ) -> None:
        self.prune = prune  # StateStore.prune_audit
        self.retention_s = retention_s
        self.clock = clock
        self.batch = batch
        self.max_batches = max_batches
        self.next_run = clock()  # right after the first catch-up
        self.pruned = 0

    def due(self, now: float | None = None) -> bool:
        return (self.clock() if now is None else now) >= self.next_run

    def run(self, stop: threading.Event) -> int:
        """Delete entries older than `now - retention` in bounded batches; returns how many."""
        now = self.clock()
        self.next_run = now + AUDIT_PRUNE_INTERVAL_S
        cutoff = iso(int((now - self.retention_s) * MICROS))
        deleted = 0
        for _ in range(self.max_batches):
            if stop.is_set():
                break
            n = self.prune(cutoff, self.batch)
            deleted += n
            if n < self.batch:
                break
        self.pruned += deleted
        if deleted:
            log.info("pruned %d audit entries older than %s", deleted, cutoff)
        return deleted


class Maintenance:
    """Due-time scheduler for one (table, worker); call it with the runner's stop event."""

    # Over the size caps on purpose: the periodic jobs' collaborators, by keyword, built once
    # in the service.
    def __init__(  # noqa: PLR0913
        self,
        cfg: Config,
        table: TableConfig,
        worker_id: str,
        reconciler: Reconciler,
        target: Callable[[], TargetTable],
        validator: Callable[[], Validator],
        is_leader: Callable[[], bool],
        audit: Callable[[str, dict[str, Any]], None],
        *,
        clock: Callable[[], float] = time.time,
        on_validation: Callable[[ValidationResult], None] | None = None,
        audit_pruner: AuditPruner | None = None,
    ) -> None:
        self.cfg = cfg
        self.table = table
        self.worker_id = worker_id
        self.reconciler = reconciler
        self.target = target
        self.validator = validator
        self.is_leader = is_leader
        self.audit = audit
        self.clock = clock
        self.on_validation = on_validation
        self.audit_pruner = audit_pruner  # this table's job only if it is the first table
        now = clock()
        self.next_reconcile = now  # right after the first catch-up
        self.next_retention = now
        self.next_validation = now + cfg.validation.interval_s
        self.last_reconcile: ReconcileReport | None = None
        self.last_validation: ValidationResult | None = None
        self.last_error: str | None = None
        self.expired_rows = 0
        self._validating: threading.Thread | None = None

    def __call__(self, stop: threading.Event) -> None:
        now = self.clock()
        if now >= self.next_reconcile:
            self.next_reconcile = now + self.table.reconcile_interval_s
            self._guard("reconcile", lambda: self._reconcile(stop))
            release_unused()
        leader = self._guard("leader", self.is_leader) is True
        if leader and self.table.retention_s is not None and now >= self.next_retention:
            self.next_retention = now + self.table.reconcile_interval_s
            self._guard("retention", lambda: self._expire(stop))
            release_unused()
        if leader and self.cfg.validation.enabled and now >= self.next_validation:
            self.next_validation = now + self.cfg.validation.interval_s
            self.start_validation()
        if leader:
            self._prune_audit(stop, now)

    def _prune_audit(self, stop: threading.Event, now: float) -> None:
        pruner = self.audit_pruner
        if pruner is not None and pruner.due(now):
            self._guard("audit retention", lambda: pruner.run(stop))

    def _guard(self, job: str, work: Callable[[], Any]) -> Any:
        try:
            result = work()
        except Exception as exc:
            self.last_error = f"{job}: {type(exc).__name__}: {exc}"[:2000]
            log.warning("table %s: %s", self.table.id, self.last_error)
            try:
                self.audit("error", {"reason": self.last_error, "job": job})
            except Exception:  # the audit trail itself may be what is failing
                log.exception("table %s: could not record the %s error", self.table.id, job)
            return None
        return result

    def reconcile_due(self, now: float | None = None) -> bool:
        """A reconciliation is due and has not run yet (the table is not fully caught up)."""
        return (self.clock() if now is None else now) >= self.next_reconcile

    def final(self, stop: threading.Event) -> None:
        """`--once`, after the catch-up: reconcile now (raises: a run that could not reconcile
        has not finished; the runner retries it), then expire and prune the audit trail if due.
        Scheduled validation is left to continuous runs (it would outlive the process)."""
        self.next_reconcile = self.clock() + self.table.reconcile_interval_s
        self._reconcile(stop, once=True)
        leader = self._guard("leader", self.is_leader) is True
        if leader and self.table.retention_s is not None and self.clock() >= self.next_retention:
            self.next_retention = self.clock() + self.table.reconcile_interval_s
            self._guard("retention", lambda: self._expire(stop))
        if leader:
            self._prune_audit(stop, self.clock())

    def _reconcile(self, stop: threading.Event, *, once: bool = False) -> None:
        report = self.reconciler.run(stop)
        self.last_reconcile = report
        if report.changed or once:
            # Late rows found, or a --once run (whose workers leave no heartbeat): a record
            # `sync status` reads as "last reconciled"; quiet continuous runs show in heartbeats.
            details = {"reason": RECONCILE_AUDIT, "once": once, **report.to_json()}
            self.audit(RECONCILE_AUDIT, details)

    def _expire(self, stop: threading.Event) -> None:
        retention = self.table.retention_s
        if retention is None:
            return
        cutoff = int((self.clock() - retention) * MICROS)
        deleted = self.target().expire(cutoff, stop=stop)
        self.expired_rows += deleted
        if deleted:
            log.info("table %s: expired %d records older than retention", self.table.id, deleted)

    def start_validation(self) -> bool:
        """Start a scheduled validation in the background unless one is running."""
        if self._validating is not None and self._validating.is_alive():
            return False
        self._validating = threading.Thread(
            target=self._validate, name=f"validate-{self.table.id}", daemon=True
        )
        self._validating.start()
        return True

    def _validate(self) -> None:
        result = self._guard("validation", lambda: self.validator().run())
        release_unused()
        if isinstance(result, ValidationResult):
            self.last_validation = result
            callback = self.on_validation
            if callback is not None:
                self._guard("validation callback", lambda: callback(result))


def build_maintenance(
    side: ReadSide[BigQuerySource],
    engine: TableEngine,
    *,
    owned: Callable[[], Sequence[int]],
    clock: Callable[[], float] = time.time,
    on_validation: Callable[[ValidationResult], None] | None = None,
    prune_audit: Callable[[str, int], int] | None = None,
) -> Maintenance:
    """Wire the periodic jobs of one (table, worker) from its read side: reconciliation and
    retention share the engine's source, sink and target; each scheduled validation gets the
    same wiring around a source of its own (it runs on another thread). `prune_audit`
    (`StateStore.prune_audit`) only for the table that prunes the shared audit trail."""
    reconciler = Reconciler(
        side.table, engine, side.source, side.sink.upsert, side.target, owned, clock
    )
    return Maintenance(
        side.config,
        side.table,
        side.worker_id,
        reconciler,
        side.target,
        validator=lambda: Validator(side.fresh()),
        is_leader=lambda: 0 in owned(),
        audit=side.sink.audit,
        clock=clock,
        on_validation=on_validation,
        audit_pruner=(
            AuditPruner(prune_audit, side.config.sync.audit_retention_s, clock=clock)
            if prune_audit is not None
            else None
        ),
    )
