"""Item 3 of issue 11: reconciliation runs when a user would expect it, not one interval late.

`sync run --once` reconciles before it exits (else late rows written into windows it already
synced are never picked up by later --once runs), and a continuous run reconciles right after
its first catch-up (else late rows that arrived while no sync ran wait a full
`reconcileInterval`). The interval here is an hour, so only the new cadence can pass.
"""

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e.live import records, running, wait_for
from tests.support import make_source, run_once

from harperbq.config import Config
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.sync.live_status import service_status
from harperbq.sync.stored_status import table_statuses

CHANGE_FEED = "none"  # event-time windows: what these tests are about

WriteConfig = Callable[..., tuple[Path, Config]]
SCHEMA = [F("ts", "TIMESTAMP"), F("mmsi", "INT64"), F("lat", "FLOAT64")]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content(rows: dict[str, dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter((r["ts"], r["mmsi"], r["lat"]) for r in rows.values())


def expected(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter((iso(datetime.fromisoformat(r["ts"])), r["mmsi"], r["lat"]) for r in rows)


def source(
    bq: bigquery.Client, write_config: WriteConfig, unique: str
) -> tuple[Path, Config, list[dict[str, Any]], str]:
    """90 minutes of positions up to now, in a table with a 2 h lateness and a 1 h interval."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=90)
    rows = [
        {"ts": (start + timedelta(seconds=20 * i)).isoformat(), "mmsi": m, "lat": i + m / 10}
        for i in range(90 * 3)
        for m in (1, 2, 3)
    ]
    dataset = f"cadence_{unique}"
    make_source(bq, dataset, "pos", SCHEMA, rows)
    path, cfg = write_config(
        [
            {
                "id": "pos",
                "dataset": dataset,
                "table": "pos",
                "timestampColumn": "ts",
                "columns": ["ts", "mmsi", "lat"],
                "targetTable": "CadencePos",
                "partitions": 4,
                "lateness": "2h",
                "reconcileInterval": "1h",
                "sync": {"initialBatchSize": 200, "catchupBatchSize": 200, "steadyBatchSize": 200},
            }
        ],
        sync={"settle": "1s", "pollInterval": 500},
        validation={"enabled": False},
    )
    return path, cfg, rows, dataset


def late_rows() -> list[dict[str, Any]]:
    """Rows 1 to 59 minutes behind now: inside windows a sync has already written."""
    now = datetime.now(UTC)
    return [
        {
            "ts": (now - timedelta(minutes=m, microseconds=m * 1_001)).isoformat(),
            "mmsi": 7,
            "lat": m,
        }
        for m in (1, 3, 7, 15, 30, 45, 59)
    ]


def test_two_once_runs_leave_harper_equal_to_bigquery(
    bq: bigquery.Client,
    harper_client: HarperClient,
    harper_node: HarperNode,
    write_config: WriteConfig,
    unique: str,
) -> None:
    path, cfg, rows, dataset = source(bq, write_config, unique)
    db = cfg.harper.database
    first = run_once(cfg, harper_client)  # in-process, to read its reconcile report
    assert content(records(harper_client, db, "CadencePos")) == expected(rows)

    late = late_rows()
    bq.load_table_from_json(late, f"{bq.project}.{dataset}.pos").result()
    # The second --once run, as a user runs it: the real command, which reports what it did.
    command = [sys.executable, "-m", "harperbq", "sync", "run", "--once", "--no-control"]
    done = subprocess.run(
        [*command, "-c", str(path)],
        env={**os.environ, "TEST_HARPER_PASSWORD": harper_node.password},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = records(harper_client, db, "CadencePos")
    assert content(got) == expected(rows + late), "late rows missing after two --once runs"
    assert len(got) == len(rows) + len(late)  # nothing duplicated
    maintenance = first.handles[0].maintenance
    assert maintenance is not None and maintenance.last_reconcile is not None, "not reconciled"
    said = " ".join(done.stderr.split())
    assert "table pos (" in said and "changed" in said, done.stderr[-2000:]
    assert "0 changed" not in said, said[-2000:]  # the late windows were found and re-read

    # `sync status` says when late rows were last looked for (the --once run's audit entry).
    [status] = table_statuses(cfg, harper_client)
    assert status["reconcile"]["at"] is not None, status
    assert status["reconcile"]["age_s"] < 120, status


def test_continuous_run_reconciles_right_after_its_first_catch_up(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    _, cfg, rows, dataset = source(bq, write_config, unique)
    db = cfg.harper.database
    run_once(cfg, harper_client)
    late = late_rows()  # written while no sync runs
    bq.load_table_from_json(late, f"{bq.project}.{dataset}.pos").result()
    want = expected(rows + late)
    with running(cfg, harper_client) as service:
        took = wait_for(
            "late rows in Harper after the restart",
            lambda: content(records(harper_client, db, "CadencePos")) == want,
            timeout_s=90,
        )
        assert took < 60, took  # well before the 1 h reconcileInterval
        wait_for("the status to show it", lambda: service.handles[0].runner.state == "idle")
        worker = service_status(service)["tables"][0]["workers"][0]
        assert worker["reconcile"]["last_run"] is not None, worker
        assert worker["reconcile"]["due"] is False, worker
        assert worker["caught_up"] is True, worker
        assert worker["reconcile"]["windows_resynced"] >= 1, worker
