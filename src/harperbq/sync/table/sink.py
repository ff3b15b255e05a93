"""The Harper side of one table for the engine: confirmed upserts, checkpoints, audit entries."""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from harperbq.harper.client import HarperClient
from harperbq.harper.models import PreparedUpsert
from harperbq.harper.replication import (
    Confirmations,
    ReplicationConfigError,
    ReplicationUnconfirmed,
)
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
    confirmations: Confirmations | None = None
    """How many peers must confirm each data write (None: none, e.g. single-node tests)."""
    replication_timeout_s: float = 60.0
    on_replication: Callable[[float | None, str | None], None] | None = None
    """Told (seconds, None) after every peer-confirmed write, (None, reason) when unconfirmed."""

    def prepare(self, records: list[dict[str, Any]]) -> PreparedUpsert | None:
        """The upsert's bodies encoded ahead, on the reader's thread, with the confirmation
        count in force now (a write under another count encodes afresh)."""
        count = self.confirmations.count() if self.confirmations is not None else 0
        return self.client.prepare_upsert(
            self.database,
            self.table,
            records,
            chunk_rows=self.chunk_rows,
            replicated_confirmation=count,
        )

    def upsert(self, records: list[dict[str, Any]], prepared: PreparedUpsert | None = None) -> None:
        """Returns only when Harper confirmed every id (the client raises otherwise) and, with
        confirmations, when that many peers hold them too: only then may the checkpoint move.
        `prepared`: `prepare(records)`'s bodies, sent when they still fit."""
        started = time.monotonic()
        self._confirmed(
            lambda count: self.client.upsert(
                self.database,
                self.table,
                records,
                chunk_rows=self.chunk_rows,
                replicated_confirmation=count,
                timeout=self.replication_timeout_s if count else None,
                prepared=prepared,
            )
        )
        if self.on_write is not None:
            self.on_write(len(records), time.monotonic() - started)

    def delete(self, ids: Sequence[str]) -> None:
        """Confirmed deletes (the change feed's `DELETE`s); an id already gone is fine."""
        if ids:
            self._confirmed(
                lambda count: self.client.delete(
                    self.database,
                    self.table,
                    list(ids),
                    chunk_rows=self.chunk_rows,
                    replicated_confirmation=count,
                    timeout=self.replication_timeout_s if count else None,
                )
            )

    def _confirmed(self, write: Callable[[int], object]) -> None:
        """`write(count)` with the confirmation count in force. After Harper's refusal of the
        count, `auto` re-decides at once and, if that lowers it, writes again once."""
        count = self.confirmations.count() if self.confirmations is not None else 0
        started = time.monotonic()
        try:
            write(count)
        except ReplicationUnconfirmed as exc:
            self._observe(None, exc.reason)
            raise
        except ReplicationConfigError:
            self._observe(None, "refused")
            if self.confirmations is None or not self.confirmations.auto:
                raise
            lower = self.confirmations.refused().count
            if lower >= count:
                raise
            log.warning(
                "table %s: Harper refused %d confirmation(s); writing again with %d",
                self.table_id,
                count,
                lower,
            )
            count, started = lower, time.monotonic()
            write(count)
        if count:
            self._observe(time.monotonic() - started, None)

    def _observe(self, seconds: float | None, reason: str | None) -> None:
        if self.on_replication is not None:
            self.on_replication(seconds, reason)

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids the target table holds (one lookup by primary key)."""
        rows = self.client.search_by_id(self.database, self.table, list(ids), attributes=["id"])
        return {str(r["id"]) for r in rows if r.get("id") is not None}

    def get_checkpoints(self) -> dict[int, Checkpoint]:
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
            stamped = self.state.put_checkpoints(stamped)
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

    def put_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
        """Store them as this worker's own records (a writer never writes another's record:
        see `checkpoint_merge.py`), stamped with the table's identity; returns what was stored."""
        checkpoints = [replace(cp, worker_id=self.worker_id) for cp in checkpoints]
        if self.identity is not None:
            checkpoints = [self.identity.stamp(cp) for cp in checkpoints]
        return self.state.put_checkpoints(checkpoints)

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
