"""Sync state kept in Harper: checkpoints, audit entries and worker heartbeats.

Why in Harper: Harper replicates these tables to every node, so any worker on any node can resume
a partition from its checkpoint and every node sees the same set of live workers; no local files
are needed to resume.

Tables (database `harperbq` by default, created on first use, declared attributes):
- `SyncCheckpoint`, id `<tableId>/<partition>/<workerId>`: one record per writer (a writer only
  writes its own), holding the exclusive end `hi` of the last window it fully wrote, a fencing
  `generation`, counters and the recent windows' row counts kept for late-row reconciliation.
  Readers merge a partition's records (`sync.checkpoint_merge`: greatest `(generation, hi)`),
  because Harper's last-write-wins per record would let a stale writer overwrite a newer shared
  record. Records `<tableId>/<partition>` from before per-writer records read as one more writer.
  Each also records the identity it belongs to (source table, target table, cursor, key; see
  `StateIdentity`), so a configuration that reuses a table id for other tables never resumes
  from another's progress, and a few ids it wrote last (`probe`), so a target table that was
  dropped or recreated empty is noticed (`sync.engine`).
- `SyncAudit`: skipped rows (reason, sample), errors, validation results; newest first by `at`;
  kept for `sync.auditRetention` (maintenance prunes it: `sync.maintenance.AuditPruner`).
- `SyncWorker`, id = worker id: heartbeats. `last_seen` is the writer's UTC clock; `beat` changes
  on every heartbeat, so a reader can also judge liveness by its own clock ("has `beat` changed
  within my lease?"), which is immune to clock skew between nodes.

Timestamps are ISO-8601 UTC strings with microseconds and `Z` (they sort as text in time order).
A `StateStore` is thread-safe: share one per process.
"""

from __future__ import annotations

import enum
import json
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict, TypeGuard

from harperbq.harper.client import HarperClient

if TYPE_CHECKING:  # annotations only
    from harperbq.config import TableConfig
from harperbq.harper.models import Attribute, Condition, Sort
from harperbq.harper.schema import ensure_table
from harperbq.sync.table.checkpoint_merge import merge_table
from harperbq.times import iso, parse_iso, parse_iso_datetime, utc_now_iso

STATE_DATABASE = "harperbq"
CHECKPOINT_TABLE = "SyncCheckpoint"
AUDIT_TABLE = "SyncAudit"
WORKER_TABLE = "SyncWorker"

MAX_DETAILS_CHARS = 16_384
MAX_MESSAGE_CHARS = 4_096


class RecentWindow(TypedDict):
    """Rows written for one closed window `[lo, hi)` (µs since the epoch, as every bound in
    memory; text only in the stored record): what late-row reconciliation compares."""

    lo: int
    hi: int
    count: int


CLOCK_EVENT = ""
CLOCK_COMMIT = "commit"


def _micros_field(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _micros_of(value: object) -> int:
    """A stored bound: ISO text (what `to_record` writes) or, tolerated, µs."""
    return value if _micros_field(value) else parse_iso(str(value))


def _stored_micros(value: object) -> int | None:
    return None if value is None or value == "" else _micros_of(value)


@dataclass(frozen=True)
class Checkpoint:
    """Progress of one (table, virtual partition). `hi` (µs since the epoch) is None before
    the first window. Bounds are integers here and ISO text in Harper (`to_record` and
    `from_record` are the one converter), so nothing in between parses them."""

    table_id: str
    partition: int
    hi: int | None = None
    rows_total: int = 0
    window_s: float = 0.0
    phase: str = "initial"
    batch_size: int = 0
    worker_id: str = ""
    updated_at: str = ""
    last_error: str | None = None
    recent: list[RecentWindow] = field(default_factory=list)
    source: str = ""
    target: str = ""
    cursor: str = ""
    key: str = ""
    probe: list[str] = field(default_factory=list)
    clock: str = ""
    """What `hi` counts: event time (the cursor column, "") or commit time (`commit`, the
    change feed's `_CHANGE_TIMESTAMP`)."""
    generation: int = 0
    """Fencing epoch: a deliberate restart that moves `hi` backwards writes the merged
    generation + 1, so merging by greatest `(generation, hi)` does not undo it."""

    def __post_init__(self) -> None:
        if not self.table_id or "/" in self.table_id:
            raise ValueError(f"table_id must be non-empty and without '/': {self.table_id!r}")
        if isinstance(self.partition, bool) or not isinstance(self.partition, int):
            raise TypeError("partition must be an int")
        if self.partition < 0:
            raise ValueError("partition must be >= 0")
        if self.hi is not None and not _micros_field(self.hi):
            raise TypeError(f"hi must be µs since the epoch (int) or None: {self.hi!r}")
        if self.rows_total < 0:
            raise ValueError("rows_total must be >= 0")
        if isinstance(self.generation, bool) or not isinstance(self.generation, int):
            raise TypeError("generation must be an int")
        if self.generation < 0:
            raise ValueError("generation must be >= 0")
        if "/" in self.worker_id:
            raise ValueError(f"worker_id must not contain '/': {self.worker_id!r}")
        for window in self.recent:
            if not (
                isinstance(window, Mapping)
                and all(_micros_field(window.get(k)) for k in ("lo", "hi"))
                and isinstance(window.get("count"), int)
            ):
                raise ValueError(f"recent windows need lo, hi (µs) and count (int): {window!r}")

    @property
    def id(self) -> str:
        """The record of this checkpoint's writer (`worker_id`); no writer: the legacy id."""
        return checkpoint_id(self.table_id, self.partition, self.worker_id)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "table_id": self.table_id,
            "partition": self.partition,
            "hi": None if self.hi is None else iso(self.hi),
            "rows_total": self.rows_total,
            "window_s": float(self.window_s),
            "phase": self.phase,
            "batch_size": self.batch_size,
            "worker_id": self.worker_id,
            "updated_at": self.updated_at,
            "last_error": self.last_error,
            "recent": [
                {"lo": iso(w["lo"]), "hi": iso(w["hi"]), "count": w["count"]} for w in self.recent
            ],
            "source": self.source,
            "target": self.target,
            "cursor": self.cursor,
            "key": self.key,
            "probe": list(self.probe),
            "clock": self.clock,
            "generation": self.generation,
        }

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Checkpoint:
        return cls(
            table_id=str(row["table_id"]),
            partition=int(row["partition"]),
            hi=_stored_micros(row.get("hi")),
            rows_total=int(row.get("rows_total") or 0),
            window_s=float(row.get("window_s") or 0.0),
            phase=str(row.get("phase") or ""),
            batch_size=int(row.get("batch_size") or 0),
            worker_id=str(row.get("worker_id") or ""),
            updated_at=str(row.get("updated_at") or ""),
            last_error=row.get("last_error"),
            recent=[
                RecentWindow(lo=_micros_of(w["lo"]), hi=_micros_of(w["hi"]), count=int(w["count"]))
                for w in row.get("recent") or []
            ],
            source=str(row.get("source") or ""),
            target=str(row.get("target") or ""),
            cursor=str(row.get("cursor") or ""),
            key=str(row.get("key") or ""),
            probe=[str(i) for i in row.get("probe") or []],
            clock=str(row.get("clock") or ""),
            generation=int(row.get("generation") or 0),
        )


@dataclass(frozen=True)
class StateIdentity:
    """What a table's checkpoints belong to: resuming them for other tables would skip rows.

    `source` is `project.dataset.table`, `target` `database.table`, `key` the primary key
    columns joined by commas (empty: no key).
    """

    source: str
    target: str
    cursor: str
    key: str

    @classmethod
    def of(cls, source: str, database: str, table: TableConfig) -> StateIdentity:
        """The identity of `table` read from `source` into `database` (the one place that
        spells it, for the sync and for `sync status`)."""
        return cls(
            source=source,
            target=f"{database}.{table.target_table}",
            cursor=table.cursor_column,
            key=",".join(table.primary_key),
        )

    def stamp(self, checkpoint: Checkpoint) -> Checkpoint:
        return replace(
            checkpoint, source=self.source, target=self.target, cursor=self.cursor, key=self.key
        )

    def differences(self, checkpoint: Checkpoint) -> list[tuple[str, str, str]]:
        """(field, stored, configured) for every field that differs; [] for state written
        before identities were recorded (all fields empty: adopted by the caller)."""
        stored = (checkpoint.source, checkpoint.target, checkpoint.cursor, checkpoint.key)
        if not any(stored):
            return []
        wanted = (self.source, self.target, self.cursor, self.key)
        names = ("source", "target", "cursor", "primary key")
        return [(n, s, w) for n, s, w in zip(names, stored, wanted, strict=True) if s != w]


class StateMismatchError(Exception):
    """Stored checkpoints belong to other tables than the configured ones: never resumed."""

    permanent = True  # retrying cannot help; the configuration or the state must change

    def __init__(self, table_id: str, differences: Sequence[tuple[str, str, str]]) -> None:
        self.table_id = table_id
        self.differences = list(differences)
        what = "; ".join(
            f"{n}: stored {s or '-'!r}, configured {w or '-'!r}" for n, s, w in differences
        )
        super().__init__(
            f"table {table_id}: its stored sync state belongs to another configuration ({what}). "
            f"Not resuming it. Give this table its own `id` in the config, or run "
            f"`harperbq sync reset --table {table_id}` to re-sync it from its start under the "
            "new settings (or use a separate `harper.stateDatabase`)."
        )


def checkpoint_id(table_id: str, partition: int, worker_id: str = "") -> str:
    """`<tableId>/<partition>/<workerId>`; without a worker the legacy shared id."""
    return f"{table_id}/{partition}/{worker_id}" if worker_id else f"{table_id}/{partition}"


class AuditKind(enum.StrEnum):
    SKIPPED_ROW = "skipped_row"
    ERROR = "error"
    VALIDATION = "validation"
    SCHEMA = "schema"
    RESET = "reset"
    STATE = "state"


@dataclass(frozen=True)
class AuditEntry:
    """One audit event. `id` and `at` are assigned when stored (`StateStore.audit`)."""

    kind: str
    table_id: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    worker_id: str | None = None
    at: str = ""
    id: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "kind": str(self.kind),
            "table_id": self.table_id,
            "message": self.message,
            "details": self.details,
            "worker_id": self.worker_id,
        }

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> AuditEntry:
        details = row.get("details")
        return cls(
            kind=str(row.get("kind") or ""),
            table_id=row.get("table_id"),
            message=str(row.get("message") or ""),
            details=dict(details) if isinstance(details, dict) else {},
            worker_id=row.get("worker_id"),
            at=str(row.get("at") or ""),
            id=str(row["id"]),
        )


@dataclass(frozen=True)
class WorkerRecord:
    """A worker's last heartbeat, as stored (apply the lease with `age_s` or by watching `beat`)."""

    worker_id: str
    node: str
    last_seen: str
    started_at: str
    beat: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def last_seen_at(self) -> datetime:
        return parse_iso_datetime(self.last_seen)

    def age_s(self, now: datetime | None = None) -> float:
        """Seconds since the heartbeat by the reader's clock (negative if clocks disagree):
        for display on one machine only; liveness never compares clocks (`sync.leases`)."""
        return ((now or datetime.now(UTC)) - self.last_seen_at).total_seconds()

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> WorkerRecord:
        info = row.get("info")
        return cls(
            worker_id=str(row["id"]),
            node=str(row.get("node") or ""),
            last_seen=str(row.get("last_seen") or ""),
            started_at=str(row.get("started_at") or ""),
            beat=int(row.get("beat") or 0),
            info=dict(info) if isinstance(info, dict) else {},
        )


def _a(name: str, kind: str | None, indexed: bool = False) -> Attribute:
    return Attribute(name, kind, indexed)


TABLES: dict[str, list[Attribute]] = {
    CHECKPOINT_TABLE: [
        Attribute("id", "String", is_primary_key=True),
        _a("table_id", "String", indexed=True),
        _a("partition", "Int"),
        _a("hi", "String"),
        _a("rows_total", "Long"),
        _a("window_s", "Float"),
        _a("phase", "String"),
        _a("batch_size", "Long"),
        _a("worker_id", "String"),
        _a("updated_at", "String"),
        _a("last_error", "String"),
        _a("recent", "Any"),
        _a("source", "String"),
        _a("target", "String"),
        _a("cursor", "String"),
        _a("key", "String"),
        _a("probe", "Any"),
        _a("clock", "String"),
        _a("generation", "Long"),
    ],
    AUDIT_TABLE: [
        Attribute("id", "String", is_primary_key=True),
        _a("at", "String", indexed=True),
        _a("kind", "String", indexed=True),
        _a("table_id", "String", indexed=True),
        _a("message", "String"),
        _a("details", "Any"),
        _a("worker_id", "String"),
    ],
    WORKER_TABLE: [
        Attribute("id", "String", is_primary_key=True),
        _a("node", "String"),
        _a("last_seen", "String"),
        _a("started_at", "String"),
        _a("beat", "Long"),
        _a("info", "Any"),
    ],
}


class StateStore:
    """Checkpoints, audit and heartbeats in Harper's state database; tables made on first use."""

    def __init__(self, client: HarperClient, database: str = STATE_DATABASE) -> None:
        self.client = client
        self.database = database
        self._lock = threading.Lock()
        self._ready = False
        self._beats: dict[str, int] = {}
        self._started: dict[str, str] = {}

    def ensure(self) -> None:
        """Create the state tables if missing (idempotent, safe when workers race)."""
        with self._lock:
            if self._ready:
                return
            for table, attributes in TABLES.items():
                ensure_table(
                    self.client, self.database, table, attributes, on_schema_change="evolve"
                )
            self._ready = True

    # -- checkpoints -----------------------------------------------------------------------------

    def get_checkpoints(self, table_id: str) -> dict[int, Checkpoint]:
        """A table's merged checkpoints, by partition: one query for all writers' records
        (legacy ones included), merged by `checkpoint_merge.merge_table`."""
        return merge_table(self.checkpoint_records(table_id))

    def checkpoint_records(self, table_id: str) -> list[Checkpoint]:
        """Every writer's stored checkpoint record of a table, unmerged (for tests, diagnosis)."""
        self.ensure()
        rows = self.client.search(
            self.database,
            CHECKPOINT_TABLE,
            [Condition("table_id", "equals", table_id)],
        )
        return [Checkpoint.from_record(r) for r in rows if r.get("table_id") == table_id]

    def put_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
        """Store checkpoints as their writers' records (`worker_id`) in one write, returning
        once Harper confirmed it (a window moves all its partitions). `updated_at` is stamped
        here and only here; the checkpoints returned are exactly the records Harper holds, so
        a caller's cache never disagrees with them."""
        self.ensure()
        now = utc_now_iso()
        stamped = [replace(cp, updated_at=now) for cp in checkpoints]
        if stamped:
            self.client.upsert(self.database, CHECKPOINT_TABLE, [cp.to_record() for cp in stamped])
        return stamped

    def delete_checkpoints(self, table_id: str) -> int:
        """Forget a table's progress (for a reset): every writer's records, legacy ones too;
        returns how many records were removed."""
        self.ensure()
        rows = self.client.search(
            self.database,
            CHECKPOINT_TABLE,
            [Condition("table_id", "equals", table_id)],
            attributes=["id", "table_id"],
        )
        ids = [str(r["id"]) for r in rows if r.get("table_id") == table_id and r.get("id")]
        return self.client.delete(self.database, CHECKPOINT_TABLE, ids) if ids else 0

    # -- audit -----------------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> AuditEntry:
        """Store an audit entry with a fresh unique id and timestamp; returns what was stored.

        Oversized `details` (more than 16 KiB of JSON) are replaced by a truncated copy.
        """
        self.ensure()
        at = utc_now_iso()
        stored = replace(
            entry,
            at=at,
            id=f"{at}-{secrets.token_hex(8)}",
            message=entry.message[:MAX_MESSAGE_CHARS],
            details=_bounded(entry.details),
        )
        self.client.upsert(self.database, AUDIT_TABLE, [stored.to_record()])
        return stored

    def recent_audit(
        self, table_id: str | None = None, *, kind: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Newest audit entries first, optionally of one table and/or one kind."""
        self.ensure()
        conditions = []
        if table_id is not None:
            conditions.append(Condition("table_id", "equals", table_id))
        if kind is not None:
            conditions.append(Condition("kind", "equals", str(kind)))
        if not conditions:
            conditions.append(Condition("at", "greater_than_equal", ""))
        rows = self.client.search(
            self.database, AUDIT_TABLE, conditions, limit=limit, sort=Sort("at", descending=True)
        )
        return [AuditEntry.from_record(r) for r in rows if r.get("id")]

    def prune_audit(self, before: str, limit: int | None = None) -> int:
        """Delete audit entries older than `before` (ISO UTC), at most `limit` of them (a
        bounded batch: see `sync.maintenance.AuditPruner`); returns how many."""
        self.ensure()
        parse_iso_datetime(before)
        rows = self.client.search(
            self.database,
            AUDIT_TABLE,
            [Condition("at", "less_than", before)],
            attributes=["id"],
            limit=limit,
        )
        ids = [str(r["id"]) for r in rows if r.get("id")]
        return self.client.delete(self.database, AUDIT_TABLE, ids) if ids else 0

    # -- workers ---------------------------------------------------------------------------------

    def heartbeat(self, worker_id: str, node: str, info: Mapping[str, Any]) -> WorkerRecord:
        """Record that `worker_id` on `node` is alive now; returns the stored record."""
        self.ensure()
        now = utc_now_iso()
        with self._lock:
            beat = self._beats.get(worker_id, 0) + 1
            self._beats[worker_id] = beat
            started = self._started.setdefault(worker_id, now)
        record = WorkerRecord(worker_id, node, now, started, beat, dict(info))
        self.client.upsert(
            self.database,
            WORKER_TABLE,
            [
                {
                    "id": worker_id,
                    "node": node,
                    "last_seen": now,
                    "started_at": started,
                    "beat": beat,
                    "info": record.info,
                }
            ],
        )
        return record

    def workers(self) -> list[WorkerRecord]:
        """Every worker that ever heartbeated (and was not removed), by id; leases are the
        caller's decision."""
        self.ensure()
        rows = self.client.search(
            self.database, WORKER_TABLE, [Condition("id", "greater_than_equal", "")]
        )
        return sorted(
            (WorkerRecord.from_record(r) for r in rows if r.get("id")), key=lambda w: w.worker_id
        )

    def remove_worker(self, worker_id: str) -> None:
        """Drop a worker's heartbeat (on clean shutdown, so others take over at once)."""
        self.ensure()
        self.client.delete(self.database, WORKER_TABLE, [worker_id])
        with self._lock:
            self._beats.pop(worker_id, None)
            self._started.pop(worker_id, None)


def _bounded(details: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe copy (non-JSON values as text, NaN/Infinity as strings), at most 16 KiB."""
    text = json.dumps(details, default=str)
    if len(text) <= MAX_DETAILS_CHARS:
        return dict(json.loads(text, parse_constant=str))
    return {"truncated": True, "json_prefix": text[:MAX_DETAILS_CHARS]}
