"""Sync status from Harper's state tables alone, so it reads the same from any machine."""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harperbq import cost
from harperbq.config import Config, TableConfig
from harperbq.harper.client import HarperClient
from harperbq.sync import health
from harperbq.sync.checks.maintenance import RECONCILE_AUDIT
from harperbq.sync.cluster.leases import Leases
from harperbq.sync.state import (
    CLOCK_COMMIT,
    AuditEntry,
    AuditKind,
    Checkpoint,
    StateIdentity,
    StateMismatchError,
    StateStore,
    WorkerRecord,
)
from harperbq.times import MICROS, iso, parse_iso


@dataclass(frozen=True)
class Liveness:
    """Which workers a one-shot reader takes for live, from what, and how it judged."""

    records: list[WorkerRecord]
    live: list[str]
    how: str

    def live_records(self) -> list[WorkerRecord]:
        return [w for w in self.records if w.worker_id in self.live]


def judge_liveness(
    cfg: Config,
    state: StateStore,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    wait: Callable[[float], None] = time.sleep,
) -> Liveness:
    """Watch the workers' beat counters for up to two heartbeat intervals (by this reader's
    monotonic clock; wall clocks are never compared, `sync.leases`), stopping once every one
    changed. Live: each worker seen beating, and whoever those running workers publish as
    live in their heartbeat (`info.live`: their own leases, so a worker whose record did not
    change during the watch but still beats for them is not taken for dead)."""
    leases = Leases(cfg.sync.lease_s)
    watch_s = 2 * cfg.sync.heartbeat_interval_s
    started = monotonic()
    records = state.workers()
    leases.observe([(w.worker_id, w.beat) for w in records], started)
    while records and monotonic() - started < watch_s:
        if set(leases.changed_since_first_sight()) >= {w.worker_id for w in records}:
            break
        wait(min(0.5, cfg.sync.heartbeat_interval_s / 4))
        records = state.workers()
        leases.observe([(w.worker_id, w.beat) for w in records], monotonic())
    watched = monotonic() - started
    ids = {w.worker_id for w in records}
    beating = set(leases.changed_since_first_sight()) & ids
    published: set[str] = set()
    for w in records:
        if w.worker_id in beating:
            named = w.info.get("live")
            published |= {str(x) for x in named} if isinstance(named, list) else set()
    live = sorted(beating | (published & ids))
    how = (
        f"beat counters watched {watched:.1f} s by this reader's monotonic clock "
        f"({len(beating)} of {len(ids)} seen beating), plus the live sets the beating workers "
        "publish; wall clocks are not compared"
    )
    return Liveness(records, live, how)


def table_statuses(
    cfg: Config,
    harper: HarperClient,
    now: float | None = None,
    liveness: Liveness | None = None,
) -> list[dict[str, Any]]:
    """Per table: checkpoint (the oldest partition's), lag, phase, rows, last error."""
    now = time.time() if now is None else now
    state = StateStore(harper, cfg.harper.state_database)
    workers = (liveness or judge_liveness(cfg, state)).live_records()
    out: list[dict[str, Any]] = []
    for table in cfg.tables:
        checkpoints = state.get_checkpoints(table.id)
        synced = [cp for cp in checkpoints.values() if cp.hi is not None]
        oldest = min(synced, key=lambda cp: cp.hi or 0) if synced else None
        oldest_hi = oldest.hi if oldest is not None else None
        lag = now - oldest_hi / MICROS if oldest_hi is not None else None
        last_update = max((cp.updated_at for cp in checkpoints.values()), default="")
        errors = state.recent_audit(table.id, kind="error", limit=1)
        last_error = errors[0].message if errors and errors[0].at > last_update else None
        mismatch = _state_mismatch(cfg, table, checkpoints.values())
        if mismatch is not None:
            last_error = mismatch
        progress = health.progress(
            checkpoints,
            now=now,
            settle_s=table.settle_s,
            lagging_after_s=table.steady_threshold_s,
            stalled_after_s=cfg.validation.stalled_after_s,
        )
        validation = health.latest_validation(state, table.id)
        drift = bool(validation and validation.get("health") == health.DRIFT)
        out.append(
            {
                "table": table.id,
                "target": f"{cfg.harper.database}.{table.target_table}",
                "checkpoint": iso(oldest_hi) if oldest_hi is not None else None,
                "lag_s": round(lag, 3) if lag is not None else None,
                "phase": oldest.phase if oldest else None,
                "rows_synced": sum(cp.rows_total for cp in checkpoints.values()),
                "partitions": table.partitions,
                "partitions_synced": len(synced),
                "workers": sorted({cp.worker_id for cp in checkpoints.values() if cp.worker_id}),
                "updated_at": last_update or None,
                "last_error": last_error,
                # healthy | lagging | stalled | drift (stalled and lagging are judged now,
                # drift by the newest validation); unknown before the first checkpoint.
                "health": health.verdict(progress, drift) if synced else health.UNKNOWN,
                "behind_s": None if progress.behind_s is None else round(progress.behind_s, 3),
                "stalled_partitions": progress.stalled_partitions,
                "validation": validation,
                "notices": notices(state, table.id),
                "reconcile": _reconciled(state, table, workers, now) if synced else None,
                "bigquery": _spent(cfg, table.id, workers),
                "read": read_mode(checkpoints, table.id, workers),
                "state_mismatch": mismatch is not None,
            }
        )
    return out


# Audit kinds shown in status, newest entry of each: rows not synced as they are, then the
# sync's own interventions (target re-synced, schema evolved, state adopted).
_NOTICE_KINDS = (
    "skipped_row",
    "skipped_rows",
    "coerced_values",
    "beyond_lateness",
    "null_cursor",
    str(AuditKind.RESET),
    str(AuditKind.SCHEMA),
    str(AuditKind.STATE),
)


def notices(state: StateStore, table_id: str) -> list[dict[str, str]]:
    """The newest audit entry of each notice kind: what happened, when, and where to look or
    what to do, so `sync status` says why rows are missing or a table re-synced."""
    out: list[dict[str, str]] = []
    for kind in _NOTICE_KINDS:
        found = state.recent_audit(table_id, kind=kind, limit=1)
        if found:
            out.append({"at": found[0].at, "kind": kind, "message": _notice_line(found[0])})
    return out


def _notice_line(entry: AuditEntry) -> str:
    d = entry.details
    if entry.kind == "skipped_row":
        return f"row skipped ({d.get('code', 'unconvertible')}: {d.get('reason')})"
    if entry.kind == "skipped_rows":
        return f"{d.get('count')} rows skipped in window {d.get('window')} ({d.get('codes')})"
    if entry.kind == "coerced_values":
        return f"{d.get('count')} NaN/±Inf values written as null in {d.get('window')}"
    if entry.kind == "beyond_lateness":
        return (
            f"{d.get('count')} rows arrived later than lateness and were NOT synced; "
            f"fix: {d.get('fix')}"
        )
    if entry.kind == "null_cursor":
        return f"{d.get('count')} source rows have a NULL {d.get('column')} (never synced)"
    return entry.message


def read_mode(
    checkpoints: Mapping[int, Checkpoint], table_id: str, live: list[WorkerRecord]
) -> str | None:
    """snapshot | following | event-time: what the live workers report (a snapshot while any
    copies one), else what the stored checkpoints count (None before the first)."""
    infos = [w.info.get("tables", {}).get(table_id) for w in live]
    modes = {str(i["read"]) for i in infos if isinstance(i, dict) and i.get("read")}
    if modes:
        return "snapshot" if "snapshot" in modes else sorted(modes)[0]
    clocks = {cp.clock for cp in checkpoints.values() if cp.hi is not None}
    if not clocks:
        return None
    return "following" if clocks == {CLOCK_COMMIT} else "event-time"


def _spent(cfg: Config, table_id: str, live: list[WorkerRecord]) -> dict[str, float | int]:
    """What the live workers' reads of the table billed since each started (heartbeats)."""
    infos = [w.info.get("tables", {}).get(table_id) for w in live]
    spent = [i["bigquery"] for i in infos if isinstance(i, dict) and i.get("bigquery")]
    billed = sum(int(s.get("bytes_billed", 0)) for s in spent)
    scanned = sum(int(s.get("storage_bytes_scanned", 0)) for s in spent)
    return cost.spent(billed, scanned, cfg.bigquery.prices)


def _reconciled(
    state: StateStore, table: TableConfig, live: list[WorkerRecord], now: float
) -> dict[str, Any]:
    """When late rows were last looked for: by the live workers' heartbeats (the oldest of
    them, None if one has not yet), else by the newest reconcile audit entry (`--once`)."""
    infos = [w.info.get("tables", {}).get(table.id) for w in live]
    times = [i.get("reconciled_at") for i in infos if isinstance(i, dict)]
    if times:
        at = None if None in times else min(str(t) for t in times)
    else:
        entries = state.recent_audit(table.id, kind=RECONCILE_AUDIT, limit=1)
        at = entries[0].at if entries else None
    age = now - parse_iso(at) / MICROS if at else None
    return {
        "at": at,
        "age_s": None if age is None else round(age, 1),
        # Live workers run it every reconcileInterval (and right after their first catch-up).
        "due": bool(times) and (age is None or age > 2 * table.reconcile_interval_s),
    }


def _state_mismatch(cfg: Config, table: TableConfig, checkpoints: Any) -> str | None:
    """The error a sync would stop with because the stored state belongs to other tables."""
    project = table.project_id or cfg.bigquery.project_id
    source = f"{project}.{table.dataset}.{table.table}" if project else ""
    wanted = StateIdentity.of(source, cfg.harper.database, table)
    for cp in checkpoints:
        differences = [
            d
            for d in wanted.differences(cp)
            # without a configured project the client's default decides: compare the rest
            if not (
                d[0] == "source"
                and not project
                and d[1].endswith(f".{table.dataset}.{table.table}")
            )
        ]
        if differences:
            return str(StateMismatchError(table.id, differences))
    return None


def worker_statuses(
    cfg: Config, harper: HarperClient, liveness: Liveness | None = None
) -> list[dict[str, Any]]:
    """The cluster as the workers report it in `SyncWorker`: live or not (`judge_liveness`),
    its heartbeat count, and per table the partitions owned, rows written and state."""
    state = StateStore(harper, cfg.harper.state_database)
    judged = liveness or judge_liveness(cfg, state)
    return [
        {
            "worker": worker.worker_id,
            "node": worker.node,
            "live": worker.worker_id in judged.live,
            "beat": worker.beat,
            # The writer's own clock: shown, never compared with ours.
            "last_seen": worker.last_seen,
            "tables": worker.info.get("tables", {}),
        }
        for worker in judged.records
    ]
