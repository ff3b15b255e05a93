"""Two sync processes whose wall clocks are 10 minutes ahead and 10 minutes behind (libfaketime)
share one table as if the clocks agreed: leases judge beats by each observer's monotonic clock
(`sync.leases`) and feed windows end at BigQuery's clock (`bigquery.server_clock`).

Faults only at process level: SIGKILL of one process, then a restart.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from google.cloud import bigquery
from tests.e2e.live import records, wait_for
from tests.e2e.test_sync_faults import check_table
from tests.support import keyed_table

from harperbq.config import Config
from harperbq.devstack import faketime
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.sync.cluster.partitions import partition_of
from harperbq.sync.state import StateStore
from harperbq.sync.stored_status import judge_liveness

P = 12
ROWS = 3_000
LEASE_S = 6
LAUNCHER = Path(__file__).with_name("skewed_sync.py")
WriteConfig = Callable[..., tuple[Path, Config]]


def start(
    config: Path, node: str, offset: str, password: str, log: Path
) -> subprocess.Popen[bytes]:
    """`harperbq sync run` as worker `<node>-0`, its wall clock `offset` off."""
    env = faketime.skewed_env(offset, {**os.environ, "TEST_HARPER_PASSWORD": password})
    command = [sys.executable, str(LAUNCHER), "sync", "run", "--config", str(config)]
    command += ["--node-name", node, "--no-control", "--log-format", "json"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


@contextmanager
def stopped_at_end(procs: dict[str, subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def stacks(procs: dict[str, subprocess.Popen[bytes]], log: Path) -> str:
    """Every live process's thread stacks (SIGUSR1, see skewed_sync.py) and the log's end."""
    size = log.stat().st_size
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and log.stat().st_size == size:
        time.sleep(0.1)  # polling for the dumps to land in the log
    return "log and stacks:\n" + log.read_text()[-6000:]


def owned(state: StateStore) -> dict[str, int]:
    """Partitions per worker, as each reports in its heartbeat."""
    return {
        w.worker_id: int(w.info.get("tables", {}).get("t", {}).get("partitions", 0))
        for w in state.workers()
    }


PROBE = """
import threading, time
t0 = time.monotonic()
threading.Event().wait(0.2)
waited = time.monotonic() - t0
try:
    time.sleep(0.01)
    slept = "ok"
except OSError as exc:
    slept = exc.errno
print(time.time(), waited, slept)
"""


def test_faketime_skews_the_wall_clock_only() -> None:
    """What the launcher relies on: the wall clock is off, timed waits work, and `time.sleep`
    fails with EINVAL (hence `skewed_sync.py` replaces it)."""
    if faketime.library() is None:
        pytest.fail(faketime.INSTALL_HINT)
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=faketime.skewed_env("+10m"),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    wall, waited, slept = done.stdout.split()
    assert 590 < float(wall) - started < 630
    assert 0.19 < float(waited) < 5
    assert slept == str(errno.EINVAL)


def test_clocks_ten_minutes_apart_share_the_work(
    bq: bigquery.Client,
    harper_client: HarperClient,
    harper_node: HarperNode,
    write_config: WriteConfig,
    unique: str,
    tmp_path: Path,
) -> None:
    if faketime.library() is None:
        pytest.fail(faketime.INSTALL_HINT)
    dataset = f"skew_{unique}"
    table = keyed_table(bq, dataset, ROWS, partitions=P, sync={"pollInterval": 1000})
    config, cfg = write_config(
        [table],
        sync={
            "settle": "0s",
            "workers": 1,
            "lease": f"{LEASE_S}s",
            "heartbeatInterval": "2s",
            "joinGrace": "3s",
        },
        validation={"enabled": False},
    )
    db, state = cfg.harper.database, StateStore(harper_client, cfg.harper.state_database)
    log = tmp_path / "sync.log"
    offsets = {"ahead": "+10m", "behind": "-10m"}
    procs = {n: start(config, n, o, harper_node.password, log) for n, o in offsets.items()}

    def alive(check: Callable[[], bool]) -> Callable[[], bool]:
        """`check`, failing at once if a sync process exited by itself."""

        def checked() -> bool:
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"
            return check()

        return checked

    def harper_rows() -> int:
        return len(records(harper_client, db, "T"))

    even = {"ahead-0": P // 2, "behind-0": P // 2}
    with stopped_at_end(procs):
        wait_for("all rows in Harper", alive(lambda: harper_rows() == ROWS), 120)
        try:
            wait_for("a 6/6 split", alive(lambda: owned(state) == even), 120)
        except AssertionError as e:
            beats = [(w.worker_id, w.beat, w.last_seen, w.info) for w in state.workers()]
            raise AssertionError(f"{e}: {beats}; {stacks(procs, log)}") from None
        check_table(bq, harper_client, db, dataset, "t", "T", ["ts", "k"], ["k"])
        # Rows per worker: those of the partitions it owns (checkpoints name the writer).
        checkpoints = state.get_checkpoints("t")
        owner = {p: cp.worker_id for p, cp in checkpoints.items()}
        assert Counter(owner.values()) == Counter(even)
        rows = Counter(owner[partition_of([k], P, ["INT64"])] for k in range(ROWS))
        assert all(abs(n - ROWS / 2) <= 0.15 * ROWS / 2 for n in rows.values()), rows
        # A one-shot reader sees both live, whatever their clocks say.
        assert judge_liveness(cfg, state).live == ["ahead-0", "behind-0"]

        procs["behind"].send_signal(signal.SIGKILL)
        procs["behind"].wait(10)
        dead = procs.pop("behind")
        assert dead.returncode == -signal.SIGKILL
        survivor = alive(lambda: owned(state)["ahead-0"] == P)
        wait_for("the survivor to own all 12", survivor, LEASE_S + 10)
        assert judge_liveness(cfg, state).live == ["ahead-0"]

        procs["behind"] = start(config, "behind", offsets["behind"], harper_node.password, log)
        wait_for("6/6 again", alive(lambda: owned(state) == even), 60)
        # New rows reach Harper through both processes' change feeds.
        insert = (
            f"INSERT INTO `{bq.project}.{dataset}.t` (ts, k) "  # noqa: S608 - our own names
            "SELECT TIMESTAMP_ADD(TIMESTAMP '2024-03-01', INTERVAL k SECOND), k "
            f"FROM UNNEST(GENERATE_ARRAY({ROWS}, {ROWS + 499})) AS k"
        )
        bq.query(insert).result()
        wait_for("the new rows", alive(lambda: harper_rows() == ROWS + 500), 60)
        check_table(bq, harper_client, db, dataset, "t", "T", ["ts", "k"], ["k"])
