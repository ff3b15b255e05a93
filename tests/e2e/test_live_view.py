"""`sync run` as a user sees it: in a terminal one view redrawn in place with the log in a file;
in a pipe plain log lines and no control codes. The terminal is a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.support import make_source

from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode

SCHEMA = [F("ts", "TIMESTAMP"), F("k", "INT64"), F("v", "STRING")]
ROWS = 300
CURSOR_UP = re.compile(rb"\x1b\[\d*A")


def write_config(tmp: Path, node: HarperNode, emu: Emulator, dataset: str) -> Path:
    suffix = uuid.uuid4().hex[:8]
    data = {
        "harper": {
            "url": node.url,
            "username": node.username,
            "password": "${LIVE_HARPER_PASSWORD}",
            "database": f"live_{suffix}",
            "stateDatabase": f"livestate_{suffix}",
        },
        "bigquery": {
            "projectId": emu.project,
            "endpoint": emu.endpoint,
            "storageEndpoint": emu.grpc_endpoint,
            "tables": [
                {
                    "id": "events",
                    "dataset": dataset,
                    "table": "events",
                    "timestampColumn": "ts",
                    "columns": ["ts", "k", "v"],
                    "targetTable": "Events",
                    "primaryKey": ["k"],
                }
            ],
        },
        "sync": {"settle": "1s", "pollInterval": 300},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "harperbq", "sync", "run", "-c", str(config), "--no-control"]


def source(bq: bigquery.Client) -> str:
    dataset = f"live_{uuid.uuid4().hex[:8]}"
    base = datetime.now(UTC) - timedelta(minutes=5)
    rows = [
        {"ts": (base + timedelta(seconds=i)).isoformat(), "k": i, "v": f"r{i}"} for i in range(ROWS)
    ]
    make_source(bq, dataset, "events", SCHEMA, rows)
    return dataset


def read_until(fd: int, done: bytes, timeout_s: float) -> bytes:
    """Everything the terminal shows until `done` has appeared (or the time is up)."""
    out = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and done not in out:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:  # the process closed the terminal
                break
    return out


def test_in_a_terminal_one_view_redraws_in_place_and_the_log_goes_to_a_file(
    tmp_path: Path, harper_node: HarperNode, bq_emulator: Emulator, bq: bigquery.Client
) -> None:
    config = write_config(tmp_path, harper_node, bq_emulator, source(bq))
    log = tmp_path / "sync.log"
    env = dict(
        os.environ,
        LIVE_HARPER_PASSWORD=harper_node.password,
        TERM="xterm-256color",
        COLUMNS="160",
        LINES="40",
    )
    env.pop("NO_COLOR", None)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*run_command(config), "--log-file", str(log)],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        close_fds=True,
    )
    os.close(secondary)
    try:
        # The view's "rows synced" column reaches every row, then a few more redraws.
        screen = read_until(primary, f"{ROWS:,}".encode(), 120)
        assert f"{ROWS:,}".encode() in screen, screen[-2000:]
        screen += read_until(primary, b"\x00never", 3)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            screen += read_until(primary, b"\x00never", 2)
            proc.wait(30)
        finally:
            os.close(primary)
    text = screen.decode(errors="replace")
    assert f"log: {log}" in text.replace("\r\n", "").replace("\n", "")
    assert screen.count("BigQuery → Harper".encode()) >= 3, "redrawn"
    assert CURSOR_UP.search(screen), "redrawn in place (cursor moved up), not appended"
    assert " INFO " not in text, "info lines go to the file, not above the view"
    logged = log.read_text()
    assert " INFO " in logged and "events" in logged
    assert proc.returncode == 0


def test_in_a_pipe_plain_log_lines_and_no_control_codes(
    tmp_path: Path, harper_node: HarperNode, bq_emulator: Emulator, bq: bigquery.Client
) -> None:
    config = write_config(tmp_path, harper_node, bq_emulator, source(bq))
    env = dict(os.environ, LIVE_HARPER_PASSWORD=harper_node.password, TERM="xterm-256color")
    done = subprocess.run(
        [*run_command(config), "--once"],
        env=env,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert b"\x1b" not in output, output[-2000:]
    assert b" INFO " in done.stderr and b"log: " not in output
