"""The Harper side of one table for the engine: confirmed upserts, checkpoints, audit entries."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harperbq.harper.client import HarperClient
from harperbq.sync.state import AuditEntry, Checkpoint, StateStore


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

    def upsert(self, records: list[dict[str, Any]]) -> None:
        """Returns only when Harper confirmed every id (the client raises otherwise)."""
        started = time.monotonic()
        self.client.upsert(self.database, self.table, records, chunk_rows=self.chunk_rows)
        if self.on_write is not None:
            self.on_write(len(records), time.monotonic() - started)

    def load_checkpoints(self) -> dict[int, Checkpoint]:
        return self.state.get_checkpoints(self.table_id)

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
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
