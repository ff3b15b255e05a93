"""The Harper side of one table for the engine: confirmed upserts, checkpoints, audit entries."""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harperbq.harper.client import HarperClient
from harperbq.sync.state import (
    AuditEntry,
    AuditKind,
    Checkpoint,
    StateIdentity,
    StateMismatchError,
    StateStore,
)

log = logging.getLogger("harperbq.sync.sink")


@dataclass
class HarperSink:
    client: HarperClient
    state: StateStore
    database: str
    table: str
    table_id: str
    worker_id: str
    chunk_rows: int = 5_000
    on_write: Callable[[int, float], None] | None = None
    """Told (rows, seconds) after every confirmed upsert: the write-duration metric."""
    identity: StateIdentity | None = None
    """What this table's checkpoints must belong to (checked on load, stamped on save)."""

    def upsert(self, records: list[dict[str, Any]]) -> None:
        """Returns only when Harper confirmed every id (the client raises otherwise)."""
        started = time.monotonic()
        self.client.upsert(self.database, self.table, records, chunk_rows=self.chunk_rows)
        if self.on_write is not None:
            self.on_write(len(records), time.monotonic() - started)

    def delete(self, ids: Sequence[str]) -> None:
        """Confirmed deletes (the change feed's `DELETE`s); an id already gone is fine."""
        if ids:
            self.client.delete(self.database, self.table, list(ids), chunk_rows=self.chunk_rows)

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids the target table holds (one lookup by primary key)."""
        rows = self.client.search_by_id(self.database, self.table, list(ids), attributes=["id"])
        return {str(r["id"]) for r in rows if r.get("id") is not None}

    def load_checkpoints(self) -> dict[int, Checkpoint]:
        """The table's checkpoints; raises `StateMismatchError` when they belong to another
        source, target, cursor or key. State from before identities were kept is adopted."""
        checkpoints = self.state.get_checkpoints(self.table_id)
        if self.identity is None:
            return checkpoints
        identity = self.identity
        for cp in checkpoints.values():
            differences = identity.differences(cp)
            if differences:
                raise StateMismatchError(self.table_id, differences)
        legacy = [cp for cp in checkpoints.values() if not cp.source]
        if legacy:
            stamped = [replace(identity.stamp(cp), worker_id=self.worker_id) for cp in legacy]
            self.state.put_checkpoints(stamped)
            checkpoints.update({cp.partition: cp for cp in stamped})
            log.info(
                "table %s: adopted %d checkpoints written without identity as %s -> %s",
                self.table_id,
                len(stamped),
                identity.source,
                identity.target,
            )
            self.audit(
                str(AuditKind.STATE),
                {
                    "reason": "adopted checkpoints written without identity",
                    "partitions": sorted(cp.partition for cp in stamped),
                    "source": identity.source,
                    "target": identity.target,
                },
            )
        return checkpoints

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Store them as this worker's own records (a writer never writes another's record:
        see `sync.checkpoint_merge`), stamped with the table's identity."""
        checkpoints = [replace(cp, worker_id=self.worker_id) for cp in checkpoints]
        if self.identity is not None:
            checkpoints = [self.identity.stamp(cp) for cp in checkpoints]
        self.state.put_checkpoints(checkpoints)

    def audit(self, kind: str, detail: dict[str, Any]) -> None:
        self.state.audit(
            AuditEntry(
                kind=kind,
                table_id=self.table_id,
                message=str(detail.get("reason", kind)),
                details=detail,
                worker_id=self.worker_id,
            )
        )
