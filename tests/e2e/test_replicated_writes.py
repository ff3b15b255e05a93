"""Data writes confirmed by peers (`harper.replicatedConfirmation`) on the real 3-node cluster.

What must hold: a confirmed write returns only once a peer holds it; asking for more peers than
exist is a configuration error naming the key; a confirmation that never comes is "unknown"
(`ReplicationUnconfirmed`), never success; and a sync with `auto` confirms on one peer and still
ends equal to BigQuery. The pause test is last: it stops both peers.
"""

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import bigquery
from tests.e2e.test_cluster import poll
from tests.support import harper_rows, make_source, run_once, run_to_end

from harperbq.bigquery.client import make_client
from harperbq.config import Config, parse_config
from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import (
    AlreadyExistsError,
    AuthenticationError,
    HarperError,
    NotFound,
)
from harperbq.harper.replication import (
    KEY,
    Confirmations,
    ReplicationConfigError,
    ReplicationUnconfirmed,
)
from harperbq.sync.service import SyncService
from harperbq.sync.state import StateStore

pytestmark = pytest.mark.cluster
DB, TABLE = "repl_writes", "t"
SYNC_DB, SYNC_STATE = "repl_writes_sync", "repl_writes_state"


def confirmed_write_works(client: HarperClient, timeout_s: float = 5.0) -> bool:
    """One confirmation-1 upsert answered in time (a probe, so failures are just False)."""
    try:
        client.upsert(
            DB,
            TABLE,
            [{"id": f"probe-{uuid.uuid4().hex[:8]}"}],
            replicated_confirmation=1,
            timeout=timeout_s,
        )
        return True
    except HarperError:
        return False


def has_table(client: HarperClient) -> bool:
    try:
        return TABLE in client.describe_database(DB)
    except NotFound:
        return False  # the database has not reached this node yet


@pytest.fixture(scope="module")
def clients(harper_cluster: list[HarperNode]) -> Iterator[list[HarperClient]]:
    """A client per node, `repl_writes.t` on every node, and confirmed writes working."""
    nodes = [HarperClient(n.url, n.username, n.password, max_retries=1) for n in harper_cluster]
    try:
        with contextlib.suppress(AlreadyExistsError):
            nodes[0].create_table(DB, TABLE)
        poll(
            lambda: all(has_table(peer) for peer in nodes[1:]),
            30,
            "the table on every node",
        )
        poll(lambda: confirmed_write_works(nodes[0]), 60, "confirmed writes to work")
        yield nodes
    finally:
        for client in nodes:
            client.close()


def on_node(client: HarperClient, record_id: str) -> bool:
    return bool(client.search_by_id(DB, TABLE, [record_id]))


def test_a_confirmed_write_is_on_a_peer_when_it_returns(clients: list[HarperClient]) -> None:
    first, *peers = clients
    record_id = f"r-{uuid.uuid4().hex[:8]}"
    first.upsert(DB, TABLE, [{"id": record_id, "v": 1}], replicated_confirmation=1, timeout=30)
    assert any(on_node(peer, record_id) for peer in peers), "no peer holds the confirmed upsert"
    first.delete(DB, TABLE, [record_id], replicated_confirmation=1, timeout=30)
    assert any(not on_node(peer, record_id) for peer in peers), "every peer still holds it"


def test_more_confirmations_than_peers_is_a_config_error(clients: list[HarperClient]) -> None:
    with pytest.raises(ReplicationConfigError) as caught:
        clients[0].upsert(DB, TABLE, [{"id": "too-many"}], replicated_confirmation=5, timeout=10)
    assert KEY in str(caught.value) and caught.value.permanent
    assert "cannot confirm replication" in (caught.value.harper_message or "").lower()


def test_auto_decides_one_on_the_cluster(clients: list[HarperClient]) -> None:
    decision = Confirmations(clients[0].cluster_status).decision()
    assert decision.count == 1, decision.reason


def test_a_non_super_user_may_confirm_but_not_read_cluster_status(
    harper_cluster: list[HarperNode], clients: list[HarperClient]
) -> None:
    """What the docs say about permissions, checked on the real Harper."""
    name = f"writer_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    table_permission = {
        "read": True,
        "insert": True,
        "update": True,
        "delete": True,
        "attribute_permissions": [],
    }
    first = clients[0]  # roles and users replicate like the rest of the system database
    first.operation(
        {
            "operation": "add_role",
            "role": name,
            "permission": {"super_user": False, DB: {"tables": {TABLE: table_permission}}},
        }
    )
    first.operation(
        {
            "operation": "add_user",
            "role": name,
            "username": name,
            "password": password,
            "active": True,
        }
    )
    node = harper_cluster[0]
    with HarperClient(node.url, name, password, max_retries=0) as writer:
        poll(lambda: confirmed_write_works(writer, 10.0), 30, "the user's confirmed write")
        with pytest.raises(AuthenticationError):
            writer.cluster_status()
        decision = Confirmations(writer.cluster_status).decision()
    assert decision.count == 0 and "super_user" in decision.reason and KEY in decision.reason


def sync_config(
    node: HarperNode, emulator: Emulator, dataset: str, table_id: str = "t", **harper: Any
) -> Config:
    """One keyed table `dataset.t` synced into `repl_writes_sync.<table_id>` on `node`."""
    return parse_config(
        {
            "harper": {
                "url": node.url,
                "username": node.username,
                "password": node.password,
                "database": SYNC_DB,
                "stateDatabase": SYNC_STATE,
                **harper,
            },
            "bigquery": {
                "projectId": emulator.project,
                "endpoint": emulator.endpoint,
                "storageEndpoint": emulator.grpc_endpoint,
                "tables": [
                    {
                        "id": table_id,
                        "dataset": dataset,
                        "table": "t",
                        "timestampColumn": "ts",
                        "columns": ["ts", "k"],
                        "targetTable": table_id.upper(),
                        "primaryKey": ["k"],
                        "partitions": 2,
                        "sync": {"changeFeed": "none"},  # by event time: the rows are old
                    }
                ],
            },
            "retry": {"maxAttempts": 5, "initialDelay": 200, "maxDelay": "2s"},
        },
        environ={},
    )


def source_rows(bq: bigquery.Client, count: int) -> tuple[str, list[dict[str, Any]]]:
    """A fresh dataset with table `t`: `count` rows one second apart, key `k`."""
    dataset = f"repl_{uuid.uuid4().hex[:8]}"
    start = datetime(2024, 3, 1, tzinfo=UTC)
    rows = [{"ts": (start + timedelta(seconds=i)).isoformat(), "k": i} for i in range(count)]
    schema = [bigquery.SchemaField("ts", "TIMESTAMP"), bigquery.SchemaField("k", "INT64")]
    make_source(bq, dataset, "t", schema, rows)
    return dataset, rows


def test_a_sync_with_auto_confirms_on_a_peer_and_equals_bigquery(
    harper_cluster: list[HarperNode],
    clients: list[HarperClient],
    bq_emulator: Emulator,
    bq: bigquery.Client,
) -> None:
    dataset, rows = source_rows(bq, 120)
    # A short wait: the first confirmed write into a new database may go unanswered once
    # (docs/harper.md, quirks); the window is then retried, as in production.
    cfg = sync_config(harper_cluster[0], bq_emulator, dataset, replicationTimeout="10s")
    assert cfg.harper.replicated_confirmation == "auto"
    service = run_once(cfg, clients[0])
    metrics = service.metrics
    assert metrics.registry.get_sample_value("harperbq_replication_confirmations") == 1
    waits = metrics.registry.get_sample_value("harperbq_replication_wait_seconds_count")
    assert waits is not None and waits >= 1, "no data write was confirmed by a peer"
    synced = harper_rows(clients[0], SYNC_DB, "T")
    assert sorted(int(r["k"]) for r in synced.values()) == list(range(120))
    for row in rows:
        stored = synced[str(row["k"])]
        assert stored["k"] == row["k"]


def test_a_sync_asking_more_peers_than_exist_fails_at_once_without_checkpoints(
    harper_cluster: list[HarperNode],
    clients: list[HarperClient],
    bq_emulator: Emulator,
    bq: bigquery.Client,
) -> None:
    dataset, _ = source_rows(bq, 10)
    cfg = sync_config(
        harper_cluster[0], bq_emulator, dataset, table_id="toomany", replicatedConfirmation=5
    )
    service = SyncService(cfg, clients[0], make_client(cfg.bigquery), once=True)
    ok, by_itself = run_to_end(service, 120)
    assert not ok and by_itself  # given up at once: permanent, not retried to the budget
    runner = service.runners()[0]
    assert runner.attempts == 1
    assert KEY in (runner.engine.status.last_error or ""), runner.engine.status.last_error
    assert StateStore(clients[0], SYNC_STATE).get_checkpoints("toomany") == {}


def test_an_unanswered_confirmation_is_unknown_not_success(
    harper_cluster: list[HarperNode], clients: list[HarperClient]
) -> None:
    """Last in the module: both peers are paused, then resumed and waited for."""
    first = clients[0]
    pids = [node.pid() for node in harper_cluster[1:]]
    assert all(pids), f"peer pids unknown: {pids}"
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(ReplicationUnconfirmed) as caught:
            first.upsert(DB, TABLE, [{"id": "paused"}], replicated_confirmation=1, timeout=3)
        assert caught.value.reason == "timeout" and not caught.value.permanent
        assert time.monotonic() - started < 20  # the short timeout, not retried inside
        assert on_node(first, "paused")  # applied locally all the same: "unknown", not "failed"
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)  # type: ignore[arg-type]
    poll(lambda: confirmed_write_works(first), 60, "confirmed writes after resuming the peers")
