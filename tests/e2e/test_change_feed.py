"""The change feed against the strict local BigQuery and a real Harper, row by row.

A table without checkpoints is first copied as a snapshot (Storage Read with `snapshot_time`),
then followed by commit time: rows inserted later arrive whatever their event time (a backfill
of an hour three days old, rows up to 30 days old), `CHANGES` applies updates and deletes, and a
checkpoint older than the time-travel window resumes through a new snapshot.
"""

# ruff: noqa: S608 - test SQL over the tests' own tables

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e.live import records, running, wait_for
from tests.support import make_source, run_once

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.service import TableHandle
from harperbq.sync.state import CLOCK_COMMIT, StateStore
from harperbq.sync.windows import iso_text

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
        # 12 keys deleted; key 5 may be deleted and re-inserted within one window (no delete)
        assert handle.engine.status.rows_deleted >= 11
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
        sync={"settle": "1s"},
        validation={"enabled": False},
    )
    database = cfg.harper.database
    first = run_once(cfg, harper_client)
    assert harper_content(harper_client, database, "TravelPos") == source_rows(bq, table)
    first_scan = first.handles[0].engine.source.base.storage_bytes_scanned  # type: ignore[attr-defined]
    assert first_scan > 0

    # The sync was away for three days: its checkpoints are older than the 48 h window.
    state = StateStore(harper_client, cfg.harper.state_database)
    stale = iso_text(now - timedelta(days=3))
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
    assert all(cp.hi and cp.hi > stale for cp in state.get_checkpoints("pos").values())
