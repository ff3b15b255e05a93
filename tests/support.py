"""Helpers shared by end-to-end tests: source tables, one-shot syncs, content comparison."""

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import bigquery

from harperbq.bigquery.client import make_client
from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.harper.models import Condition
from harperbq.sync.service import SyncService


def harper_rows(client: HarperClient, database: str, table: str) -> dict[str, dict[str, Any]]:
    """Every record of a Harper table by id, with every attribute (also undeclared ones),
    minus the timestamps Harper adds itself."""
    rows = client.search(database, table, [Condition("id", "greater_than_equal", "")])
    internal = ("__createdtime__", "__updatedtime__")
    return {str(r["id"]): {k: v for k, v in r.items() if k not in internal} for r in rows}


def make_source(
    bq: bigquery.Client,
    dataset: str,
    table: str,
    schema: list[bigquery.SchemaField],
    rows: list[dict[str, Any]],
) -> None:
    bq.create_dataset(dataset, exists_ok=True)
    ref = bigquery.Table(f"{bq.project}.{dataset}.{table}", schema=schema)
    bq.create_table(ref, exists_ok=True)
    for start in range(0, len(rows), 50_000):
        bq.load_table_from_json(rows[start : start + 50_000], ref).result()


def run_once(cfg: Config, harper: HarperClient, timeout_s: float = 240) -> SyncService:
    """`sync run --once` in-process: start, wait until caught up, stop; asserts success."""
    service = SyncService(cfg, harper, make_client(cfg.bigquery), once=True)
    service.start()
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        ok = service.wait(stop)
    finally:
        timer.cancel()
        service.stop()
    errors = {r.table_id: r.engine.status.last_error for r in service.runners()}
    assert ok, f"sync did not finish: {errors}"
    return service


def keyed_table(bq: bigquery.Client, dataset: str, rows: int, **spec: Any) -> dict[str, Any]:
    """Source table `t` (ts TIMESTAMP one second apart, k INT64 key) with `rows` rows, and its
    table spec for a config (target `T`, key `[k]`, `spec` merged in)."""
    start = datetime(2024, 2, 1, tzinfo=UTC)
    data = [{"ts": (start + timedelta(seconds=i)).isoformat(), "k": i} for i in range(rows)]
    schema = [bigquery.SchemaField("ts", "TIMESTAMP"), bigquery.SchemaField("k", "INT64")]
    make_source(bq, dataset, "t", schema, data)
    return {
        "id": "t",
        "dataset": dataset,
        "table": "t",
        "timestampColumn": "ts",
        "columns": ["ts", "k"],
        "targetTable": "T",
        "primaryKey": ["k"],
        **spec,
    }
