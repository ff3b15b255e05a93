"""The engine end to end: real Harper, the real BigQuery client on the emulator."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import bigquery
from tests.support import harper_rows, make_source, run_once

from harperbq.config import Config
from harperbq.harper.client import HarperClient


@pytest.mark.change_feed("none")  # how event-time windows split
def test_ten_thousand_rows_on_one_timestamp(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Any, Config]],
    unique: str,
) -> None:
    """The original lost every row sharing a batch-boundary timestamp; we lose none."""
    ts = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    rows = [{"ts": ts.isoformat(), "k": i, "v": f"value-{i}"} for i in range(10_000)]
    # A few neighbours on either side, so the dense instant sits between windows.
    rows += [
        {"ts": (ts + timedelta(seconds=s)).isoformat(), "k": 20_000 + s, "v": "n"}
        for s in (-5, -1, 1, 5)
    ]
    dataset = f"src_{unique}"
    make_source(
        bq,
        dataset,
        "same_ts",
        [
            bigquery.SchemaField("ts", "TIMESTAMP"),
            bigquery.SchemaField("k", "INT64"),
            bigquery.SchemaField("v", "STRING"),
        ],
        rows,
    )
    _, cfg = write_config(
        [
            {
                "id": "same_ts",
                "dataset": dataset,
                "table": "same_ts",
                "timestampColumn": "ts",
                "columns": ["ts", "k", "v"],
                "targetTable": "SameTs",
                "primaryKey": ["k"],
                "sync": {"initialBatchSize": 500, "catchupBatchSize": 500, "steadyBatchSize": 500},
            }
        ],
        sync={"settle": "0s"},
    )
    service = run_once(cfg, harper_client)
    got = harper_rows(harper_client, cfg.harper.database, "SameTs")
    assert len(got) == len(rows)
    for row in rows:
        record = got[str(row["k"])]
        assert record["k"] == row["k"] and record["v"] == row["v"]
        expected_ts = datetime.fromisoformat(str(row["ts"])).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert record["ts"] == expected_ts
    status = service.runners()[0].engine.status
    assert status.rows_synced == len(rows) and status.windows >= 2
