"""Rows the sync does not write as they are are reported, never silent.

- NaN/±Inf are written as null (JSON has no such numbers): counted per window in `SyncAudit`
  (`coerced_values`) and in `harperbq_values_coerced_total{reason="nonfinite_float"}`.
- A NULL (or partly NULL) primary key has no identity: the row is skipped with code
  `null_primary_key` (they used to merge into one record `%00`).
- A NULL cursor puts a row in no window: counted once per hour by reconciliation.
- A row later than `lateness` is not synced: reconciliation reports it with the fix.
Each shows in the metric `harperbq_rows_skipped_total{reason}` and in `sync status`.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e.live import records, running, wait_for
from tests.support import make_source

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.service import SyncService
from harperbq.sync.state import StateStore
from harperbq.sync.stored_status import table_statuses

CHANGE_FEED = "none"  # event-time windows: what these tests are about

WriteConfig = Callable[..., tuple[Path, Config]]
SCHEMA = [F("ts", "TIMESTAMP"), F("k", "INT64"), F("j", "INT64"), F("x", "FLOAT64")]


def metric(service: SyncService, name: str, reason: str) -> float:
    handle = service.handles[0]
    labels = {"table": handle.table.id, "worker": handle.worker_id, "reason": reason}
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


def test_nan_null_keys_null_cursors_and_too_late_rows_are_reported(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=10)
    rows: list[dict[str, Any]] = [
        {"ts": (start + timedelta(seconds=5 * i)).isoformat(), "k": i, "j": 0, "x": i / 2}
        for i in range(110)
    ]
    rows[10]["k"] = None  # NULL key
    rows[11]["j"] = None  # partly NULL composite key
    rows[12]["k"] = rows[13]["j"] = None
    for i in (20, 21, 22, 23, 24):
        rows[i]["ts"] = None  # NULL cursor
    dataset = f"rep_{unique}"
    make_source(bq, dataset, "t", SCHEMA, rows)
    table = f"`{bq.project}.{dataset}.t`"
    bq.query(  # the JSON load path cannot carry NaN/Infinity
        f"UPDATE {table} SET x = CAST('NaN' AS FLOAT64) WHERE k IN (30, 31);"  # noqa: S608
    ).result()
    bq.query(
        f"UPDATE {table} SET x = CAST('inf' AS FLOAT64) WHERE k = 32;"  # noqa: S608
    ).result()
    bq.query(
        f"UPDATE {table} SET x = CAST('-inf' AS FLOAT64) WHERE k = 33;"  # noqa: S608
    ).result()
    _, cfg = write_config(
        [
            {
                "id": "rep",
                "dataset": dataset,
                "table": "t",
                "timestampColumn": "ts",
                "columns": ["ts", "k", "j", "x"],
                "targetTable": "Rep",
                "primaryKey": ["k", "j"],
                "partitions": 1,
                "lateness": "1m",
                "reconcileInterval": "2s",
                "sync": {"initialBatchSize": 5, "catchupBatchSize": 5, "steadyBatchSize": 5},
            }
        ],
        sync={"settle": "1s", "pollInterval": 300},
        validation={"enabled": False},
    )
    database = cfg.harper.database
    synced = {f"{i}|0" for i in range(110)} - {"10|0", "11|0", "12|0", "13|0"}
    synced -= {f"{i}|0" for i in (20, 21, 22, 23, 24)}
    state = StateStore(harper_client, cfg.harper.state_database)
    with running(cfg, harper_client) as service:
        handle = service.handles[0]
        assert handle.maintenance is not None
        stats = handle.maintenance.reconciler.stats
        wait_for(
            "the initial sync and a reconciliation",
            lambda: set(records(harper_client, database, "Rep")) == synced and stats.runs >= 1,
        )
        got = records(harper_client, database, "Rep")
        assert "%00|0" not in got and not any("%00" in i for i in got)
        assert [got[f"{i}|0"]["x"] for i in (30, 31, 32, 33)] == [None] * 4
        assert got["34|0"]["x"] == 17.0

        # Rows later than lateness (1 min): 150 s behind; one 20 s behind is still synced.
        late = [
            {"ts": (now - timedelta(seconds=150 + i)).isoformat(), "k": 500 + i, "j": 0, "x": 1.0}
            for i in range(3)
        ]
        late.append({"ts": (now - timedelta(seconds=20)).isoformat(), "k": 600, "j": 0, "x": 2.0})
        bq.load_table_from_json(late, f"{bq.project}.{dataset}.t").result()
        wait_for(
            "the row within lateness", lambda: "600|0" in records(harper_client, database, "Rep")
        )
        wait_for("the too-late rows reported", lambda: stats.rows_beyond_lateness == 3)
        assert not {"500|0", "501|0", "502|0"} & set(records(harper_client, database, "Rep"))

        wait_for(
            "the metrics",
            lambda: metric(service, "harperbq_rows_skipped_total", "beyond_lateness") == 3,
        )
        assert metric(service, "harperbq_rows_skipped_total", "null_primary_key") == 4
        assert metric(service, "harperbq_rows_skipped_total", "null_cursor") == 5
        assert metric(service, "harperbq_values_coerced_total", "nonfinite_float") == 4
        assert stats.null_cursor_rows == 5
        runs = stats.runs
        wait_for("two more reconciliations", lambda: stats.runs >= runs + 2)
        assert stats.rows_beyond_lateness == 3  # reported once, not at every run

    skipped = state.recent_audit("rep", kind="skipped_row")
    assert sorted(e.details["code"] for e in skipped) == ["null_primary_key"] * 4
    coerced = state.recent_audit("rep", kind="coerced_values")
    assert sum(e.details["count"] for e in coerced) == 4
    (beyond,) = state.recent_audit("rep", kind="beyond_lateness")
    assert beyond.details["count"] == 3 and "--repair" in beyond.details["fix"]
    nulls = state.recent_audit("rep", kind="null_cursor")
    assert nulls and nulls[0].details["count"] == 5 and nulls[0].details["column"] == "ts"
    (status,) = table_statuses(cfg, harper_client)
    text = "\n".join(n["message"] for n in status["notices"])
    for expected in ("null_primary_key", "NaN", "later than lateness", "NULL ts"):
        assert expected in text, text
