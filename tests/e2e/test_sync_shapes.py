"""Table shapes the original got wrong: no key, several tables (one missing at first), updates."""

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.support import harper_rows, make_source, run_once

from harperbq.bigquery.client import make_client
from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.service import SyncService
from harperbq.sync.state import StateStore
from harperbq.sync.stored_status import table_statuses

WriteConfig = Callable[..., tuple[Path, Config]]
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.change_feed("none")  # event-time windows and copy counts
def test_table_without_primary_key(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    """Many rows per timestamp, many windows, identical rows kept as distinct records."""
    rows = [
        {"ts": (T0 + timedelta(seconds=10 * (i // 100))).isoformat(), "mmsi": i % 37, "lat": i / 7}
        for i in range(5_000)
    ]
    rows += [dict(rows[123]) for _ in range(3)]  # identical copies: a multiset, not a set
    dataset = f"nokey_{unique}"
    make_source(
        bq, dataset, "pos", [F("ts", "TIMESTAMP"), F("mmsi", "INT64"), F("lat", "FLOAT64")], rows
    )
    _, cfg = write_config(
        [
            {
                "id": "pos",
                "dataset": dataset,
                "table": "pos",
                "timestampColumn": "ts",
                "columns": ["ts", "mmsi", "lat"],
                "targetTable": "Pos",
                "sync": {"initialBatchSize": 200, "catchupBatchSize": 200, "steadyBatchSize": 200},
            }
        ],
        sync={"settle": "0s"},
    )
    service = run_once(cfg, harper_client)
    got = harper_rows(harper_client, cfg.harper.database, "Pos")
    expected = Counter(
        (iso(datetime.fromisoformat(str(r["ts"]))), r["mmsi"], r["lat"]) for r in rows
    )
    assert Counter((r["ts"], r["mmsi"], r["lat"]) for r in got.values()) == expected
    assert service.runners()[0].engine.status.windows >= 20
    # Re-reading everything changes nothing: same ids, same count.
    StateStore(harper_client, cfg.harper.state_database).delete_checkpoints("pos")
    run_once(cfg, harper_client)
    assert set(harper_rows(harper_client, cfg.harper.database, "Pos")) == set(got)


def _positions(n: int) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
            "mmsi": 200_000_000 + i % 50,
            "vessel_name": f"V{i % 50}",
            "latitude": 1.0 + i / 1e4,
            "longitude": 103.0,
        }
        for i in range(n)
    ]


def test_three_tables_one_missing_at_first(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    """Shaped like the original's multi-table sample: every table starts, a missing one retries
    on its own (error in status and audit) and syncs once it exists; the others never wait."""
    dataset = f"multi_{unique}"
    make_source(
        bq,
        dataset,
        "vessel_positions",
        [
            F("timestamp", "TIMESTAMP"),
            F("mmsi", "INT64"),
            F("vessel_name", "STRING"),
            F("latitude", "FLOAT64"),
            F("longitude", "FLOAT64"),
        ],
        _positions(3_000),
    )
    events = [
        {
            "event_time": (T0 + timedelta(minutes=i)).isoformat(),
            "port_name": f"P{i % 9}",
            "vessel_mmsi": 200_000_000 + i % 50,
            "event_type": "ARRIVAL",
        }
        for i in range(500)
    ]
    make_source(
        bq,
        dataset,
        "port_events",
        [
            F("event_time", "TIMESTAMP"),
            F("port_name", "STRING"),
            F("vessel_mmsi", "INT64"),
            F("event_type", "STRING"),
        ],
        events,
    )
    tables = [
        {
            "id": "vessel_positions",
            "dataset": dataset,
            "table": "vessel_positions",
            "timestampColumn": "timestamp",
            "targetTable": "VesselPositions",
            "columns": ["timestamp", "mmsi", "vessel_name", "latitude", "longitude"],
            "primaryKey": ["mmsi", "timestamp"],
        },
        {
            "id": "port_events",
            "dataset": dataset,
            "table": "port_events",
            "timestampColumn": "event_time",
            "targetTable": "PortEvents",
            "columns": "*",
        },
        {
            "id": "vessel_metadata",
            "dataset": dataset,
            "table": "vessel_metadata",
            "timestampColumn": "last_updated",
            "targetTable": "VesselMetadata",
            "columns": ["last_updated", "mmsi", "vessel_name"],
            "primaryKey": ["mmsi"],
        },
    ]
    _, cfg = write_config(
        tables,
        sync={"settle": "0s", "pollInterval": 500},
        retry={"initialDelay": 100, "maxDelay": "1s"},
    )
    service = SyncService(cfg, harper_client, make_client(cfg.bigquery))
    service.start()
    try:

        def synced(table_id: str) -> int:
            return next(r for r in service.runners(table_id)).engine.status.rows_synced

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            synced("vessel_positions") < 3_000 or synced("port_events") < 500
        ):
            time.sleep(0.2)
        assert synced("vessel_positions") == 3_000 and synced("port_events") == 500
        metadata = next(iter(service.runners("vessel_metadata")))
        assert metadata.engine.status.last_error and "NotFound" in metadata.engine.status.last_error
        status = {s["table"]: s for s in table_statuses(cfg, harper_client)}
        assert status["vessel_metadata"]["last_error"]
        assert status["vessel_positions"]["rows_synced"] == 3_000

        meta = [
            {
                "last_updated": (T0 + timedelta(hours=1)).isoformat(),
                "mmsi": 200_000_000 + i,
                "vessel_name": f"V{i}",
            }
            for i in range(50)
        ]
        make_source(
            bq,
            dataset,
            "vessel_metadata",
            [F("last_updated", "TIMESTAMP"), F("mmsi", "INT64"), F("vessel_name", "STRING")],
            meta,
        )
        while time.monotonic() < deadline and synced("vessel_metadata") < 50:
            time.sleep(0.2)
        assert synced("vessel_metadata") == 50
    finally:
        service.stop()
    db = cfg.harper.database
    positions = harper_rows(harper_client, db, "VesselPositions")
    assert set(positions) == {
        f"{r['mmsi']}|{iso(datetime.fromisoformat(r['timestamp']))}" for r in _positions(3_000)
    }
    assert len(harper_rows(harper_client, db, "PortEvents")) == 500
    assert {
        r["vessel_name"] for r in harper_rows(harper_client, db, "VesselMetadata").values()
    } == {f"V{i}" for i in range(50)}
    audit = StateStore(harper_client, cfg.harper.state_database).recent_audit(
        "vessel_metadata", kind="error"
    )
    assert audit and "vessel_metadata" in audit[0].message


@pytest.mark.change_feed("none")  # an UPDATE seen by its cursor
def test_updated_source_row_replaces_its_record(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    """With primaryKey and an update-time cursor, a changed row replaces its record (G6), and
    attributes the sync does not select are kept (merge, not overwrite)."""
    dataset = f"upd_{unique}"
    rows = [
        {
            "id": f"v{i}",
            "updated_at": (T0 + timedelta(seconds=i)).isoformat(),
            "draft": 10.0 + i,
            "secret": "x",
        }
        for i in range(100)
    ]
    make_source(
        bq,
        dataset,
        "meta",
        [
            F("id", "STRING"),
            F("updated_at", "TIMESTAMP"),
            F("draft", "FLOAT64"),
            F("secret", "STRING"),
        ],
        rows,
    )
    _, cfg = write_config(
        [
            {
                "id": "meta",
                "dataset": dataset,
                "table": "meta",
                "timestampColumn": "updated_at",
                "columns": ["id", "updated_at", "draft"],
                "targetTable": "Meta",
                "primaryKey": ["id"],
            }
        ],
        sync={"settle": "0s"},
    )
    run_once(cfg, harper_client)
    db = cfg.harper.database
    harper_client.upsert(db, "Meta", [{"id": "v7", "note": "kept by Harper"}])
    bq.query(
        f"UPDATE `{bq.project}.{dataset}.meta` SET draft = 99.5, "  # noqa: S608
        "updated_at = CURRENT_TIMESTAMP() WHERE id = 'v7'"
    ).result()
    run_once(cfg, harper_client)
    got = harper_rows(harper_client, db, "Meta")
    assert len(got) == 100
    assert got["v7"]["draft"] == 99.5 and got["v7"]["note"] == "kept by Harper"
    assert "secret" not in got["v7"]
    assert all(got[f"v{i}"]["draft"] == 10.0 + i for i in range(100) if i != 7)
