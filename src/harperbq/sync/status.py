"""Sync status from Harper's state tables alone, so it reads the same from any machine."""

import time
from datetime import UTC, datetime
from typing import Any

from harperbq.config import Config, TableConfig
from harperbq.harper.client import HarperClient
from harperbq.sync import health
from harperbq.sync.maintenance import RECONCILE_AUDIT
from harperbq.sync.state import StateStore, WorkerRecord
from harperbq.sync.windows import MICROS, parse_iso


def table_statuses(
    cfg: Config, harper: HarperClient, now: float | None = None
) -> list[dict[str, Any]]:
    """Per table: checkpoint (the oldest partition's), lag, phase, rows, last error."""
    now = time.time() if now is None else now
    state = StateStore(harper, cfg.harper.state_database)
    workers = [w for w in state.workers() if w.age_s() < cfg.sync.lease_s]
    out: list[dict[str, Any]] = []
    for table in cfg.tables:
        checkpoints = state.get_checkpoints(table.id)
        synced = [cp for cp in checkpoints.values() if cp.hi]
        oldest = min(synced, key=lambda cp: cp.hi or "") if synced else None
        lag = now - parse_iso(oldest.hi) / MICROS if oldest and oldest.hi else None
        last_update = max((cp.updated_at for cp in checkpoints.values()), default="")
        errors = state.recent_audit(table.id, kind="error", limit=1)
        last_error = errors[0].message if errors and errors[0].at > last_update else None
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
                "checkpoint": oldest.hi if oldest else None,
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
            }
        )
    return out


# Audit kinds of rows that were not synced as they are, newest entry of each shown in status.
_NOTICE_KINDS = ("skipped_row", "skipped_rows", "coerced_values", "beyond_lateness", "null_cursor")


def notices(state: StateStore, table_id: str) -> list[str]:
    """One line per kind of row the sync did not write as it is (newest audit entry of each):
    what happened, when, and where to look or what to do."""
    out: list[str] = []
    for kind in _NOTICE_KINDS:
        found = state.recent_audit(table_id, kind=kind, limit=1)
        if not found:
            continue
        entry, d = found[0], found[0].details
        if kind == "skipped_row":
            line = f"row skipped ({d.get('code', 'unconvertible')}: {d.get('reason')})"
        elif kind == "skipped_rows":
            line = f"{d.get('count')} rows skipped in window {d.get('window')} ({d.get('codes')})"
        elif kind == "coerced_values":
            line = f"{d.get('count')} NaN/±Inf values written as null in {d.get('window')}"
        elif kind == "beyond_lateness":
            line = (
                f"{d.get('count')} rows arrived later than lateness and were NOT synced; "
                f"fix: {d.get('fix')}"
            )
        else:
            line = f"{d.get('count')} source rows have a NULL {d.get('column')} (never synced)"
        out.append(f"{entry.at}: {line} [SyncAudit kind {kind}]")
    return out


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


def worker_statuses(
    cfg: Config, harper: HarperClient, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The cluster as the workers report it in `SyncWorker`: live or not, and per table the
    partitions owned, rows written and state."""
    now = now or datetime.now(UTC)
    state = StateStore(harper, cfg.harper.state_database)
    out = []
    for worker in state.workers():
        age = worker.age_s(now)
        out.append(
            {
                "worker": worker.worker_id,
                "node": worker.node,
                "live": age < cfg.sync.lease_s,
                "last_seen_s": round(age, 1),
                "tables": worker.info.get("tables", {}),
            }
        )
    return out
