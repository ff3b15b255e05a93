"""`sync.workers: auto` against a real Harper: a worker is added while the lag grows (Harper
stops taking the target's writes, at the transport) and removed once every table is caught up
again, and Harper ends equal to BigQuery.
"""

from collections.abc import Callable
from pathlib import Path

from google.cloud import bigquery
from tests.e2e.live import records, running, wait_for
from tests.e2e.test_sync_faults import check_table
from tests.support import FaultProxy, keyed_table

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.state import StateStore

ROWS, MORE = 400, 1_000


def test_auto_adds_a_worker_while_lag_grows_and_removes_it_when_caught_up(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    proxy: FaultProxy,
    unique: str,
) -> None:
    dataset = f"auto_{unique}"
    table = keyed_table(bq, dataset, ROWS, partitions=4, sync={"pollInterval": 500})
    _, cfg = write_config(
        [table],
        sync={
            "workers": "auto",
            "minWorkers": 1,
            "maxWorkers": 2,
            "heartbeatInterval": "1s",
            "lease": "4s",
            "settle": "0s",
            "joinGrace": "0s",
        },
        validation={"enabled": False},
    )
    db = cfg.harper.database
    through_proxy = proxy.client()
    with through_proxy, running(cfg, through_proxy) as service:
        scaler = service.autoscaler
        assert scaler is not None

        def workers() -> int:
            return len(service.membership.workers)

        def caught_up() -> bool:
            return all(h.engine.status.caught_up for h in service.handles)

        wait_for("the first rows", lambda: len(records(harper_client, db, "T")) == ROWS, 90)
        wait_for("the head", caught_up, 30)
        assert workers() == 1

        # Harper stops taking the target's writes; new rows arrive: the lag grows.
        proxy.hold("T")
        insert = (
            f"INSERT INTO `{bq.project}.{dataset}.t` (ts, k) "  # noqa: S608 - our own names
            "SELECT TIMESTAMP_ADD(TIMESTAMP '2024-03-01', INTERVAL k SECOND), k "
            f"FROM UNNEST(GENERATE_ARRAY({ROWS}, {ROWS + MORE - 1})) AS k"
        )
        bq.query(insert).result()
        wait_for("a second worker", lambda: workers() == 2, 60)
        assert scaler.desired == 2 and "grew" in scaler.last_reason, scaler.last_reason
        assert proxy.held > 0, [(round(s.at, 1), s.lag_s, s.caught_up) for s in scaler.history]
        added = f"{service.node}-1"
        assert {h.worker_id for h in service.handles} == {f"{service.node}-0", added}

        proxy.release()
        wait_for("every row", lambda: len(records(harper_client, db, "T")) == ROWS + MORE, 90)
        wait_for("back to one worker", lambda: workers() == 1, 90)
        assert "caught up" in scaler.last_reason, scaler.last_reason
        assert {h.worker_id for h in service.handles} == {f"{service.node}-0"}
        # The added worker's row is gone, so every observer hands its partitions back.
        state = StateStore(harper_client, cfg.harper.state_database)
        # Its row is deleted as the worker stops, which may land just after the handle is gone.
        wait_for(
            "the added worker's row deleted",
            lambda: added not in {w.worker_id for w in state.workers()},
            30,
        )
        wait_for("the head again", caught_up, 30)
        checkpoints = state.get_checkpoints("t")
        assert sorted(checkpoints) == [0, 1, 2, 3]
    check_table(bq, harper_client, db, dataset, "t", "T", ["ts", "k"], ["k"])
