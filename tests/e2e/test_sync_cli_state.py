"""`sync run --once`, `sync status` and `sync reset` as a user runs them (subprocesses)."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from google.cloud import bigquery
from tests.support import harper_rows, keyed_table

from harperbq.config import Config
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient


def cli(config: Path, node: HarperNode, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TEST_HARPER_PASSWORD=node.password)
    return subprocess.run(
        [sys.executable, "-m", "harperbq", *args, "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_run_once_status_reset_and_resync(
    bq: bigquery.Client,
    harper_node: HarperNode,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
) -> None:
    table = keyed_table(bq, f"cli_{unique}", 3_000)
    path, cfg = write_config(
        [table],
        sync={"settle": "0s"},
    )
    done = cli(path, harper_node, "sync", "run", "--once", "--no-control")
    assert done.returncode == 0, done.stderr[-2000:]

    status = cli(path, harper_node, "sync", "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    report = json.loads(status.stdout)
    table = report["tables"][0]
    assert table["table"] == "t" and table["rows_synced"] == 3_000
    assert table["partitions_synced"] == table["partitions"] == 16
    assert table["lag_s"] is not None and table["lag_s"] < 600
    assert [w["worker"] for w in report["workers"]] == []  # a clean exit leaves no heartbeat
    assert "monotonic clock" in report["liveness"]  # how liveness was judged
    assert harper_node.password not in status.stdout + status.stderr

    reset = cli(path, harper_node, "sync", "reset", "--table", "t")
    assert reset.returncode == 0 and "16 checkpoints removed" in reset.stderr + reset.stdout
    after_reset = json.loads(cli(path, harper_node, "sync", "status", "--json").stdout)
    assert after_reset["tables"][0]["partitions_synced"] == 0

    again = cli(path, harper_node, "sync", "run", "--once", "--no-control")
    assert again.returncode == 0, again.stderr[-2000:]
    got = harper_rows(harper_client, cfg.harper.database, "T")
    assert set(got) == {str(i) for i in range(3_000)}  # re-synced from the start: no duplicates
    final = json.loads(cli(path, harper_node, "sync", "status", "--json").stdout)
    assert final["tables"][0]["rows_synced"] == 3_000

    unknown = cli(path, harper_node, "sync", "reset", "--table", "nope")
    assert unknown.returncode != 0 and "nope" in unknown.stderr + unknown.stdout
