"""The change feed against the strict local BigQuery and a real Harper, row by row.

A table without checkpoints is first copied as a snapshot (Storage Read with `snapshot_time`),
then followed by commit time: rows inserted later arrive whatever their event time (a backfill
of an hour three days old, rows up to 30 days old), `CHANGES` applies updates and deletes, and a
checkpoint older than the time-travel window resumes through a new snapshot.
"""

# ruff: noqa: S608 - test SQL over the tests' own tables

import logging
import os
import random
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e import test_sync_faults as faults
from tests.e2e.live import records, running, wait_for
from tests.support import make_source, run_once

from harperbq.config import Config
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.sync.checks.validate import validate_tables
from harperbq.sync.service import TableHandle
from harperbq.sync.state import CLOCK_COMMIT, StateStore
from harperbq.times import iso_text, to_micros

WriteConfig = Callable[..., tuple[Path, Config]]
SCHEMA = [F("ts", "TIMESTAMP"), F("mmsi", "INT64"), F("lat", "FLOAT64")]


def positions(start: datetime, count: int, step_s: float, mmsi: int) -> list[dict[str, Any]]:
    return [
        {"ts": (start + timedelta(seconds=step_s * i)).isoformat(), "mmsi": mmsi, "lat": i / 7}
        for i in range(count)
    ]


def source_rows(bq: bigquery.Client, table: str) -> list[tuple[Any, ...]]:
    found = bq.query(f"SELECT ts, mmsi, lat FROM `{table}`").result()
    return sorted((iso_text(r["ts"]), r["mmsi"], r["lat"]) for r in found)


def harper_content(harper: HarperClient, database: str, table: str) -> list[tuple[Any, ...]]:
    return sorted((r["ts"], r["mmsi"], r["lat"]) for r in records(harper, database, table).values())


def spec(dataset: str, target: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "pos",
        "dataset": dataset,
        "table": "pos",
        "timestampColumn": "ts",
        "columns": ["ts", "mmsi", "lat"],
        "targetTable": target,
        "partitions": 4,
        **extra,
    }


def test_backfills_and_month_old_rows_arrive_within_one_poll(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    dataset = f"feed_{unique}"
    table = f"{bq.project}.{dataset}.pos"
    make_source(bq, dataset, "pos", SCHEMA, positions(now - timedelta(hours=2), 400, 15, 1))
    poll_s = 2.0
    _, cfg = write_config(
        [spec(dataset, "FeedPos")],
        sync={"settle": "1s", "pollInterval": int(poll_s * 1000)},
        validation={"enabled": False},
    )
    database = cfg.harper.database
    with running(cfg, harper_client) as service:
        handle: TableHandle = service.handles[0]
        status = handle.engine.status
        wait_for(
            "the snapshot",
            lambda: harper_content(harper_client, database, "FeedPos") == source_rows(bq, table),
        )
        wait_for("following", lambda: status.read_mode == "following" and status.caught_up)
        source = handle.engine.source
        assert source.feed_mode() == "appends"  # type: ignore[attr-defined]
        scanned = source.base.storage_bytes_scanned  # type: ignore[attr-defined]
        assert scanned > 0, "the snapshot is read through the Storage Read API"

        # A backfill of one hour three days old, and rows from 1 to 30 days old: an event-time
        # cursor has passed them all; the change feed sees them as new commits.
        backfill = positions(now - timedelta(days=3), 240, 15, 2)
        old = [
            {"ts": (now - timedelta(days=d, minutes=d)).isoformat(), "mmsi": 3, "lat": float(d)}
            for d in range(1, 31)
        ]
        bq.load_table_from_json(backfill + old, table).result()
        inserted = datetime.now(UTC)
        took = wait_for(
            "the backfill in Harper",
            lambda: harper_content(harper_client, database, "FeedPos") == source_rows(bq, table),
        )
        # Within one poll (plus the settle delay and the window's own work).
        assert took <= poll_s + 1.0 + 5.0, took
        assert (datetime.now(UTC) - inserted).total_seconds() < 30
        assert source.base.storage_bytes_scanned == scanned, "no second snapshot"  # type: ignore[attr-defined]
        assert handle.maintenance is not None
        report = handle.maintenance.last_reconcile
        assert report is None or report.not_needed, "no event-time reconciliation scan"

    state = StateStore(harper_client, cfg.harper.state_database)
    checkpoints = state.get_checkpoints("pos")
    assert len(checkpoints) == 4
    assert {cp.clock for cp in checkpoints.values()} == {CLOCK_COMMIT}
    # Validation compares BigQuery as of the commit-time checkpoint with Harper: no drift,
    # backfill and month-old rows included (`since` reaches back over them).
    (result,) = validate_tables(cfg, harper_client, bq, ["pos"], since_s=32 * 86_400)
    assert result.error is None, result.error
    assert result.rows_source == result.rows_harper > 0
    assert result.drift_rows == 0 and not result.pending, result.to_json()


def test_changes_apply_updates_and_deletes(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    dataset = f"changes_{unique}"
    bq.create_dataset(dataset)
    table = f"{bq.project}.{dataset}.pos"
    bq.query(
        f"CREATE TABLE `{table}` (ts TIMESTAMP, mmsi INT64, lat FLOAT64) "
        "OPTIONS (enable_change_history = TRUE)"
    ).result()
    rows = [
        {"ts": (now - timedelta(minutes=m)).isoformat(), "mmsi": m, "lat": float(m)}
        for m in range(1, 61)
    ]
    bq.load_table_from_json(rows, table).result()
    _, cfg = write_config(
        [spec(dataset, "ChangedPos", primaryKey=["mmsi"])],
        sync={"settle": "1s", "pollInterval": 1000},
        validation={"enabled": False},
    )
    database = cfg.harper.database

    def same() -> bool:
        found = bq.query(f"SELECT ts, mmsi, lat FROM `{table}`").result()
        want = {str(r["mmsi"]): (iso_text(r["ts"]), r["mmsi"], r["lat"]) for r in found}
        have = {
            k: (r["ts"], r["mmsi"], r["lat"])
            for k, r in records(harper_client, database, "ChangedPos").items()
        }
        return want == have

    with running(cfg, harper_client) as service:
        handle: TableHandle = service.handles[0]
        wait_for("the snapshot", same)
        assert handle.engine.source.feed_mode() == "changes"  # type: ignore[attr-defined]
        wait_for("following", lambda: handle.engine.status.read_mode == "following")
        bq.query(f"UPDATE `{table}` SET lat = lat + 1000 WHERE MOD(mmsi, 3) = 0").result()
        bq.query(f"DELETE FROM `{table}` WHERE MOD(mmsi, 5) = 0").result()
        bq.query(
            f"INSERT INTO `{table}` (ts, mmsi, lat) VALUES "
            f"(TIMESTAMP '{iso_text(now)}', 100, 1.5), (TIMESTAMP '{iso_text(now)}', 5, 2.5)"
        ).result()
        wait_for("updates and deletes in Harper", same)
        # 12 keys deleted; key 5 may be deleted and re-inserted within one window (no delete).
        # Harper shows a delete before the engine has its answer and counts it: poll the count.
        wait_for("the deletes counted", lambda: handle.engine.status.rows_deleted >= 11, 10)
        assert "5" in records(harper_client, database, "ChangedPos"), "deleted, then re-inserted"


def test_checkpoint_older_than_time_travel_resumes_through_a_snapshot(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    dataset = f"travel_{unique}"
    bq.query(f"CREATE SCHEMA `{bq.project}.{dataset}` OPTIONS (max_time_travel_hours = 48)")
    table = f"{bq.project}.{dataset}.pos"
    make_source(bq, dataset, "pos", SCHEMA, positions(now - timedelta(hours=1), 200, 10, 1))
    _, cfg = write_config(
        [spec(dataset, "TravelPos")],
        sync={"settle": "0s"},
        validation={"enabled": False},
    )
    database = cfg.harper.database
    first = run_once(cfg, harper_client)
    assert harper_content(harper_client, database, "TravelPos") == source_rows(bq, table)
    first_scan = first.handles[0].engine.source.base.storage_bytes_scanned  # type: ignore[attr-defined]
    assert first_scan > 0

    # The sync was away for three days: its checkpoints are older than the 48 h window.
    state = StateStore(harper_client, cfg.harper.state_database)
    stale = to_micros(now - timedelta(days=3))
    state.put_checkpoints([replace(cp, hi=stale) for cp in state.get_checkpoints("pos").values()])
    bq.load_table_from_json(positions(now - timedelta(minutes=30), 100, 1, 2), table).result()

    second = run_once(cfg, harper_client)
    assert harper_content(harper_client, database, "TravelPos") == source_rows(bq, table)
    engine = second.handles[0].engine
    assert engine.source.base.storage_bytes_scanned > 0, "resumed through a snapshot"  # type: ignore[attr-defined]
    assert engine.status.read_mode == "following"
    # Planned as a snapshot from the dataset's 48 h window (minus the margin), not learnt
    # from a refused range.
    horizon = engine.source.horizon_us()  # type: ignore[attr-defined]
    expected = (datetime.now(UTC) - timedelta(hours=47)).timestamp() * 1e6
    assert abs(horizon - expected) < 120e6
    assert all((cp.hi or 0) > stale for cp in state.get_checkpoints("pos").values())


def _keyed_rows(first: int, count: int, at: datetime) -> list[dict[str, Any]]:
    return [
        {"ts": (at - timedelta(seconds=i % 600)).isoformat(), "mmsi": first + i, "lat": i / 3}
        for i in range(count)
    ]


class _Queries(logging.Handler):
    """The sync's `bigquery.query` log events: job id, bytes billed, shared or run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "bigquery.query" and getattr(record, "operation", "") == (
            "read_appends"
        ):
            self.events.append(
                {
                    "job": str(getattr(record, "job_id", "")),
                    "table": str(getattr(record, "table", "")),
                    "billed": int(getattr(record, "bytes_billed", 0)),
                    "shared": bool(getattr(record, "shared", False)),
                }
            )


def test_one_and_three_workers_bill_the_same_bytes(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    """Each window is one query whatever the number of workers: three workers bill what one
    does per window (within 5 %), every window is billed by exactly one of them and read by
    the others, and each writes about a third of the rows. The snapshot is one Storage Read
    too: one of the three copies it for all (`snapshotBy: one`), scanning what one worker
    alone scans."""
    now = datetime.now(UTC).replace(microsecond=0)
    dataset = f"billing_{unique}"
    grid_s = 5
    configs = {}
    for name, workers in (("one", 1), ("three", 3)):
        make_source(bq, dataset, name, SCHEMA, _keyed_rows(0, 3_000, now))
        table = {
            **spec(dataset, f"Bill_{name}", primaryKey=["mmsi"], partitions=12),
            "id": name,
            "table": name,
        }
        _, cfg = write_config(
            [table],
            harper={"stateDatabase": f"state_{name}_{unique}", "database": f"db_{name}_{unique}"},
            sync={"settle": "1s", "pollInterval": grid_s * 1000, "workers": workers},
            validation={"enabled": False},
        )
        configs[name] = cfg
    queries = _Queries()
    reads = logging.getLogger("harperbq.bigquery.read")
    with (
        running(configs["one"], harper_client) as one,
        running(configs["three"], harper_client) as three,
    ):
        services = {"one": one, "three": three}
        engines = [h.engine for s in services.values() for h in s.handles]

        def on_the_grid() -> bool:  # past the snapshot and the window closing up to the grid
            return all(
                e.status.read_mode == "following"
                and e.status.checkpoint_us is not None
                and e.status.checkpoint_us % (grid_s * 1_000_000) == 0
                for e in engines
            )

        wait_for("every worker following on the grid", on_the_grid, timeout_s=90)
        scanned = {
            n: [h.engine.source.base.storage_bytes_scanned for h in s.handles]  # type: ignore[attr-defined]
            for n, s in services.items()
        }
        assert sum(scanned["one"]) > 0, "the snapshot is read through the Storage Read API"
        assert sorted(scanned["three"])[:2] == [0, 0], scanned  # one worker copied for all
        assert abs(sum(scanned["three"]) - sum(scanned["one"])) <= 0.05 * sum(scanned["one"])
        first = [h.engine.status.rows_synced for h in three.handles]
        reads.addHandler(queries)
        reads.setLevel(logging.INFO)
        try:
            for name in configs:
                for part in range(3):
                    rows = _keyed_rows(10_000 + 1_000 * part, 1_000, now)
                    bq.load_table_from_json(rows, f"{bq.project}.{dataset}.{name}").result()
            loaded = int(datetime.now(UTC).timestamp() * 1_000_000)

            def synced() -> bool:
                return all(
                    harper_content(harper_client, c.harper.database, f"Bill_{n}")
                    == source_rows(bq, f"{bq.project}.{dataset}.{n}")
                    for n, c in configs.items()
                ) and all((e.status.checkpoint_us or 0) > loaded for e in engines)

            wait_for("the loads in Harper, every worker past them", synced, timeout_s=120)
        finally:
            reads.removeHandler(queries)

    by_table: dict[str, list[dict[str, Any]]] = {"one": [], "three": []}
    for event in queries.events:
        by_table[event["table"].rsplit(".", 1)[1]].append(event)
    per_window = {}
    for name, events in by_table.items():
        windows = {e["job"].rsplit("_", 1)[0] for e in events}
        ran = [e for e in events if not e["shared"]]
        assert windows and len(ran) == len(windows), (name, events)  # each billed once
        per_window[name] = sum(e["billed"] for e in events) / len(windows)
    assert any(e["shared"] for e in by_table["three"]), "the other workers read the result"
    assert abs(per_window["three"] - per_window["one"]) <= 0.05 * per_window["one"], per_window
    # Shares of the rows followed (the snapshot was one worker's copy for all).
    shares = [h.engine.status.rows_synced - f for h, f in zip(three.handles, first, strict=True)]
    assert sum(shares) >= 3_000 and len(shares) == 3
    for share in shares:
        assert abs(share / sum(shares) - 1 / 3) <= 0.15 / 3, shares


def test_sync_killed_ten_times_during_a_change_feed_catch_up(
    bq: bigquery.Client,
    harper_client: HarperClient,
    harper_node: HarperNode,
    write_config: WriteConfig,
    unique: str,
    tmp_path: Path,
) -> None:
    """kill -9 at 10 moments while the feed catches up on 40 commits made after the snapshot,
    restarted each time, then `--once` to the end: every row once, the counts exact."""
    rng = random.Random(13_013)
    dataset = f"feedkill_{unique}"
    make_source(bq, dataset, "keyed", faults.KEYED_SCHEMA, [])
    cols = ["ts", "k", "v", "x"]
    tables = [faults.table_spec("keyed", dataset, "keyed", "Keyed", cols, ["k"])]
    config, cfg = write_config(tables, sync={"settle": "0s", "pollInterval": 1000})
    env = {**os.environ, "TEST_HARPER_PASSWORD": harper_node.password}
    db = cfg.harper.database

    def once() -> None:
        done = subprocess.run(
            faults.sync_command(config, "--once"),
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    once()  # the snapshot of the empty table: the feed starts here
    rows = faults.keyed_rows(30_000, rng)
    for start in range(0, len(rows), 750):  # 40 commits, about one per grid step
        bq.load_table_from_json(rows[start : start + 750], f"{bq.project}.{dataset}.keyed").result()

    def progress() -> int:
        return faults.record_count(harper_client, db, "Keyed")

    faults.kill_ten_times(config, env, tmp_path / "sync.log", progress, len(rows), rng)
    once()
    n = faults.check_table(bq, harper_client, db, dataset, "keyed", "Keyed", cols, ["k"])
    assert n == len(rows)
    checkpoints = StateStore(harper_client, cfg.harper.state_database).get_checkpoints("keyed")
    assert {cp.clock for cp in checkpoints.values()} == {CLOCK_COMMIT}
    assert sum(cp.rows_total for cp in checkpoints.values()) == len(rows)
