"""Faults of a real three-node Harper cluster while three sync workers follow live writes (G4).

One flow, in order, each phase ending with every Harper node equal to BigQuery row by row:
(a) one Harper node frozen with SIGSTOP for twice the lease: its worker can no longer heartbeat,
    the other two take its partitions; after SIGCONT it takes its share back;
(b) replication to one node cut: its worker leaves and its Harper is frozen while the other two
    go on writing; healed, it catches up on everything written meanwhile;
(c) one Harper node killed (SIGKILL) right after its worker moved a checkpoint, then restarted:
    Harper 4.7 can come back without the transactions of its last moment (its own and those
    replicated to it) while its peers have them; the worker notices the new Harper process and
    validates and repairs the recent range there (`harper.restarts`), with no operator.

Faults are process-level (signals to Harper's own process), never a stand-in for our code.
"""

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.cloud import bigquery
from tests.e2e.test_cluster import (
    LEASE_S,
    SCHEMA,
    Workers,
    assert_every_node_equals_source,
    expected_ids,
    live_writes,
    poll,
    record_count,
    rows_at,
    worker_info,
)
from tests.support import make_source

from harperbq.devstack import DevStackError, harper
from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.sync.cluster import membership
from harperbq.sync.state import StateStore

pytestmark = pytest.mark.cluster
DB, STATE = "faults", "faults_state"  # databases of their own on the shared cluster
PARTITIONS = 12
NAMES = ("f0", "f1", "f2")


@contextmanager
def frozen(node: HarperNode) -> Iterator[None]:
    """Harper's process stopped (SIGSTOP) for the block, resumed (SIGCONT) whatever happens."""
    pid = node.pid()
    assert pid, f"no pid for {node.url}"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def shares(client: HarperClient) -> dict[str, int]:
    """Partitions owned per live worker, as one node's copy of the heartbeats says."""
    info = worker_info(client, state=STATE)
    return {w: i["partitions"] for w, i in info.items() if i["live"]}


def test_node_paused_and_replication_cut_end_equal(
    tmp_path: Path,
    fault_cluster: list[HarperNode],
    harper_install: Path,
    bq_emulator: Emulator,
    bq: bigquery.Client,
) -> None:
    dataset = f"faults_{int(time.time())}"
    make_source(bq, dataset, "positions", SCHEMA, rows_at(datetime(2024, 6, 1, tzinfo=UTC), 6_000))
    table = bigquery.Table(f"{bq.project}.{dataset}.positions", schema=SCHEMA)
    workers = Workers(
        tmp_path,
        fault_cluster,
        bq_emulator,
        dataset,
        db=DB,
        state=STATE,
        tables=("positions",),
        partitions=PARTITIONS,
    )
    clients = [HarperClient(n.url, n.username, n.password) for n in fault_cluster]
    try:
        for name, node in zip(NAMES, fault_cluster, strict=True):
            workers.start(name, node)
        assert_every_node_equals_source(clients, expected_ids(bq, dataset), 180, db=DB)
        poll(lambda: sorted(shares(clients[0]).values()) == [4, 4, 4], 60, "an even split")

        with live_writes(bq, table, rows=100, every_s=0.5, first_mmsi=50_000):
            # (a) node 1 frozen for twice the lease: f1 cannot heartbeat and is handed over.
            with frozen(fault_cluster[1]):
                paused_at = time.monotonic()
                poll(
                    lambda: shares(clients[0]) == {"f0-0": 6, "f2-0": 6},
                    2 * LEASE_S + 30,
                    "f0 and f2 to own every partition while node 1 is frozen",
                )
                remaining = 2 * LEASE_S - (time.monotonic() - paused_at)
                if remaining > 0:
                    time.sleep(remaining)  # the fault's length, not a wait for a condition
            poll(lambda: sorted(shares(clients[0]).values()) == [4, 4, 4], 60, "f1 back")

            # (b) replication to node 2 cut: its worker leaves, its Harper is frozen while the
            # others write on; the rows they write meanwhile must reach it once healed.
            workers.stop("f2")
            poll(lambda: "f2-0" not in shares(clients[0]), 30, "f2 to leave")
            before = record_count(clients[0], "Positions", DB)
            with frozen(fault_cluster[2]):
                poll(
                    lambda: record_count(clients[0], "Positions", DB) >= before + 1_000,
                    120,
                    "rows written on the other nodes while node 2 is frozen",
                )
            workers.start("f2", fault_cluster[2])
            poll(lambda: sorted(shares(clients[0]).values()) == [4, 4, 4], 60, "f2 back")

            # (c) node 1 killed (SIGKILL) right after a checkpoint moved on it, then restarted.
            store = StateStore(clients[1], STATE)
            mine = set(membership.owned("positions", PARTITIONS, [f"{n}-0" for n in NAMES], "f1-0"))

            def his() -> dict[int, int | None]:
                return {p: c.hi for p, c in store.get_checkpoints("positions").items() if p in mine}

            seen = his()
            try:
                # A window may wait out one replication timeout (60 s) while node 2 reconnects.
                poll(lambda: his() != seen, 150, "f1 to move a checkpoint on node 1")
            except AssertionError as e:
                tail = (tmp_path / "f1.log").read_text().splitlines()[-25:]
                raise AssertionError(f"{e}; f1's last log lines:\n" + "\n".join(tail)) from None
            harper.kill(fault_cluster[1])
            # A restarted node replays and reconnects before it answers: slow on a loaded machine.
            # Harper 4.7 killed mid-replication can also hang in that replay (its log: "Reading
            # audit entry error", read transactions open for minutes); as an operator would, the
            # hung process is stopped and started once more.
            try:
                harper.start(fault_cluster[1], harper_install, timeout_s=150)
            except DevStackError:
                harper.start(fault_cluster[1], harper_install, timeout_s=150)
            clients[1].close()
            clients[1] = HarperClient(
                fault_cluster[1].url, fault_cluster[1].username, fault_cluster[1].password
            )
        assert_every_node_equals_source(clients, expected_ids(bq, dataset), 300, db=DB)
        # Not luck: f1 saw the new Harper process and repaired the recent range on it (the
        # repair runs in the background and may end after the nodes are already equal).
        f1_log = tmp_path / "f1.log"
        poll(
            lambda: "after the Harper restart" in f1_log.read_text(),
            180,
            "f1 to finish the repair after the Harper restart",
        )
        assert "restarted" in f1_log.read_text()
    finally:
        workers.close()
        for client in clients:
            client.close()
