"""The sync across a real three-node Harper cluster, one sync process per node (G4, G5).

One flow, in order: (a) three workers share a catch-up about evenly; (b) one is killed with
SIGKILL mid catch-up and the others take its partitions within a lease and finish; (c) it comes
back and partitions move back; (d) a fourth worker joins and one leaves during continuous
generation; (e) after each phase every Harper node holds exactly BigQuery's rows. A second test
freezes an owner (SIGSTOP) past its lease and thaws it: no node's merged checkpoint steps back.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.support import FaultProxy, harper_rows, make_source

from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import NotFound
from harperbq.sync.state import Checkpoint, StateStore
from harperbq.times import utc_now_iso

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


@contextmanager
def live_writes(
    bq: bigquery.Client, table: bigquery.Table, rows: int, every_s: float, first_mmsi: int
) -> Iterator[None]:
    """New rows into the source every `every_s`, as a live feed adds them, for the block."""
    stop = threading.Event()

    def generate() -> None:
        batch = 0
        while not stop.is_set():
            # Just younger than the settle limit, so they are new rows, not late ones.
            fresh = rows_at(datetime.now(UTC) - timedelta(seconds=1), rows, first_mmsi + batch, 1)
            bq.load_table_from_json(fresh, table).result()
            batch += 1
            stop.wait(every_s)

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


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
        lease_s: float = LEASE_S,
        batch: int = 400,
    ):
        self.tmp, self.nodes, self.emulator, self.dataset = tmp, nodes, emulator, dataset
        self.db, self.state, self.tables, self.partitions = db, state, tables, partitions
        self.lease_s, self.batch = lease_s, batch
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, node: HarperNode, url: str | None = None) -> Path:
        """`url`: reach the node there instead (a FaultProxy in front of it)."""
        data = {
            "harper": {
                "url": url or node.url,
                "username": node.username,
                "password": "${CLUSTER_HARPER_PASSWORD}",
                "database": self.db,
                "stateDatabase": self.state,
                # Under CI load a peer's confirmation is now and then never sent: the write then
                # waits this long and is repeated (idempotent). The 60 s default cost up to four
                # minutes a run; 20 s keeps the repeat path exercised and the test bounded.
                "replicationTimeout": "20s",
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
                        "sync": {"initialBatchSize": self.batch, "catchupBatchSize": self.batch},
                    }
                    for table in self.tables
                ],
            },
            "sync": {
                "settle": "5s",
                "pollInterval": 300,
                "lease": f"{self.lease_s}s",
                "heartbeatInterval": "1s",
                "joinGrace": "2.5s",
            },
            "retry": {"initialDelay": 100, "maxDelay": "1s"},
        }
        path = self.tmp / f"{node.host}{'-proxied' if url else ''}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def start(self, name: str, node: HarperNode, url: str | None = None) -> None:
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
                str(self.config(node, url)),
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
    client: HarperClient,
    table_id: str = "positions",
    state: str = STATE,
    lease_s: float = LEASE_S,
) -> dict[str, dict[str, Any]]:
    """Each worker's last heartbeat: live or not, partitions owned, rows written this run."""
    now = datetime.now(UTC)
    out = {}
    for w in StateStore(client, state).workers():
        table = w.info.get("tables", {}).get(table_id, {})
        out[w.worker_id] = {
            "live": w.age_s(now) < lease_s,
            "partitions": int(table.get("partitions", 0)),
            "rows": int(table.get("rows", 0)),
        }
    return out


def snapshot_copied(
    client: HarperClient, table_id: str, state: str = STATE, partitions: int = PARTITIONS
) -> None:
    """Until every partition has a checkpoint: the (empty) table's snapshot is copied, so rows
    loaded from now on come through the feed, each worker reading its own partitions."""
    store = StateStore(client, state)

    def copied() -> bool:
        try:
            checkpoints = store.get_checkpoints(table_id)
        except NotFound:  # the state tables have not reached this node yet
            return False
        return sum(1 for cp in checkpoints.values() if cp.hi is not None) == partitions

    poll(copied, 120, f"the snapshot of {table_id}")


def copiers(tmp: Path, names: Sequence[str], table_id: str) -> list[str]:
    """The workers whose log says they copied a snapshot of the table for every worker."""
    line = f"table {table_id}: copying a snapshot"
    return [n for n in names if line in (tmp / f"{n}.log").read_text()]


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
    names = [f"w{i}" for i in range(3)]
    for name, node in zip(names, harper_cluster, strict=True):
        workers.start(name, node)
    # One worker copies each (empty) table's snapshot for all; the rows come after it.
    snapshot_copied(clients[0], "positions")
    snapshot_copied(clients[0], "backlog")
    assert len(copiers(workers.tmp, names, "positions")) == 1

    # Every worker has its third before the rows arrive (a slow start would hand one all of them).
    def thirds() -> bool:
        info = worker_info(clients[0])
        return sorted(info.get(f"{w}-0", {}).get("partitions", 0) for w in names) == [20] * 3

    poll(thirds, 60, "every worker to own a third")
    bq.load_table_from_json(rows_at(start, 24_000), ref).result()

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
    # The backlog arrives as one appends window that every worker reads at once; w2 is mid-window
    # once rows are landing in Harper (a worker's heartbeat counts its rows only when its window
    # is checkpointed, which with replicated confirmation can take minutes on a loaded machine).
    poll(lambda: record_count(clients[2], "Backlog") > 1_000, 180, "w2 mid catch-up")
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
    assert_every_node_equals_source(clients, expected_ids(bq, dataset, "backlog"), 300, "Backlog")

    # (c) it comes back: partitions move back to it.
    workers.start("w2", harper_cluster[2])
    poll(lambda: worker_info(clients[0])["w2-0"]["partitions"] == 20, 30, "w2 to own a third again")
    poll(
        lambda: (
            sorted(worker_info(clients[0])[f"{w}-0"]["partitions"] for w in names[:2]) == [20, 20]
        ),
        30,  # a heartbeat or two, longer on a loaded machine
        "w0 and w1 to hand partitions back",
    )

    # (d) during continuous generation a fourth worker joins and one leaves.
    with live_writes(bq, ref, rows=200, every_s=0.3, first_mmsi=20_000):
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

    # (e) in the end every node holds exactly BigQuery's rows.
    want = expected_ids(bq, dataset)
    assert_every_node_equals_source(clients, want, 180)


# -- checkpoints stay monotone when a frozen owner comes back ----------------------------------

FENCE_DB, FENCE_STATE, FENCE_LEASE_S = "fence", "fence_state", 3.0
FENCE_ROWS = 6_000


@pytest.fixture
def fence_flow(
    tmp_path: Path, harper_cluster: list[HarperNode], bq_emulator: Emulator, bq: bigquery.Client
) -> Iterator[tuple[Workers, list[HarperClient]]]:
    dataset = f"fence_{int(time.time())}"
    make_source(bq, dataset, "fenced", SCHEMA, [])
    workers = Workers(
        tmp_path,
        harper_cluster,
        bq_emulator,
        dataset,
        db=FENCE_DB,
        state=FENCE_STATE,
        tables=("fenced",),
        lease_s=FENCE_LEASE_S,
        batch=100,  # many windows: the freeze lands mid catch-up
    )
    clients = [HarperClient(n.url, n.username, n.password) for n in harper_cluster]
    try:
        yield workers, clients
    finally:
        for proc in workers.procs.values():  # never leave a frozen process behind
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
        workers.close()
        for client in clients:
            client.close()


class CheckpointWatcher(threading.Thread):
    """Reads every partition's merged checkpoint on every node every ~50 ms and records any
    step back of `(generation, hi)` (what a resuming worker or `sync status` would see)."""

    def __init__(self, clients: list[HarperClient], table_id: str) -> None:
        super().__init__(daemon=True)
        self.stores = [StateStore(c, FENCE_STATE) for c in clients]
        self.table_id = table_id
        self.stop = threading.Event()
        self.seen: dict[tuple[int, int], tuple[int, bool, int]] = {}
        self.steps_back: list[str] = []
        self.reads = 0
        self.moves = 0
        self.thawed: tuple[str, str] | None = None  # (worker, since): look for its stale writes
        self.stale: set[int] = set()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for node, store in enumerate(self.stores):
                try:
                    merged = store.get_checkpoints(self.table_id)
                except NotFound:  # the state tables have not reached this node yet
                    merged = {}
                self.reads += 1
                for partition, cp in merged.items():
                    now = (cp.generation, cp.hi is not None, cp.hi or 0)
                    before = self.seen.get((node, partition))
                    if before is not None and now < before:
                        self.steps_back.append(f"node {node} part {partition}: {before}->{now}")
                    if before is not None and now > before:
                        self.moves += 1
                    self.seen[(node, partition)] = now
                if node == 0 and self.thawed is not None:
                    self._look_for_stale(store, merged, *self.thawed)

    def _look_for_stale(
        self, store: StateStore, merged: dict[int, Checkpoint], worker: str, since: str
    ) -> None:
        """Partitions where `worker` wrote, after `since`, a checkpoint older than the merged
        one read just before: the write a shared record would have let win."""
        for r in store.checkpoint_records(self.table_id):
            cp = merged.get(r.partition)
            if (
                r.worker_id == worker
                and r.updated_at > since
                and cp is not None
                and (r.generation, r.hi is not None, r.hi or 0)
                < (cp.generation, cp.hi is not None, cp.hi or 0)
            ):
                self.stale.add(r.partition)


def freeze_hand_over_and_thaw(
    workers: Workers,
    clients: list[HarperClient],
    watcher: CheckpointWatcher,
    info: Callable[[], dict[str, dict[str, Any]]],
    names: list[str],
    thawed: Callable[[], None],
) -> None:
    """Freeze w2 (SIGSTOP) until w0 and w1 own every partition and moved one of w2's past it,
    thaw it, call `thawed`, and wait until it writes checkpoints again (the watcher looks for
    stale ones)."""
    frozen = workers.procs["w2"]
    frozen.send_signal(signal.SIGSTOP)
    try:
        poll(
            lambda: sorted(info()[f"{w}-0"]["partitions"] for w in names[:2]) == [30, 30],
            6 * FENCE_LEASE_S + 30,
            "w0 and w1 to own every partition after w2's lease",
        )
        # the new owners move w2's former partitions past where w2 stood
        store = StateStore(clients[0], FENCE_STATE)
        w2_records = {
            r.partition: r for r in store.checkpoint_records("fenced") if r.worker_id == "w2-0"
        }
        poll(
            lambda: any(
                (cp := store.get_checkpoints("fenced").get(p)) is not None
                and cp.worker_id != "w2-0"
                and (cp.hi or 0) > (r.hi or 0)
                for p, r in w2_records.items()
            ),
            120,
            "a new owner to move one of w2's partitions past w2's checkpoint",
        )
    finally:
        frozen.send_signal(signal.SIGCONT)
        thawed()
    thawed_at = utc_now_iso()
    watcher.thawed = ("w2-0", thawed_at)
    # the thawed worker writes again (its stale window, then as an owner again)
    poll(
        lambda: any(
            r.worker_id == "w2-0" and r.updated_at > thawed_at
            for r in StateStore(clients[0], FENCE_STATE).checkpoint_records("fenced")
        ),
        120,
        "w2 to write checkpoints after it was thawed",
    )
    poll(
        lambda: sorted(info()[f"{w}-0"]["partitions"] for w in names) == [20, 20, 20], 60, "w2 back"
    )


def test_checkpoints_stay_monotone_when_a_frozen_owner_writes_after_handover(
    fence_flow: tuple[Workers, list[HarperClient]],
    harper_cluster: list[HarperNode],
    bq: bigquery.Client,
) -> None:
    """w2 is frozen (SIGSTOP) mid-window, its partitions move to w0 and w1 after the lease,
    then it is thawed and finishes its window from its old view: its older checkpoints go to its
    own records, so no reader on any node ever sees a checkpoint step back. w2 reaches its
    Harper through a FaultProxy that holds its data writes from just before the freeze until
    the thaw, so a window is in flight when it stops (not a race with its catch-up)."""
    workers, clients = fence_flow
    dataset = workers.dataset
    ref = bigquery.Table(f"{bq.project}.{dataset}.fenced", schema=SCHEMA)
    watcher = CheckpointWatcher(clients, "fenced")
    watcher.start()

    def info() -> dict[str, dict[str, Any]]:
        return worker_info(clients[0], "fenced", FENCE_STATE, FENCE_LEASE_S)

    names = [f"w{i}" for i in range(3)]
    proxy = FaultProxy(harper_cluster[2])
    try:
        workers.start("w0", harper_cluster[0])
        workers.start("w1", harper_cluster[1])
        workers.start("w2", harper_cluster[2], url=proxy.url)
        snapshot_copied(clients[0], "fenced", FENCE_STATE)
        # w2's first three windows are written (its own checkpoints exist), its fourth is held
        proxy.hold("Fenced", after=3)
        bq.load_table_from_json(rows_at(datetime(2024, 6, 1, tzinfo=UTC), FENCE_ROWS), ref).result()
        poll(lambda: proxy.held > 0, 120, "w2 mid-window (its fourth data write held)")
        freeze_hand_over_and_thaw(workers, clients, watcher, info, names, proxy.release)
        assert_every_node_equals_source(
            clients, expected_ids(bq, dataset, "fenced"), 240, "Fenced", FENCE_DB
        )
        moves = watcher.moves
        poll(lambda: watcher.reads > 3 * len(clients), 30, "the watcher to read every node")
    finally:
        proxy.close()
        watcher.stop.set()
        watcher.join(30)
    assert watcher.steps_back == []
    assert moves > PARTITIONS  # it watched the checkpoints move, not a finished table
    # the thawed owner did write older checkpoints (its in-flight window, from its old view):
    # with one shared record per partition these would have won
    assert watcher.stale


# -- one snapshot for all workers, its copier killed mid-copy ----------------------------------

COPY_DB, COPY_STATE, COPY_ROWS = "copy", "copy_state", 60_000


def test_one_worker_copies_the_snapshot_and_another_takes_over_when_it_is_killed(
    tmp_path: Path,
    harper_cluster: list[HarperNode],
    bq_emulator: Emulator,
    bq: bigquery.Client,
) -> None:
    """`snapshotBy: one`: the first live worker copies the table for every worker (one read of
    the source); the others wait for its checkpoints. Killed (SIGKILL) mid-copy, the next live
    worker copies it again after the lease; the third never reads the snapshot; every node ends
    equal to BigQuery, and the killed worker, back, follows without copying again."""
    dataset = f"copy_{int(time.time())}"
    make_source(bq, dataset, "copied", SCHEMA, rows_at(datetime(2024, 6, 1, tzinfo=UTC), COPY_ROWS))
    workers = Workers(
        tmp_path,
        harper_cluster,
        bq_emulator,
        dataset,
        db=COPY_DB,
        state=COPY_STATE,
        tables=("copied",),
        partitions=12,
    )
    clients = [HarperClient(n.url, n.username, n.password) for n in harper_cluster]
    names = ["w0", "w1", "w2"]
    try:
        for name, node in zip(names, harper_cluster, strict=True):
            workers.start(name, node)
        poll(
            lambda: 0 < record_count(clients[0], "Copied", COPY_DB) < COPY_ROWS,
            120,
            "w0's copy under way",
        )
        assert copiers(tmp_path, names, "copied") == ["w0"]
        workers.kill("w0")
        assert record_count(clients[0], "Copied", COPY_DB) < COPY_ROWS, "killed mid-copy"
        assert_every_node_equals_source(
            clients, expected_ids(bq, dataset, "copied"), 240, "Copied", COPY_DB
        )
        assert copiers(tmp_path, names, "copied") == ["w0", "w1"]  # w1 took over, not w2
        snapshot_copied(clients[0], "copied", COPY_STATE, 12)

        # its first life may have begun the copy more than once (a lease that looked expired
        # under load moves the leadership for a moment); what counts is the second life
        first_life = len((tmp_path / "w0.log").read_text())
        workers.start("w0", harper_cluster[0])
        poll(
            lambda: (
                sorted(
                    i["partitions"]
                    for i in worker_info(clients[0], "copied", COPY_STATE).values()
                    if i["live"]
                )
                == [4, 4, 4]
            ),
            60,
            "w0 back with its share",
        )
        with live_writes(
            bq, bigquery.Table(f"{bq.project}.{dataset}.copied", schema=SCHEMA), 100, 0.5, 70_000
        ):
            poll(
                lambda: worker_info(clients[0], "copied", COPY_STATE)["w0-0"]["rows"] > 0,
                60,
                "w0 to follow its partitions",
            )
        assert_every_node_equals_source(
            clients, expected_ids(bq, dataset, "copied"), 180, "Copied", COPY_DB
        )
        back = (tmp_path / "w0.log").read_text()[first_life:]
        assert back.strip(), "w0's second life logged"
        assert "table copied: copying a snapshot" not in back, "w0, back, did not copy again"
    finally:
        workers.close()
        for client in clients:
            client.close()
