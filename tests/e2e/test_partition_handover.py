"""Partitions that arrive without a checkpoint (their previous owner died before its first window)
while the others are far ahead: they start from their own oldest row, and when that row is newer
than where the others stand they join them there instead of being planned forever."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.support import harper_rows, make_source, run_once

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.cluster.partitions import partition_of
from harperbq.sync.state import Checkpoint, StateStore
from harperbq.times import to_micros

CHANGE_FEED = "none"  # event-time windows: what these tests are about

P = 4
T0 = datetime(2024, 8, 1, tzinfo=UTC)


def test_unsynced_partitions_newer_than_the_rest_join_them(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
) -> None:
    mid = T0 + timedelta(hours=1)
    rows = []
    for k in range(4_000):
        # Partitions 0 and 1 have rows on both sides of `mid`; partitions 2 and 3 only after it.
        ts = T0 + timedelta(seconds=k)
        if partition_of([k], P, ["INT64"]) >= 2 and ts < mid:
            ts += timedelta(hours=2)
        rows.append({"ts": ts.isoformat(), "k": k})
    dataset = f"handover_{unique}"
    make_source(bq, dataset, "t", [F("ts", "TIMESTAMP"), F("k", "INT64")], rows)
    _, cfg = write_config(
        [
            {
                "id": "t",
                "dataset": dataset,
                "table": "t",
                "timestampColumn": "ts",
                "columns": ["ts", "k"],
                "targetTable": "T",
                "primaryKey": ["k"],
                "partitions": P,
            }
        ],
        sync={"settle": "0s"},
    )
    # As a previous owner left it: partitions 0 and 1 synced up to `mid`, 2 and 3 never.
    state = StateStore(harper_client, cfg.harper.state_database)
    state.put_checkpoints(
        [Checkpoint("t", p, hi=to_micros(mid), worker_id="gone-0") for p in (0, 1)]
    )
    run_once(cfg, harper_client, timeout_s=120)
    got = set(harper_rows(harper_client, cfg.harper.database, "T"))
    expected = {
        str(k)
        for k, row in enumerate(rows)
        if partition_of([k], P, ["INT64"]) >= 2 or datetime.fromisoformat(str(row["ts"])) >= mid
    }
    assert got == expected  # rows of 0 and 1 before `mid` were the previous owner's to write
    checkpoints = state.get_checkpoints("t")
    assert sorted(checkpoints) == [0, 1, 2, 3]
    assert len({cp.hi for cp in checkpoints.values()}) == 1  # one group again
