"""One word per table for operators: healthy, lagging, stalled or drift, with the numbers behind it.

Why these rules: the original called a table stalled when its last synced timestamp stopped
moving, so an idle table (nothing new at the source) raised alarms. Here the engine moves a
checkpoint through empty windows too, so progress is measured against `now - settle`:
- stalled: some partition is behind `now - settle` by more than `stalledAfter` AND its
  checkpoint has not been written for `stalledAfter` (nobody is making progress on it);
- lagging: behind by more than `steadyThreshold` (the phase boundary) but progressing;
- drift: the last validation found records missing from Harper, changed or moved (under
  another cursor or partition) in closed windows, or, with `deletes: mirror`, foreign ones;
- healthy: none of these. Precedence: stalled > drift > lagging > healthy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harperbq.sync.state import AuditKind, Checkpoint, StateStore
from harperbq.times import MICROS, iso, parse_iso

HEALTHY = "healthy"
LAGGING = "lagging"
STALLED = "stalled"
DRIFT = "drift"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Progress:
    """How far a table's checkpoints are behind `now - settle`, and whether they move."""

    checkpoint: str | None = None
    """The oldest partition checkpoint (`hi`), ISO UTC."""
    behind_s: float | None = None
    """Seconds the oldest checkpoint is behind `now - settle` (never negative)."""
    last_progress_s: float | None = None
    """Seconds since the least recently written checkpoint was written."""
    partitions_synced: int = 0
    stalled_partitions: list[int] = field(default_factory=list)
    lagging: bool = False

    @property
    def stalled(self) -> bool:
        return bool(self.stalled_partitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "behind_s": None if self.behind_s is None else round(self.behind_s, 3),
            "last_progress_s": (
                None if self.last_progress_s is None else round(self.last_progress_s, 3)
            ),
            "partitions_synced": self.partitions_synced,
            "stalled_partitions": self.stalled_partitions,
            "lagging": self.lagging,
        }


def progress(
    checkpoints: Mapping[int, Checkpoint],
    *,
    now: float,
    settle_s: float,
    lagging_after_s: float,
    stalled_after_s: float,
) -> Progress:
    """Progress from stored checkpoints alone (reads the same from any machine)."""
    synced = [(cp, cp.hi) for cp in checkpoints.values() if cp.hi is not None]
    if not synced:
        return Progress()
    target = now - settle_s
    behind: dict[int, float] = {}
    idle: dict[int, float] = {}
    for cp, hi in synced:
        behind[cp.partition] = max(0.0, target - hi / MICROS)
        written = parse_iso(cp.updated_at) / MICROS if cp.updated_at else None
        idle[cp.partition] = float("inf") if written is None else max(0.0, now - written)
    oldest = min(hi for _, hi in synced)
    stalled = sorted(p for p in behind if behind[p] > stalled_after_s and idle[p] > stalled_after_s)
    worst = max(behind.values())
    last = max(idle.values())
    return Progress(
        checkpoint=iso(oldest),
        behind_s=worst,
        last_progress_s=None if last == float("inf") else last,
        partitions_synced=len(synced),
        stalled_partitions=stalled,
        lagging=worst > lagging_after_s,
    )


def verdict(state: Progress, drift: bool) -> str:
    if state.stalled:
        return STALLED
    if drift:
        return DRIFT
    if state.lagging:
        return LAGGING
    return HEALTHY


def latest_validation(store: StateStore, table_id: str) -> dict[str, Any] | None:
    """The newest validation audit entry's summary for a table, or None."""
    entries = store.recent_audit(table_id, kind=AuditKind.VALIDATION, limit=1)
    if not entries:
        return None
    details = entries[0].details
    keys = (
        "health",
        "windows_checked",
        "drift_rows",
        "missing_rows",
        "extra_rows",
        "foreign_rows",
        "changed_rows",
        "moved_rows",
        "pending_rows",
        "drift_windows",
        "repaired_rows",
        "error",
    )
    summary: dict[str, Any] = {"at": entries[0].at}
    summary.update({k: details.get(k) for k in keys if k in details})
    after = details.get("after")
    if isinstance(after, dict) and "health" in after:
        # A repair run: what it found is history; the table's state is what it left.
        summary["found"] = summary.get("health")
        summary["health"] = after["health"]
        summary["drift_rows"] = after.get("drift_rows")
    drift = details.get("drift")
    if isinstance(drift, list):
        summary["drift"] = drift[:10]
    return summary
