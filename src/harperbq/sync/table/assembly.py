"""The read side of one (table, worker): source, sink, state, identity and target, built once.

Why: the engine, reconciliation, retention, validation and repair all work on the same table
through the same parts. Built in one place, they cannot drift apart (same ids, same identity,
same write metric), and any `TableSource` (an in-memory one in unit tests) can stand in for
BigQuery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, overload

from harperbq.bigquery.sql import Column
from harperbq.config import Config, TableConfig
from harperbq.harper.client import HarperClient
from harperbq.harper.replication import Confirmations
from harperbq.retry import RetryPolicy
from harperbq.sync.state import StateIdentity, StateStore
from harperbq.sync.table.engine import Source
from harperbq.sync.table.feed_source import ChangeFeedSource
from harperbq.sync.table.sink import HarperSink
from harperbq.sync.table.source import BigQuerySource
from harperbq.sync.table.target import TargetTable
from harperbq.sync.table.versions import drop_older_than_stored


class TableSource(Source, Protocol):
    """A `Source` that also names its table and key columns: the identity and target need them."""

    @property
    def ref(self) -> object: ...

    @property
    def cursor(self) -> Column: ...

    @property
    def partition_key(self) -> Sequence[Column]: ...


S = TypeVar("S", bound=TableSource)


@dataclass(frozen=True)
class ReadSide(Generic[S]):
    """Everything that reads or writes one table for one worker, wired together."""

    config: Config
    table: TableConfig
    worker_id: str
    harper: HarperClient
    source: S
    sink: HarperSink
    state: StateStore
    identity: StateIdentity
    feed: Source
    """The engine's source: the change feed over `source` (`sync.feed_source`), or `source`
    itself when it is not BigQuery's (tests)."""
    bigquery: Any = field(default=None, repr=False, compare=False)
    policy: RetryPolicy | None = field(default=None, repr=False, compare=False)
    _targets: list[TargetTable] = field(default_factory=list, init=False, repr=False, compare=False)

    def target(self) -> TargetTable:
        """Harper's records of the table by cursor range; built on first use, when the
        source schema (cursor and partition key types) is known."""
        if not self._targets:
            self._targets.append(
                TargetTable(
                    self.harper,
                    self.config.harper.database,
                    self.table.target_table,
                    self.source.cursor,
                    self.source.partition_key,
                    self.table.partitions,
                )
            )
        return self._targets[0]

    def newer_version_guard(self) -> Any:
        """For a keyed table read by `appends`: drops rows whose Harper record holds a newer
        cursor (`versions.drop_older_than_stored`), so a late commit of an old version never
        overwrites the current one. None otherwise (the engine then writes every row)."""
        feed = self.feed
        if not self.table.primary_key or not isinstance(feed, ChangeFeedSource):
            return None

        def guard(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
            if feed.feed_mode() != "appends":
                return records, 0
            target = self.target()
            stored = target.stored_cursors([str(r["id"]) for r in records])
            return drop_older_than_stored(records, stored, target.cursor.name, target.micros)

        return guard

    def fresh(self) -> ReadSide[BigQuerySource]:
        """The same wiring around a BigQuery source of its own: for a job on another thread
        (scheduled validation), whose schema cache and bytes billed must not mix with the
        engine's."""
        return assemble(
            self.config,
            self.table,
            self.worker_id,
            self.harper,
            self.bigquery,
            self.policy,
            on_write=self.sink.on_write,
            state=self.state,
            confirmations=self.sink.confirmations,
            on_replication=self.sink.on_replication,
        )


@overload
def assemble(
    config: Config,
    table: TableConfig,
    worker_id: str,
    harper: HarperClient,
    bigquery: Any,
    policy: RetryPolicy | None = None,
    *,
    on_write: Callable[[int, float], None] | None = None,
    state: StateStore | None = None,
    confirmations: Confirmations | None = None,
    on_replication: Callable[[float | None, str | None], None] | None = None,
    source: None = None,
) -> ReadSide[BigQuerySource]: ...


@overload
def assemble(
    config: Config,
    table: TableConfig,
    worker_id: str,
    harper: HarperClient,
    bigquery: Any,
    policy: RetryPolicy | None = None,
    *,
    on_write: Callable[[int, float], None] | None = None,
    state: StateStore | None = None,
    confirmations: Confirmations | None = None,
    on_replication: Callable[[float | None, str | None], None] | None = None,
    source: S,
) -> ReadSide[S]: ...


# Over the size caps on purpose: the one place the read side is wired: every collaborator by
# keyword.
def assemble(  # noqa: PLR0913
    config: Config,
    table: TableConfig,
    worker_id: str,
    harper: HarperClient,
    bigquery: Any,
    policy: RetryPolicy | None = None,
    *,
    on_write: Callable[[int, float], None] | None = None,
    state: StateStore | None = None,
    confirmations: Confirmations | None = None,
    on_replication: Callable[[float | None, str | None], None] | None = None,
    source: TableSource | None = None,
) -> ReadSide[Any]:
    """The read side of `table` for `worker_id`. `on_write` is the write-duration metric's
    observer; `state` shares a store (and its heartbeat bookkeeping) with the caller;
    `confirmations` the peers that must confirm data writes (`on_replication` observes them);
    `source` replaces the BigQuery source (tests)."""
    policy = policy or RetryPolicy.from_config(config.retry, config.bigquery)
    if source is None:
        source = BigQuerySource(bigquery, config.bigquery, table, policy)
    state = state or StateStore(harper, config.harper.state_database)
    identity = StateIdentity.of(str(source.ref), config.harper.database, table)
    sink = HarperSink(
        harper,
        state,
        config.harper.database,
        table.target_table,
        table.id,
        worker_id,
        on_write=on_write,
        identity=identity,
        confirmations=confirmations,
        replication_timeout_s=config.harper.replication_timeout_s,
        on_replication=on_replication,
    )
    feed = ChangeFeedSource(source) if isinstance(source, BigQuerySource) else source
    return ReadSide(
        config, table, worker_id, harper, source, sink, state, identity, feed, bigquery, policy
    )
