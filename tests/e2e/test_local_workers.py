"""`sync.workers: N` runs N workers in one process, each over its own partitions and checkpoints."""

from collections.abc import Callable
from pathlib import Path

from google.cloud import bigquery
from tests.support import harper_rows, keyed_table, run_once

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.state import StateStore


def test_three_workers_in_one_process_share_the_partitions(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
) -> None:
    table = keyed_table(bq, f"workers_{unique}", 3_000, partitions=12)
    _, cfg = write_config(
        [table],
        # Each worker copies its own partitions (`snapshotBy: each`): the one-copier default
        # has its own tests (test_change_feed, test_cluster).
        sync={"settle": "0s", "workers": 3, "snapshotBy": "each"},
    )
    service = run_once(cfg, harper_client)
    assert set(harper_rows(harper_client, cfg.harper.database, "T")) == {
        str(i) for i in range(3_000)
    }
    workers = sorted({h.worker_id for h in service.handles})
    assert workers == [f"{service.node}-{i}" for i in range(3)]
    written = {h.worker_id: h.engine.status.rows_synced for h in service.handles}
    assert sum(written.values()) == 3_000 and all(n > 0 for n in written.values())
    checkpoints = StateStore(harper_client, cfg.harper.state_database).get_checkpoints("t")
    assert len(checkpoints) == 12
    by_worker: dict[str, int] = {}
    for cp in checkpoints.values():
        by_worker[cp.worker_id] = by_worker.get(cp.worker_id, 0) + 1
    assert by_worker == {w: 4 for w in workers}  # 12 partitions, 4 each, own checkpoints
