"""The read side is wired once: every part sees the same source, sink, state and identity."""

from collections.abc import Iterator, Sequence
from typing import Any

from harperbq.bigquery.sql import Column, TableRef
from harperbq.config import Config, parse_config
from harperbq.harper.client import HarperClient
from harperbq.sync.checks.reconcile import Reconciler
from harperbq.sync.service import engine_settings
from harperbq.sync.state import StateStore
from harperbq.sync.table.assembly import assemble
from harperbq.sync.table.engine import Page, TableEngine
from harperbq.sync.table.source import BigQuerySource
from harperbq.sync.table.windows import Window


class MemorySource:
    """An in-memory `TableSource`: rows with a `ts` cursor (µs), in one partition."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.ref = TableRef("p", "maritime", "vessel_positions")
        self.cursor = Column("ts", "INT64")
        self.partition_key = [Column("mmsi", "INT64")]

    def first_cursor(self, parts: Sequence[int] | None, after: int | None = None) -> int | None:
        found = [r["ts"] for r in self.rows if after is None or r["ts"] >= after]
        return min(found, default=None)

    def read(self, window: Window, parts: Sequence[int] | None, page_rows: int) -> Iterator[Page]:
        rows = [dict(r) for r in self.rows if window.lo <= r["ts"] < window.hi]
        yield Page(rows, [0] * len(rows))


def config() -> Config:
    table = {
        "id": "positions",
        "dataset": "maritime",
        "table": "vessel_positions",
        "timestampColumn": "ts",
        "primaryKey": ["mmsi", "ts"],
        "columns": ["ts", "mmsi"],
    }
    data = {"bigquery": {"projectId": "p", "tables": [table]}}
    return parse_config(data, environ={}, read_files=False)


def harper() -> HarperClient:
    return HarperClient("http://127.0.0.1:9", "u", "p")  # never called: wiring only


def test_one_source_sink_and_identity_everywhere() -> None:
    cfg = config()
    table = cfg.tables[0]
    client = harper()
    state = StateStore(client, cfg.harper.state_database)
    writes: list[int] = []
    source = MemorySource([{"ts": 5, "mmsi": 1}])
    side = assemble(
        cfg,
        table,
        "node-0",
        client,
        None,
        on_write=lambda rows, _: writes.append(rows),
        state=state,
        source=source,
    )
    assert side.source is source
    assert side.state is state and side.sink.state is state
    assert side.sink.identity is side.identity
    assert side.identity.source == "p.maritime.vessel_positions"
    assert side.identity.target == f"{cfg.harper.database}.{table.target_table}"
    assert (side.identity.cursor, side.identity.key) == ("ts", "mmsi,ts")
    assert (side.sink.table_id, side.sink.worker_id, side.sink.table) == (
        "positions",
        "node-0",
        table.target_table,
    )
    target = side.target()
    assert target is side.target(), "built once"
    assert target.cursor is source.cursor and list(target.partition_key) == source.partition_key

    engine = TableEngine(engine_settings(table), side.source, side.sink, "node-0", lambda: [0])
    assert engine.source is source and engine.sink is side.sink


def test_fresh_side_has_its_own_source_and_the_same_wiring() -> None:
    cfg = config()
    side = assemble(cfg, cfg.tables[0], "node-0", harper(), None, source=MemorySource([]))
    other = side.fresh()
    assert isinstance(other.source, BigQuerySource)  # not the memory one: a source of its own
    assert other.identity == side.identity
    assert other.state is side.state and other.sink.on_write is side.sink.on_write
    assert other.sink is not side.sink and other.sink.identity == side.sink.identity


def test_reconciler_reads_the_engine_source() -> None:
    cfg = config()
    source = MemorySource([])
    side = assemble(cfg, cfg.tables[0], "w", harper(), None, source=source)
    real = side.fresh()  # the reconciler needs BigQuery's aggregate queries
    engine = TableEngine(engine_settings(real.table), real.source, real.sink, "w", lambda: [0])
    reconciler = Reconciler(
        real.table, engine, real.source, real.sink.upsert, real.target, lambda: [0]
    )
    assert reconciler.source is engine.source is real.source
