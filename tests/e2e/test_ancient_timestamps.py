"""Cursor values in years 1, 999 and 1000 next to ordinary ones never stall a table.

`strftime("%Y")` writes year 999 as "999" on Linux; a checkpoint in that form was refused
(not ISO 8601) and the table never moved. Every time text now has a four-digit year.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.support import harper_rows, make_source, run_once

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.state import StateStore
from harperbq.times import to_micros

YEARS = (1, 999, 1000, 2024)


@pytest.mark.parametrize("read_api", ["query", "storage"])
def test_rows_in_years_1_999_1000_all_sync_and_checkpoint_moves(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
    read_api: str,
) -> None:
    rows = [
        {
            "ts": (
                datetime(YEARS[i % 4], 1, 1, tzinfo=UTC) + timedelta(seconds=i // 4)
            ).isoformat(),
            "k": i,
            "d": f"{YEARS[i % 4]:04d}-06-0{1 + i % 9}T00:00:0{i % 10}",
        }
        for i in range(2_000)
    ]
    dataset = f"old_{unique}"
    schema = [F("ts", "TIMESTAMP"), F("k", "INT64"), F("d", "DATETIME")]
    make_source(bq, dataset, "t", schema, rows)
    newest = max(datetime.fromisoformat(str(r["ts"])) for r in rows)
    _, cfg = write_config(
        [
            {
                "id": "old",
                "dataset": dataset,
                "table": "t",
                "timestampColumn": "ts",
                "columns": ["ts", "k", "d"],
                "targetTable": "Old",
                "primaryKey": ["k"],
                "partitions": 4,
                "sync": {"initialBatchSize": 300},
            },
            {
                "id": "civil",
                "dataset": dataset,
                "table": "t",
                "timestampColumn": "d",
                "columns": ["ts", "k", "d"],
                "targetTable": "Civil",
                "primaryKey": ["k"],
                "partitions": 2,
            },
        ],
        sync={"settle": "0s"},
        bigquery={"readApi": read_api},
    )
    run_once(cfg, harper_client)

    got = harper_rows(harper_client, cfg.harper.database, "Old")
    assert set(got) == {str(i) for i in range(2_000)}
    assert got["1"]["ts"] == "0999-01-01T00:00:00.000000Z"
    assert got["4"]["ts"] == "0001-01-01T00:00:01.000000Z"
    assert got["5"]["d"] == "0999-06-06T00:00:05.000000"
    civil = harper_rows(harper_client, cfg.harper.database, "Civil")
    assert set(civil) == {str(i) for i in range(2_000)}
    state = StateStore(harper_client, cfg.harper.state_database)
    for table_id in ("old", "civil"):
        checkpoints = state.get_checkpoints(table_id)
        assert checkpoints and all(cp.hi is not None for cp in checkpoints.values()), table_id
        assert all((cp.hi or 0) > to_micros(newest) for cp in checkpoints.values())
