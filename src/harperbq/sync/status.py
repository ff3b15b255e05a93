"""Sync status from Harper's state tables alone, so it reads the same from any machine."""

import time
from datetime import UTC, datetime
from typing import Any

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync import health
from harperbq.sync.state import AuditKind, StateIdentity, StateMismatchError, StateStore
from harperbq.sync.windows import MICROS, parse_iso


def table_statuses(
    cfg: Config, harper: HarperClient, now: float | None = None
) -> list[dict[str, Any]]:
    """Per table: checkpoint (the oldest partition's), lag, phase, rows, last error."""
    now = time.time() if now is None else now
    state = StateStore(harper, cfg.harper.state_database)
    out: list[dict[str, Any]] = []
    for table in cfg.tables:
        checkpoints = state.get_checkpoints(table.id)
        synced = [cp for cp in checkpoints.values() if cp.hi]
        oldest = min(synced, key=lambda cp: cp.hi or "") if synced else None
        lag = now - parse_iso(oldest.hi) / MICROS if oldest and oldest.hi else None
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
                "state_mismatch": mismatch is not None,
                "notices": _notices(state, table.id),
            }
        )
    return out


def _state_mismatch(cfg: Config, table: Any, checkpoints: Any) -> str | None:
    """The error a sync would stop with because the stored state belongs to other tables."""
    project = table.project or cfg.bigquery.project_id
    wanted = StateIdentity(
        source=f"{project}.{table.dataset}.{table.table}" if project else "",
        target=f"{cfg.harper.database}.{table.target_table}",
        cursor=table.cursor_column,
        key=",".join(table.primary_key),
    )
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


def _notices(state: StateStore, table_id: str) -> list[dict[str, str]]:
    """The newest automatic intervention of each kind (target re-synced, schema evolved,
    state adopted), so `sync status` says why a table re-synced or changed shape."""
    out = []
    for kind in (AuditKind.RESET, AuditKind.SCHEMA, AuditKind.STATE):
        entries = state.recent_audit(table_id, kind=str(kind), limit=1)
        if entries:
            out.append({"at": entries[0].at, "kind": str(kind), "message": entries[0].message})
    return out


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
