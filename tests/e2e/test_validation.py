"""Validation: per-record comparison per closed window and partition, drift found and repaired.

The original's validation compared estimates with a partition function unlike its reads, and
called an idle table stalled; ours counted rows per cell, so a deleted record next to a foreign
one cancelled out and changed values went unseen. Here: records deleted, added, changed and
moved in Harper behind the sync's back are each counted exactly in their (partition, window)
cells, one `--repair` leaves validation clean, and an idle table is healthy while a stopped sync
is stalled.
"""

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e.live import records, running, wait_for
from tests.support import make_source, run_once
from typer.testing import CliRunner

from harperbq.cli.main import app
from harperbq.config import Config
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.sync.cluster.partitions import partition_of
from harperbq.sync.state import AuditKind, StateStore
from harperbq.sync.stored_status import table_statuses
from harperbq.sync.table.grid import Cell, recorded_cells
from harperbq.times import iso, to_micros

CHANGE_FEED = "none"  # event-time windows: what these tests are about

WriteConfig = Callable[..., tuple[Path, Config]]
PARTITIONS = 4


def validate_cli(node: HarperNode, path: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """`harperbq sync validate --json ...`: exit code and parsed results."""
    result = CliRunner().invoke(
        app,
        ["sync", "validate", "-c", str(path), "--json", *args],
        env={"TEST_HARPER_PASSWORD": node.password},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def cell_of(recorded: dict[Cell, int], row: dict[str, Any]) -> Cell:
    moment = datetime.fromisoformat(row["ts"])
    partition = partition_of([row["mmsi"], moment], PARTITIONS, ["INT64", "TIMESTAMP"])
    at = to_micros(moment)
    (cell,) = [c for c in recorded if c.partition == partition and c.lo <= at < c.hi]
    return cell


def test_drift_reported_in_its_windows_and_repaired(
    bq: bigquery.Client,
    harper_client: HarperClient,
    harper_node: HarperNode,
    write_config: WriteConfig,
    unique: str,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows: list[dict[str, Any]] = [
        {"ts": (now - timedelta(minutes=80, seconds=-30 * i)).isoformat(), "mmsi": m, "v": i}
        for i in range(150)
        for m in range(100, 106)
    ]
    dataset = f"val_{unique}"
    schema = [F("ts", "TIMESTAMP"), F("mmsi", "INT64"), F("v", "INT64")]
    make_source(bq, dataset, "pos", schema, rows)
    path, cfg = write_config(
        [
            {
                "id": "pos",
                "dataset": dataset,
                "table": "pos",
                "timestampColumn": "ts",
                "columns": ["ts", "mmsi", "v"],
                "targetTable": "ValPos",
                "primaryKey": ["mmsi", "ts"],
                "partitions": PARTITIONS,
                "lateness": "2h",
                "sync": {"initialBatchSize": 150, "catchupBatchSize": 150, "steadyBatchSize": 150},
            }
        ],
        sync={"settle": "1s"},
    )
    database = cfg.harper.database
    run_once(cfg, harper_client)

    code, (clean,) = validate_cli(harper_node, path)
    assert code == 0 and clean["health"] == "healthy", clean
    assert clean["rows_source"] == clean["rows_harper"] == len(rows)
    assert clean["drift_rows"] == 0 and clean["windows_checked"] > 4
    assert clean["sample"]["rows"] > 0 and clean["rows_compared"] == clean["sample"]["rows"]
    assert clean["missing_rows"] == clean["foreign_rows"] == clean["changed_rows"] == 0
    assert clean["moved_rows"] == 0

    # Delete rows from Harper behind the sync's back: 2 rows in one cell, 3 in another.
    state = StateStore(harper_client, cfg.harper.state_database)
    recorded = recorded_cells(state.get_checkpoints("pos"), range(PARTITIONS))
    by_cell: dict[Cell, list[dict[str, Any]]] = {}
    for row in rows:
        by_cell.setdefault(cell_of(recorded, row), []).append(row)
    busy = sorted((c for c, rs in by_cell.items() if len(rs) >= 5), key=lambda c: c.lo)
    assert len(busy) >= 2
    victims = {busy[0]: by_cell[busy[0]][:2], busy[-1]: by_cell[busy[-1]][:3]}
    ids = [
        f"{r['mmsi']}|{iso(to_micros(datetime.fromisoformat(r['ts'])))}"
        for rs in victims.values()
        for r in rs
    ]
    assert harper_client.delete(database, "ValPos", ids) == 5
    remaining = len(rows) - len(ids)
    wait_for("the deletes", lambda: len(records(harper_client, database, "ValPos")) == remaining)

    code, (drift,) = validate_cli(harper_node, path)
    assert code == 1 and drift["health"] == "drift", drift
    assert drift["drift_rows"] == drift["missing_rows"] == 5
    found = {
        (d["partition"], d["lo"], d["hi"]): (d["source"], d["harper"], d["missing"])
        for d in drift["drift"]
    }
    assert found == {
        (c.partition, iso(c.lo), iso(c.hi)): (len(by_cell[c]), len(by_cell[c]) - len(v), len(v))
        for c, v in victims.items()
    }
    status = table_statuses(cfg, harper_client)[0]
    assert status["health"] == "drift" and status["validation"]["drift_rows"] == 5

    code, (repair,) = validate_cli(harper_node, path, "--repair")
    assert code == 0 and repair["health"] == "drift"  # what it found, then fixed...
    assert repair["after"]["health"] == "healthy" and repair["after"]["drift_rows"] == 0
    assert table_statuses(cfg, harper_client)[0]["health"] == "healthy"  # ...as checked again
    assert repair["repaired_upserts"] == 5 and repair["repaired_deletes"] == 0
    assert len(records(harper_client, database, "ValPos")) == len(rows)

    code, (after,) = validate_cli(harper_node, path)
    assert code == 0 and after["health"] == "healthy" and after["drift_rows"] == 0, after
    audits = state.recent_audit("pos", kind=AuditKind.VALIDATION, limit=10)
    assert [a.details["health"] for a in audits] == ["healthy", "drift", "drift", "healthy"]
    assert table_statuses(cfg, harper_client)[0]["health"] == "healthy"


def test_deleted_foreign_changed_moved_each_counted_and_one_repair_is_exact(
    bq: bigquery.Client,
    harper_client: HarperClient,
    harper_node: HarperNode,
    write_config: WriteConfig,
    unique: str,
) -> None:
    """Issue 11: 100 deleted, 25 foreign, 70 changed and 30 moved records in one table, none
    cancelling another out; one `--repair` restores the source exactly, newest versions of
    keys with two included, and its own after-check is clean."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=80)

    def at(i: int) -> str:
        """Row i's cursor, in the text form the sync stores (Harper's index compares text)."""
        return iso(to_micros(start + timedelta(seconds=12 * i)))

    rows: list[dict[str, Any]] = [
        {"vid": i, "updated": at(i), "v": i, "name": f"vessel {i}", "speed": i / 7}
        for i in range(400)
    ]
    # Keys 300..319 also have an older version 55 minutes earlier: the newest must win.
    rows += [
        {"vid": i, "updated": at(i - 275), "v": -i, "name": "old", "speed": 0.5}
        for i in range(300, 320)
    ]
    dataset = f"exact_{unique}"
    schema = [
        F("vid", "INT64"),
        F("updated", "TIMESTAMP"),
        F("v", "INT64"),
        F("name", "STRING"),
        F("speed", "FLOAT64"),
    ]
    make_source(bq, dataset, "fleet", schema, rows)
    path, cfg = write_config(
        [
            {
                "id": "fleet",
                "dataset": dataset,
                "table": "fleet",
                "timestampColumn": "updated",
                "targetTable": "ExactFleet",
                "primaryKey": ["vid"],
                "partitions": PARTITIONS,
                "lateness": "2h",
                "deletes": "mirror",
                "sync": {"initialBatchSize": 150, "catchupBatchSize": 150, "steadyBatchSize": 150},
            }
        ],
        sync={"settle": "1s"},
        validation={"sampleRows": 0},  # only the digests decide which cells are compared
    )
    database = cfg.harper.database
    run_once(cfg, harper_client)
    newest = {r["vid"]: r for r in sorted(rows, key=lambda r: r["updated"])}
    synced = records(harper_client, database, "ExactFleet")
    assert {int(i): r["v"] for i, r in synced.items()} == {k: r["v"] for k, r in newest.items()}

    code, (clean,) = validate_cli(harper_node, path)
    assert code == 0 and clean["health"] == "healthy" and clean["drift_rows"] == 0, clean
    assert clean["rows_source"] == clean["rows_harper"] == 400
    assert clean["windows_compared"] == 0  # equal digests everywhere: no row was read in full

    # Behind the sync's back: delete 100 (ten of them keys with two versions), add 25 foreign,
    # change 70 values, move 30 records to another cursor (and so another cell).
    deleted = [*range(90), *range(300, 310)]
    assert harper_client.delete(database, "ExactFleet", [str(i) for i in deleted]) == 100
    foreign = [
        {"id": str(10_000 + i), "vid": 10_000 + i, "updated": at(5 + 15 * i), "v": 1, "name": "x"}
        for i in range(25)
    ]
    changed = [{"id": str(i), "v": 1_000_000 + i} for i in range(100, 160)]
    changed += [{"id": str(i), "name": f"renamed {i}"} for i in range(160, 170)]
    state = StateStore(harper_client, cfg.harper.state_database)
    recorded = recorded_cells(state.get_checkpoints("fleet"), range(PARTITIONS))

    def cell(vid: int, updated: str) -> Cell:
        p = partition_of([vid], PARTITIONS, ["INT64"])
        us = to_micros(datetime.fromisoformat(updated))
        (found,) = [c for c in recorded if c.partition == p and c.lo <= us < c.hi]
        return found

    moved = [{"id": str(i), "updated": at(i - 175)} for i in range(200, 220)]
    moved += [{"id": str(i), "updated": at(i + 150)} for i in range(220, 230)]
    for m in moved:
        assert cell(int(m["id"]), m["updated"]) != cell(
            int(m["id"]), newest[int(m["id"])]["updated"]
        )
    harper_client.upsert(database, "ExactFleet", [*foreign, *changed, *moved])
    wait_for(
        "the changes",
        lambda: len(records(harper_client, database, "ExactFleet")) == 400 - 100 + 25,
    )

    code, (drift,) = validate_cli(harper_node, path)
    assert code == 1 and drift["health"] == "drift", drift
    counts = {k: drift[f"{k}_rows"] for k in ("missing", "foreign", "changed", "moved")}
    assert counts == {"missing": 100, "foreign": 25, "changed": 70, "moved": 30}, drift
    assert drift["drift_rows"] == 225 and drift["pending_windows"] == 0
    per_cell = {k: sum(d[k] for d in drift["drift"]) for k in counts}
    assert per_cell == counts  # every drifted cell listed (fewer than 50 here)
    status = table_statuses(cfg, harper_client)[0]
    assert status["health"] == "drift" and status["validation"]["drift_rows"] == 225
    assert status["validation"]["moved_rows"] == 30

    code, (repair,) = validate_cli(harper_node, path, "--repair")
    assert code == 0 and repair["health"] == "drift", repair
    assert repair["after"]["health"] == "healthy" and repair["after"]["drift_rows"] == 0
    assert repair["repaired_upserts"] == 100 + 70 + 30 and repair["repaired_deletes"] == 25
    stored = records(harper_client, database, "ExactFleet")
    assert {int(i): (r["v"], r["name"], r["updated"]) for i, r in stored.items()} == {
        k: (r["v"], r["name"], r["updated"]) for k, r in newest.items()
    }

    code, (after,) = validate_cli(harper_node, path)
    assert code == 0 and after["health"] == "healthy" and after["drift_rows"] == 0, after
    assert table_statuses(cfg, harper_client)[0]["health"] == "healthy"


def test_idle_table_is_healthy_and_a_stopped_sync_stalls(
    bq: bigquery.Client,
    harper_client: HarperClient,
    harper_node: HarperNode,
    write_config: WriteConfig,
    unique: str,
) -> None:
    """Nothing new at the source is not a stall: the checkpoint keeps up with `now - settle`.
    A sync that stopped making progress is stalled after `stalledAfter`."""
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    rows = [{"ts": (t0 + timedelta(seconds=i)).isoformat(), "k": i} for i in range(50)]
    dataset = f"idle_{unique}"
    make_source(bq, dataset, "quiet", [F("ts", "TIMESTAMP"), F("k", "INT64")], rows)
    stalled_after = 2.0
    path, cfg = write_config(
        [
            {
                "id": "quiet",
                "dataset": dataset,
                "table": "quiet",
                "timestampColumn": "ts",
                "targetTable": "Quiet",
                "primaryKey": ["k"],
                "partitions": 2,
            }
        ],
        sync={"settle": "500ms", "pollInterval": 200},
        validation={"enabled": True, "interval": "1s", "stalledAfter": f"{stalled_after}s"},
    )
    state = StateStore(harper_client, cfg.harper.state_database)
    with running(cfg, harper_client) as service:
        wait_for(
            "the sync", lambda: len(records(harper_client, cfg.harper.database, "Quiet")) == 50
        )
        # The scheduled validation ran (by the worker owning partition 0) and was recorded.
        wait_for(
            "a scheduled validation",
            lambda: any(
                a.worker_id == service.handles[0].worker_id
                for a in state.recent_audit("quiet", kind=AuditKind.VALIDATION)
            ),
        )
        idle_since = time.monotonic()
        wait_for("idle longer than stalledAfter", lambda: time.monotonic() - idle_since > 2.5)
        (result,) = service.validate("quiet")
        assert result.health == "healthy" and not result.progress.stalled, result.to_json()
        assert result.progress.behind_s is not None and result.progress.behind_s < stalled_after
        assert table_statuses(cfg, harper_client)[0]["health"] == "healthy"
    wait_for(
        "the stopped sync to count as stalled",
        lambda: table_statuses(cfg, harper_client)[0]["health"] == "stalled",
        timeout_s=15,
    )
    code, (stalled,) = validate_cli(harper_node, path)
    assert code == 1 and stalled["health"] == "stalled"
    assert stalled["stalled_partitions"] == [0, 1]
