"""Typed values the Harper client takes and returns (attributes, tables, topology, results).

Harper's JSON shapes vary between operations and versions; parsing them once, here, keeps the rest
of the code on plain, typed fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Harper's attribute types as the Operations API reports them. `None` (no type) and "Any" both
# mean "untyped": Harper accepts every JSON value.
UNTYPED: frozenset[str | None] = frozenset({None, "Any"})

COMPARATORS = frozenset(
    {
        "equals",
        "not_equal",
        "contains",
        "starts_with",
        "ends_with",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "between",
    }
)


@dataclass(frozen=True)
class Attribute:
    """One declared attribute: name, Harper type (None = untyped) and whether it is indexed."""

    name: str
    type: str | None = None
    indexed: bool = False
    is_primary_key: bool = False

    @property
    def untyped(self) -> bool:
        return self.type in UNTYPED

    def to_harper(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.type is not None:
            out["type"] = self.type
        if self.is_primary_key:
            out["is_primary_key"] = True
        elif self.indexed:
            out["indexed"] = True
        return out


@dataclass(frozen=True)
class TableInfo:
    """`describe_table`, typed. `record_count` is Harper's estimate, never use it as a count."""

    database: str
    name: str
    primary_key: str
    schema_defined: bool
    attributes: tuple[Attribute, ...]
    record_count_estimate: int | None = None

    def attribute(self, name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.name == name), None)

    @property
    def indexed(self) -> frozenset[str]:
        return frozenset(a.name for a in self.attributes if a.indexed or a.is_primary_key)

    @classmethod
    def from_harper(cls, data: dict[str, Any]) -> TableInfo:
        primary_key = str(data.get("hash_attribute") or "")
        attributes = tuple(
            Attribute(
                name=str(a["attribute"]),
                type=a.get("type"),
                indexed=bool(a.get("indexed")),
                is_primary_key=bool(a.get("is_primary_key")) or a["attribute"] == primary_key,
            )
            for a in data.get("attributes") or []
            if isinstance(a, dict) and "attribute" in a
        )
        count = data.get("record_count")
        return cls(
            database=str(data.get("schema") or data.get("database") or ""),
            name=str(data.get("name") or ""),
            primary_key=primary_key,
            schema_defined=bool(data.get("schema_defined")),
            attributes=attributes,
            record_count_estimate=int(count) if isinstance(count, int | float) else None,
        )


@dataclass(frozen=True)
class Condition:
    """One `search_by_conditions` condition; `between` takes a `[low, high]` pair (inclusive)."""

    attribute: str
    comparator: str
    value: Any

    def __post_init__(self) -> None:
        if self.comparator not in COMPARATORS:
            raise ValueError(
                f"unknown comparator {self.comparator!r}; one of {sorted(COMPARATORS)}"
            )

    def to_harper(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "comparator": self.comparator, "value": self.value}


@dataclass(frozen=True)
class Sort:
    attribute: str
    descending: bool = False

    def to_harper(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "descending": self.descending}


@dataclass(frozen=True)
class DatabaseLink:
    """The replication socket for one database between this node and a peer."""

    database: str
    connected: bool
    latency_ms: float | None = None
    backpressure_percent: float | None = None


@dataclass(frozen=True)
class Peer:
    """A node this node replicates with. `connected` is true while any replication socket is up."""

    name: str
    url: str | None
    connected: bool
    replicates: bool
    databases: tuple[DatabaseLink, ...] = ()


@dataclass(frozen=True)
class ClusterStatus:
    """`cluster_status`, typed: this node's name and its peers. A lone node has no peers."""

    node_name: str
    url: str | None
    enabled: bool
    peers: tuple[Peer, ...] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        """Nodes in the cluster as this node sees it (itself plus every known peer)."""
        return 1 + len(self.peers)

    @property
    def connected_peers(self) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.connected)

    @classmethod
    def from_harper(cls, data: dict[str, Any]) -> ClusterStatus:
        peers = []
        for conn in data.get("connections") or []:
            if not isinstance(conn, dict):
                continue
            links = tuple(
                DatabaseLink(
                    database=str(s.get("database", "")),
                    connected=bool(s.get("connected")),
                    latency_ms=_float(s.get("latency")),
                    backpressure_percent=_float(s.get("backPressurePercent")),
                )
                for s in conn.get("database_sockets") or []
                if isinstance(s, dict)
            )
            peers.append(
                Peer(
                    name=str(conn.get("name") or conn.get("url") or ""),
                    url=conn.get("url"),
                    connected=any(link.connected for link in links),
                    replicates=bool(conn.get("replicates", True)),
                    databases=links,
                )
            )
        return cls(
            node_name=str(data.get("node_name") or ""),
            url=data.get("url"),
            enabled=bool(data.get("is_enabled", True)),
            peers=tuple(peers),
        )


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert call wrote. Only ever returned when Harper confirmed every id."""

    rows: int
    distinct_ids: int
    chunks: int
    duration_s: float


@dataclass(frozen=True, eq=False)
class PreparedUpsert:
    """An upsert's request bodies encoded ahead (`HarperClient.prepare_upsert`): the sync's
    reader thread encodes the next page while Harper writes this one, so Harper does not wait
    for the writer to encode. Used only for the very records, target and confirmation count
    it was prepared for; anything else is encoded at write time."""

    database: str
    table: str
    records: Sequence[Any]
    """The list it was prepared from: the identity the write checks (a guard's new list is
    another list, so it is encoded afresh)."""
    rows: int
    chunk_rows: int
    replicated_confirmation: int
    chunks: list[tuple[list[Any], bytes]]
    """Each chunk's records merged by id, and its encoded body."""

    def fits(
        self,
        database: str,
        table: str,
        records: Sequence[Any],
        chunk_rows: int,
        replicated_confirmation: int,
    ) -> bool:
        """Whether it was prepared for exactly this write (the same list, still as long)."""
        return (
            records is self.records
            and len(records) == self.rows
            and (database, table, chunk_rows, replicated_confirmation)
            == (self.database, self.table, self.chunk_rows, self.replicated_confirmation)
        )


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
