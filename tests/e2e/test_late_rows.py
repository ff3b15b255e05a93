"""G1 late rows: rows that appear behind the checkpoint are re-synced by reconciliation, exactly.

The original lost every row that became visible with a timestamp at or before its checkpoint.
Here a running sync picks such rows up within one `reconcileInterval`, re-reads only the
windows whose source count changed, and duplicates nothing (the table has no key, and one late
row is an identical copy of an existing one).
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e.live import records, running, wait_for
from tests.support import make_source

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.cluster.partitions import partition_of
from harperbq.sync.service import TableHandle
from harperbq.sync.table.grid import Cell, recorded_cells

CHANGE_FEED = "none"  # event-time windows: what these tests are about

WriteConfig = Callable[..., tuple[Path, Config]]
PARTITIONS = 4
RECONCILE_S = 3.0


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micros(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def content(rows: dict[str, dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter((r["ts"], r["mmsi"], r["lat"]) for r in rows.values())


def test_late_rows_reconciled_exactly(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=90)
    rows: list[dict[str, Any]] = [
        {"ts": (start + timedelta(seconds=20 * i)).isoformat(), "mmsi": m, "lat": i + m / 10}
        for i in range(88 * 3)
        for m in (1, 2, 3)
    ]
    dataset = f"late_{unique}"
    schema = [F("ts", "TIMESTAMP"), F("mmsi", "INT64"), F("lat", "FLOAT64")]
    make_source(bq, dataset, "pos", schema, rows)
    _, cfg = write_config(
        [
            {
                "id": "pos",
                "dataset": dataset,
                "table": "pos",
                "timestampColumn": "ts",
                "columns": ["ts", "mmsi", "lat"],
                "targetTable": "LatePos",
                "partitions": PARTITIONS,
                "lateness": "2h",
                "reconcileInterval": f"{RECONCILE_S}s",
                "sync": {"initialBatchSize": 200, "catchupBatchSize": 200, "steadyBatchSize": 200},
            }
        ],
        sync={"settle": "1s", "pollInterval": 300},
        validation={"enabled": False},
    )
    database = cfg.harper.database
    with running(cfg, harper_client) as service:
        handle: TableHandle = service.handles[0]
        assert handle.maintenance is not None
        stats = handle.maintenance.reconciler.stats
        wait_for(
            "the initial sync",
            lambda: (
                len(records(harper_client, database, "LatePos")) == len(rows) and stats.runs >= 1
            ),
        )
        # Late rows: 1 minute to 1 hour behind the checkpoint, in windows already synced; one
        # identical copy of an existing row (no key: it must become a second record, once).
        inserted_at = datetime.now(UTC)
        late: list[dict[str, Any]] = [
            {
                "ts": (inserted_at - timedelta(minutes=m, microseconds=m * 1_001)).isoformat(),
                "mmsi": 7,
                "lat": float(m),
            }
            for m in (1, 3, 7, 15, 30, 45, 59)
        ]
        late.append(dict(rows[100]))  # identical copy
        late.append({**rows[200], "mmsi": 9})  # new row on an existing timestamp
        before = replace(stats)
        recorded = recorded_cells(handle.engine.checkpoints(), range(PARTITIONS))
        expected_cells = {cell_of(recorded, r["ts"]) for r in late}
        everything = rows + late
        expected_reread = sum(
            1 for r in everything if cell_of(recorded, r["ts"], strict=False) in expected_cells
        )

        bq.load_table_from_json(late, f"{bq.project}.{dataset}.pos").result()
        expected = Counter(
            (iso(datetime.fromisoformat(r["ts"])), r["mmsi"], r["lat"]) for r in everything
        )
        took = wait_for(
            "late rows in Harper",
            lambda: content(records(harper_client, database, "LatePos")) == expected,
        )
        wait_for("the run's bookkeeping", lambda: stats.runs > before.runs)
        # Picked up within one reconcile interval (plus the run's own work and a poll).
        assert took <= RECONCILE_S + (stats.last_duration_s or 0) + 3.0, took

        # Exactly the changed (partition, window) cells were re-read, nothing else.
        assert stats.windows_resynced - before.windows_resynced == len(expected_cells)
        assert stats.rows_reread - before.rows_reread == expected_reread
        # One aggregate query per reconcile run, whatever the number of windows.
        assert stats.queries - before.queries == stats.runs - before.runs

        # Later runs find nothing to do: the corrected counts were recorded.
        settled = replace(stats)
        wait_for("two more reconcile runs", lambda: stats.runs >= settled.runs + 2)
        assert stats.windows_resynced == settled.windows_resynced
        assert stats.rows_reread == settled.rows_reread
    got = records(harper_client, database, "LatePos")
    assert len(got) == len(everything)  # no duplicates
    assert content(got) == expected


def cell_of(recorded: dict[Cell, int], ts: str, strict: bool = True) -> Cell | None:
    """The recorded (partition, window) cell holding a row of this timestamp."""
    moment = datetime.fromisoformat(ts)
    at = micros(moment)
    partition = partition_of([iso(moment)], PARTITIONS, ["TIMESTAMP"])
    found = [c for c in recorded if c.partition == partition and c.lo <= at < c.hi]
    if strict:
        assert len(found) == 1, f"{ts} is not in exactly one synced window: {found}"
    return found[0] if found else None
