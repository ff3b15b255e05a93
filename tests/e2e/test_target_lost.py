"""Issue 11 item 9: a Harper target table dropped, or dropped and recreated empty, while syncing.

It used to be recreated empty and the sync carried on from its checkpoint: thousands of rows
gone until someone ran `validate --repair`. Now the loss is noticed (the ids written last are
looked up by primary key) and the table is re-synced from the source by itself, with an audit
entry and a metric.
"""

from collections.abc import Callable
from pathlib import Path

import pytest
from google.cloud import bigquery
from tests.e2e.live import records, running, wait_for
from tests.support import keyed_table

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.harper.schema import ColumnSpec, ensure_target_table
from harperbq.sync.state import StateStore

WriteConfig = Callable[..., tuple[Path, Config]]
ROWS = 9_000
BATCHES = {"initialBatchSize": 500, "catchupBatchSize": 500, "steadyBatchSize": 500}


def keys(client: HarperClient, database: str) -> list[int]:
    return sorted(int(r["k"]) for r in records(client, database, "T").values())


@pytest.mark.parametrize("recreate", [False, True], ids=["dropped", "dropped-and-recreated"])
def test_lost_target_is_resynced_from_the_source(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: WriteConfig,
    unique: str,
    recreate: bool,
) -> None:
    spec = keyed_table(bq, f"lost_{unique}", ROWS, partitions=2, sync=BATCHES)
    _, cfg = write_config(
        [spec], sync={"settle": "0s", "pollInterval": 200}, validation={"enabled": False}
    )
    database = cfg.harper.database
    state = StateStore(harper_client, cfg.harper.state_database)
    with running(cfg, harper_client) as service:
        # Lost after checkpoints moved past some of its rows: before any checkpoint (under load
        # the first snapshot can still be copying) a retry simply writes everything again.
        wait_for(
            "part of the catch-up, checkpointed",
            lambda: (
                len(records(harper_client, database, "T")) > 2_000
                and sum(cp.rows_total for cp in state.get_checkpoints("t").values()) > 0
            ),
        )
        harper_client.drop_table(database, "T")
        if recreate:  # someone else creates it again, empty, before the sync notices
            ensure_target_table(
                harper_client,
                database,
                "T",
                [ColumnSpec("ts", "TIMESTAMP"), ColumnSpec("k", "INT64")],
                cursor_column="ts",
            )
        wait_for(
            "Harper equal to BigQuery again",
            lambda: keys(harper_client, database) == list(range(ROWS)),
            timeout_s=180,
        )
        resets = state.recent_audit("t", kind="reset", limit=10)
        assert resets and "re-syncing from the source" in resets[0].message
        assert resets[0].details["partitions_reset"]
        metrics = service.metrics.exposition().decode()
        events = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("harperbq_table_events_total{")
            and 'reason="target_lost"' in line
            and 'table="t"' in line
        ]
        assert events and sum(events) >= 1, metrics
        assert sum(h.engine.status.target_resets for h in service.handles) >= 1
    # ... and the checkpoints count the rows of the new table, not of the lost one.
    rows = sum(cp.rows_total for cp in state.get_checkpoints("t").values())
    assert ROWS <= rows < 2 * ROWS - 2_000
