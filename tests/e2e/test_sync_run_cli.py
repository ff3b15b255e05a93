"""`harperbq sync run` as a real process: what --debug logs, that no secret (Harper password,
control token, their Basic-auth encoding) is ever printed, and that the control API it serves
answers and goes away cleanly on SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.cloud import bigquery
from tests.support import make_source

from harperbq.config import Config
from harperbq.devstack.harper import HarperNode

SCHEMA = [
    bigquery.SchemaField("ts", "TIMESTAMP"),
    bigquery.SchemaField("k", "INT64"),
    bigquery.SchemaField("v", "STRING"),
]


def _config(
    bq: bigquery.Client, write_config: Callable[..., tuple[Path, Config]], unique: str
) -> Path:
    dataset = f"cli_{unique}"
    start = datetime(2024, 5, 1, tzinfo=UTC)
    rows = [
        {"ts": (start + timedelta(seconds=i)).isoformat(), "k": i, "v": f"v{i}"} for i in range(30)
    ]
    make_source(bq, dataset, "events", SCHEMA, rows)
    path, _ = write_config(
        [
            {
                "id": "events",
                "dataset": dataset,
                "table": "events",
                "timestampColumn": "ts",
                "targetTable": "Events",
                "primaryKey": ["k"],
            }
        ],
        sync={"settle": "0s"},
    )
    return path


def _env(harper_node: HarperNode, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "TEST_HARPER_PASSWORD": harper_node.password,
        "HARPERBQ_CONTROL_TOKEN": token,
    }


@pytest.mark.change_feed("none")  # logs of window queries
def test_debug_run_logs_queries_and_requests_but_no_secret(
    bq: bigquery.Client,
    harper_node: HarperNode,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
) -> None:
    path = _config(bq, write_config, unique)
    token = secrets.token_urlsafe(24)
    command = [sys.executable, "-m", "harperbq", "sync", "run", "--once", "--debug"]
    command += ["--log-format", "json", "--control-port", "0", "-c", str(path)]
    done = subprocess.run(
        command, env=_env(harper_node, token), capture_output=True, text=True, timeout=180
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]

    basic = base64.b64encode(f"{harper_node.username}:{harper_node.password}".encode()).decode()
    for secret in (harper_node.password, token, basic):
        assert secret not in output

    events: list[dict[str, Any]] = [json.loads(line) for line in done.stderr.splitlines() if line]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_name.setdefault(event["event"], []).append(event)

    # Each BigQuery query with its SQL, parameters, bytes billed and duration.
    reads = [e for e in by_name["bigquery.query"] if e["operation"] == "read_window"]
    assert reads, sorted(by_name)
    for event in reads:
        assert "FROM `" in event["sql"] and "@lo" in event["sql"]
        assert {"lo", "hi"} <= set(event["params"])
        assert isinstance(event["bytes_billed"], int) and event["duration_s"] >= 0
    # A summary of each Harper request (never its body).
    requests = by_name["harper.request"]
    upserts = [e for e in requests if e["operation"] == "upsert"]
    assert upserts and all(e["status"] == 200 and e["duration_s"] >= 0 for e in upserts)
    assert not any("records" in e for e in requests)
    # The control API ran with its token required, and said so without showing it.
    [listening] = by_name["control API listening"]
    assert listening["auth"] == "bearer" and listening["url"].startswith("http://127.0.0.1:")


def test_run_serves_the_control_api_until_sigterm(
    bq: bigquery.Client,
    harper_node: HarperNode,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
    tmp_path: Path,
) -> None:
    path = _config(bq, write_config, unique)
    token = secrets.token_urlsafe(24)
    log = tmp_path / "sync.log"  # a file, not a pipe: a full pipe would block the process
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "harperbq", "sync", "run", "--log-format", "json"]
    command += ["--control-port", str(port), "-c", str(path)]
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, env=_env(harper_node, token), stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 60
        status: dict[str, Any] = {}
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = httpx.get(url + "/status", headers=auth, timeout=5)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 200:
                status = answer.json()
                workers = status["tables"][0]["workers"]
                if workers and workers[0]["rows_written"] == 30:
                    break
            time.sleep(0.2)
        assert status["tables"][0]["workers"][0]["rows_written"] == 30, status
        assert httpx.get(url + "/status", timeout=5).status_code == 401
        # The port is taken now: a second daemon refuses to start, a --once run goes on without.
        second = subprocess.run(
            command, env=_env(harper_node, token), capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2 and "cannot serve the control API" in second.stderr
        once = subprocess.run(
            [*command, "--once"],
            env=_env(harper_node, token),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert once.returncode == 0, once.stderr[-2000:]
        assert "running without it" in once.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "control API listening" in log.read_text() and token not in log.read_text()
    try:
        httpx.get(url + "/healthz", timeout=2)
        raise AssertionError("the control API still answers after the process ended")
    except httpx.TransportError:
        pass
