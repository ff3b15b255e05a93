"""What a running sync service looks like right now, as plain data.

Read from the live engines and runners (not from Harper's state tables, which `sync status`
reads), so it is free to compute on every request and scrape: the control API's `/status` and
`/SyncControl` bodies and the metrics collector's samples all come from here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from harperbq import __version__, cost
from harperbq.metrics import ServiceSample, WorkerSample
from harperbq.phases import RunState
from harperbq.times import MICROS, iso_seconds

if TYPE_CHECKING:
    from harperbq.sync.service import SyncService, TableHandle

_ACTIVE = (RunState.STARTING, RunState.RUNNING, RunState.IDLE, RunState.ERROR)


def _checkpoint_s(handle: TableHandle) -> float | None:
    us = handle.engine.status.checkpoint_us
    return us / MICROS if us is not None else None


def _owned(handle: TableHandle) -> list[int]:
    try:
        return sorted(handle.engine.owned())
    except Exception:  # membership not readable yet: report none rather than fail the request
        return []


def running(handle: TableHandle) -> bool:
    """The runner's thread is up and not asked to stop."""
    return handle.runner.alive() and handle.runner.state in _ACTIVE


def shown_state(service: SyncService, handle: TableHandle) -> str:
    """The runner's state, or `stalled` while Harper does not answer (an active table waits on
    it or will at its next write: one Harper serves them all)."""
    if service.watchdog.stall is not None and running(handle):
        return str(RunState.STALLED)
    return str(handle.runner.state)


def _reconcile(handle: TableHandle, now: float) -> dict[str, Any] | None:
    m = handle.maintenance
    if m is None:
        return None
    stats = m.reconciler.stats
    return {
        "last_run": iso_seconds(stats.last_run_at),
        "next_due": iso_seconds(m.next_reconcile),
        "due": m.reconcile_due(now),
        "runs": stats.runs,
        "windows_resynced": stats.windows_resynced,
        "rows_reread": stats.rows_reread,
    }


def worker_status(service: SyncService, handle: TableHandle, now: float) -> dict[str, Any]:
    status = handle.engine.status
    checkpoint = _checkpoint_s(handle)
    stall = service.watchdog.stall
    reconcile = _reconcile(handle, now)
    return {
        "worker": handle.worker_id,
        "state": shown_state(service, handle),
        "running": running(handle),
        "phase": str(status.phase),
        "read": status.read_mode or None,
        "rows_deleted": status.rows_deleted,
        "checkpoint": iso_seconds(checkpoint),
        "lag_s": round(now - checkpoint, 3) if checkpoint is not None else None,
        # Caught up means late rows too: not while a due reconciliation has not run.
        "caught_up": status.caught_up and not (reconcile is not None and reconcile["due"]),
        "reconcile": reconcile,
        "partitions": _owned(handle),
        "rows_synced": status.rows_synced,
        "rows_written": service.metrics.rows_written(handle.table.id, handle.worker_id),
        "rows_skipped": status.rows_skipped,
        "rows_not_synced": dict(status.skipped_by_reason),  # by reason, reconciliation's too
        "values_coerced": status.values_coerced,
        "windows": status.windows,
        "last_success": iso_seconds(status.last_success),
        "last_error": stall.message(now) if stall is not None else status.last_error,
        "attempts": handle.runner.attempts,
        "bigquery": spent(handle),
    }


def spent(handle: TableHandle) -> dict[str, float | int]:
    """What this worker's BigQuery reads of the table billed since the process started."""
    source = handle.engine.source
    if hasattr(source, "spent"):
        return dict(source.spent())
    return cost.spent(0, 0, cost.Prices())


def service_status(service: SyncService, now: float | None = None) -> dict[str, Any]:
    """The `GET /status` body: node, cluster, and every table on every local worker."""
    now = time.time() if now is None else now
    live = service.membership.live()
    tables = []
    for table in service.tables:
        handles = [h for h in service.handles if h.table.id == table.id]
        tables.append(
            {
                "table": table.id,
                "source": table.source_id(service.config.bigquery.project_id),
                "target": f"{service.config.harper.database}.{table.target_table}",
                "running": any(running(h) for h in handles),
                "workers": [worker_status(service, h, now) for h in handles],
            }
        )
    return {
        "node": service.node,
        "version": __version__,
        "started_at": iso_seconds(service.started_at),
        "uptime_s": round(now - service.started_at, 3),
        "once": service.once,
        "running": any(running(h) for h in service.handles),
        "workers": list(service.membership.workers),
        "autoscale": _autoscale(service),
        "cluster": {
            "live_workers": live,
            "size": len(live),
            "nodes": sorted({w.rsplit("-", 1)[0] for w in live}),
        },
        "harper": {
            "stalled": service.watchdog.stall is not None,
            "oldest_request_s": round(service.watchdog.oldest_request_age_s(), 3),
        },
        "tables": tables,
    }


def sync_control_status(service: SyncService, now: float | None = None) -> dict[str, Any]:
    """The original plugin's `GET /SyncControl` body, `{status, uptime, version}`.

    `status` keeps the original keys (nodeId, clusterSize, running, phase, lastCheckpoint) and
    describes the table furthest behind; `status.tables` adds the same for every table (the
    original only ever reported its first). `nodeId` is this node's name (the original gave its
    index among the sorted workers), `clusterSize` the live workers in the cluster.
    """
    now = time.time() if now is None else now
    per_table: list[dict[str, Any]] = []
    behind: list[float] = []
    for table in service.tables:
        handles = [h for h in service.handles if h.table.id == table.id]
        if not handles:
            continue
        # The worker furthest behind speaks for the table (unsynced counts as furthest).
        worst = min(handles, key=lambda h: _checkpoint_s(h) or float("-inf"))
        status = worst.engine.status
        checkpoint = _checkpoint_s(worst)
        per_table.append(
            {
                "tableId": table.id,
                "running": any(running(h) for h in handles),
                "phase": str(status.phase),
                "lastCheckpoint": {
                    "checkpointId": f"{table.id}_{worst.worker_id}",
                    "tableId": table.id,
                    "nodeId": service.node,
                    "lastTimestamp": iso_seconds(checkpoint),
                    "recordsIngested": status.rows_synced,
                    "lastSyncTime": iso_seconds(status.last_success),
                    "phase": str(status.phase),
                    "batchSize": worst.engine.settings.policy.batch_size(status.phase),
                }
                if checkpoint is not None
                else None,
            }
        )
        behind.append(checkpoint if checkpoint is not None else float("-inf"))
    laggard = per_table[behind.index(min(behind))] if per_table else None
    return {
        "status": {
            "nodeId": service.node,
            "clusterSize": len(service.membership.live()),
            "running": any(running(h) for h in service.handles),
            "phase": laggard["phase"] if laggard else None,
            "lastCheckpoint": laggard["lastCheckpoint"] if laggard else None,
            "tables": per_table,
        },
        "uptime": round(now - service.started_at, 3),
        "version": __version__,
    }


def _autoscale(service: SyncService) -> dict[str, Any] | None:
    """`workers: auto`'s view for `GET /status`: bounds, wanted count, last change's reason."""
    scaler = service.autoscaler
    if scaler is None:
        return None
    return {
        "min": scaler.policy.min_workers,
        "max": scaler.policy.max_workers,
        "desired": scaler.desired,
        "running": len(service.membership.workers),
        "last_reason": scaler.last_reason,
    }


def metrics_sample(service: SyncService) -> ServiceSample:
    """What the metrics collector exposes at scrape time."""
    workers = []
    for h in service.handles:
        source = h.engine.source
        workers.append(
            WorkerSample(
                table=h.table.id,
                worker=h.worker_id,
                state=shown_state(service, h),
                phase=str(h.engine.status.phase),
                checkpoint_s=_checkpoint_s(h),
                last_success_s=h.engine.status.last_success,
                partitions=len(_owned(h)),
                bytes_billed=int(getattr(source, "bytes_billed", 0)),
                queries=int(getattr(source, "queries", 0)),
                storage_bytes=int(getattr(source, "storage_bytes_scanned", 0)),
                cost_dollars=float(spent(h)["estimated_cost_usd"]),
            )
        )
    return ServiceSample(
        workers=workers,
        cluster_workers=len(service.membership.live()),
        local_workers=len(service.membership.workers),
        started_at=service.started_at,
        desired_workers=service.autoscaler.desired if service.autoscaler else None,
        harper_oldest_request_s=service.watchdog.oldest_request_age_s(),
        harper_stalled=service.watchdog.stall is not None,
    )
