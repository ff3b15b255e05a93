"""The sync across a real three-node Harper cluster, one sync process per node (G4, G5).

One flow, in order: (a) three workers share a catch-up about evenly; (b) one is killed with
SIGKILL mid catch-up and the others take its partitions within a lease and finish; (c) it comes
back and partitions move back; (d) a fourth worker joins and one leaves during continuous
generation; (e) after each phase every Harper node holds exactly BigQuery's rows.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.support import harper_rows, make_source

from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import NotFound
from harperbq.sync.state import StateStore

pytestmark = pytest.mark.cluster
PARTITIONS = 60  # a multiple of 2..6 workers: balance is then limited by rows, not partitions
LEASE_S = 5.0
DB, STATE = "fleet", "fleet_state"
SCHEMA = [F("ts", "TIMESTAMP"), F("mmsi", "INT64"), F("lat", "FLOAT64")]
# `positions` for the shared catch-up and live generation; `backlog` stays empty until the kill
# phase, so its catch-up starts (from its oldest row) exactly when the test wants one in flight.
TABLES = ("positions", "backlog")


def rows_at(
    start: datetime, count: int, first_mmsi: int = 0, step_ms: int = 137
) -> list[dict[str, Any]]:
    """Positions with millisecond timestamps (the original put all of these on one node)."""
    return [
        {
            "ts": (start + timedelta(milliseconds=step_ms * i)).isoformat(),
            "mmsi": 100_000_000 + first_mmsi + i % 997,
            "lat": (i % 1800) / 20 - 45,
        }
        for i in range(count)
    ]


def poll(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class Workers:
    """Sync processes, one per (node, name), started and stopped like an operator would."""

    def __init__(
        self,
        tmp: Path,
        nodes: list[HarperNode],
        emulator: Emulator,
        dataset: str,
        *,
        db: str = DB,
        state: str = STATE,
        tables: tuple[str, ...] = TABLES,
        partitions: int = PARTITIONS,
    ):
        self.tmp, self.nodes, self.emulator, self.dataset = tmp, nodes, emulator, dataset
        self.db, self.state, self.tables, self.partitions = db, state, tables, partitions
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, node: HarperNode) -> Path:
        data = {
            "harper": {
                "url": node.url,
                "username": node.username,
                "password": "${CLUSTER_HARPER_PASSWORD}",
                "database": self.db,
                "stateDatabase": self.state,
            },
            "bigquery": {
                "projectId": self.emulator.project,
                "endpoint": self.emulator.endpoint,
                "tables": [
                    {
                        "id": table,
                        "dataset": self.dataset,
                        "table": table,
                        "timestampColumn": "ts",
                        "columns": ["ts", "mmsi", "lat"],
                        "targetTable": table.capitalize(),
                        "primaryKey": ["mmsi", "ts"],
                        "partitions": self.partitions,
                        "sync": {"initialBatchSize": 400, "catchupBatchSize": 400},
                    }
                    for table in self.tables
                ],
            },
            "sync": {
                "settle": "5s",
                "pollInterval": 300,
                "lease": f"{LEASE_S}s",
                "heartbeatInterval": "1s",
                "joinGrace": "2.5s",
            },
            "retry": {"initialDelay": 100, "maxDelay": "1s"},
        }
        path = self.tmp / f"{node.host}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def start(self, name: str, node: HarperNode) -> None:
        env = dict(os.environ, CLUSTER_HARPER_PASSWORD=node.password)
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harperbq",
                "sync",
                "run",
                "--config",
                str(self.config(node)),
                "--node-name",
                name,
                "--log-format",
                "json",
                "--no-control",  # several workers share this host; the control API has its tests
            ],
            env=env,
            stdout=log,
            stderr=log,
        )

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(30)

    def stop(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGTERM)
        assert self.procs[name].wait(30) == 0

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


@pytest.fixture
def cluster_flow(
    tmp_path: Path, harper_cluster: list[HarperNode], bq_emulator: Emulator, bq: bigquery.Client
) -> Iterator[tuple[Workers, list[HarperClient]]]:
    dataset = f"cluster_{int(time.time())}"
    for table in TABLES:
        make_source(bq, dataset, table, SCHEMA, [])
    workers = Workers(tmp_path, harper_cluster, bq_emulator, dataset)
    clients = [HarperClient(n.url, n.username, n.password) for n in harper_cluster]
    try:
        yield workers, clients
    finally:
        workers.close()
        for client in clients:
            client.close()


def worker_info(
    client: HarperClient, table_id: str = "positions", state: str = STATE
) -> dict[str, dict[str, Any]]:
    """Each worker's last heartbeat: live or not, partitions owned, rows written this run."""
    now = datetime.now(UTC)
    out = {}
    for w in StateStore(client, state).workers():
        table = w.info.get("tables", {}).get(table_id, {})
        out[w.worker_id] = {
            "live": w.age_s(now) < LEASE_S,
            "partitions": int(table.get("partitions", 0)),
            "rows": int(table.get("rows", 0)),
        }
    return out


def expected_ids(bq: bigquery.Client, dataset: str, table: str = "positions") -> set[str]:
    sql = f"SELECT mmsi, ts FROM `{bq.project}.{dataset}.{table}`"  # noqa: S608
    return {
        f"{r['mmsi']}|{r['ts'].astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        for r in bq.query(sql).result()
    }


def record_count(client: HarperClient, target: str, db: str = DB) -> int:
    try:
        return len(harper_rows(client, db, target))
    except NotFound:  # the target table has not reached this node yet
        return 0


def assert_every_node_equals_source(
    clients: list[HarperClient],
    want: set[str],
    timeout_s: float,
    target: str = "Positions",
    db: str = DB,
) -> None:
    for client in clients:

        def arrived(c: HarperClient = client) -> bool:
            return record_count(c, target, db) >= len(want)

        poll(
            arrived,
            timeout_s,
            f"every row of {target} on {client.url}",
        )
        assert set(harper_rows(client, db, target)) == want, client.url


def test_cluster_shares_work_survives_kill_and_rebalances(
    cluster_flow: tuple[Workers, list[HarperClient]],
    harper_cluster: list[HarperNode],
    bq: bigquery.Client,
) -> None:
    workers, clients = cluster_flow
    dataset = workers.dataset
    ref = bigquery.Table(f"{bq.project}.{dataset}.positions", schema=SCHEMA)
    start = datetime(2024, 6, 1, tzinfo=UTC)
    bq.load_table_from_json(rows_at(start, 24_000), ref).result()
    names = [f"w{i}" for i in range(3)]
    for name, node in zip(names, harper_cluster, strict=True):
        workers.start(name, node)

    # (a) work is shared: every worker writes about a third of the catch-up.
    want = expected_ids(bq, dataset)
    assert_every_node_equals_source(clients, want, 180)
    poll(
        lambda: sum(i["rows"] for i in worker_info(clients[0]).values()) >= 24_000, 30, "heartbeats"
    )
    info = worker_info(clients[0])
    shares = {w: info[f"{w}-0"]["rows"] / 24_000 for w in names}
    assert all(abs(share - 1 / 3) <= 0.15 / 3 for share in shares.values()), shares
    assert sorted(info[f"{w}-0"]["partitions"] for w in names) == [20, 20, 20]

    # (b) one worker is killed mid catch-up; the others take its partitions within a lease.
    backlog = bigquery.Table(f"{bq.project}.{dataset}.backlog", schema=SCHEMA)
    bq.load_table_from_json(rows_at(start, 48_000, 5_000), backlog).result()
    poll(lambda: worker_info(clients[0], "backlog")["w2-0"]["rows"] > 500, 120, "w2 mid catch-up")
    workers.kill("w2")
    killed_at = time.monotonic()
    poll(lambda: not worker_info(clients[0])["w2-0"]["live"], 2 * LEASE_S + 5, "w2 declared dead")
    poll(
        lambda: (
            sorted(worker_info(clients[0])[f"{w}-0"]["partitions"] for w in names[:2]) == [30, 30]
        ),
        LEASE_S + 10,
        "w0 and w1 to own every partition",
    )
    assert time.monotonic() - killed_at < 2 * LEASE_S + 15
    assert_every_node_equals_source(clients, expected_ids(bq, dataset, "backlog"), 180, "Backlog")

    # (c) it comes back: partitions move back to it.
    workers.start("w2", harper_cluster[2])
    poll(lambda: worker_info(clients[0])["w2-0"]["partitions"] == 20, 30, "w2 to own a third again")
    poll(
        lambda: (
            sorted(worker_info(clients[0])[f"{w}-0"]["partitions"] for w in names[:2]) == [20, 20]
        ),
        10,
        "w0 and w1 to hand partitions back",
    )

    # (d) during continuous generation a fourth worker joins and one leaves.
    stop = threading.Event()

    def generate() -> None:
        batch = 0
        while not stop.is_set():
            # Just younger than the settle limit, so they are new rows, not late ones.
            fresh = rows_at(
                datetime.now(UTC) - timedelta(seconds=1), 200, 20_000 + batch, step_ms=1
            )
            bq.load_table_from_json(fresh, ref).result()
            batch += 1
            stop.wait(0.3)

    generator = threading.Thread(target=generate, daemon=True)
    generator.start()
    try:
        workers.start("w3", harper_cluster[0])
        poll(
            lambda: worker_info(clients[0]).get("w3-0", {}).get("partitions") == 15, 30, "w3 joins"
        )
        workers.stop("w1")
        poll(lambda: "w1-0" not in worker_info(clients[0]), 10, "w1 to leave cleanly")
        poll(
            lambda: (
                sorted(worker_info(clients[0])[w]["partitions"] for w in ("w0-0", "w2-0", "w3-0"))
                == [20, 20, 20]
            ),
            15,
            "the three remaining workers to split the partitions",
        )
    finally:
        stop.set()
        generator.join(30)

    # (e) in the end every node holds exactly BigQuery's rows.
    want = expected_ids(bq, dataset)
    assert_every_node_equals_source(clients, want, 180)
