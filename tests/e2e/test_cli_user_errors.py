"""User errors through the real CLI (subprocesses against the test Harper and emulator): each
ends with a clear message naming the key or the URL and what to do, a non-zero exit code, no
traceback and no secret, whichever command meets it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google.cloud import bigquery
from tests.support import keyed_table

from harperbq.config import Config
from harperbq.devstack.harper import HarperNode

WriteConfig = Callable[..., tuple[Path, Config]]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    """Run `harperbq ARGS`; (exit code, stdout + stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "harperbq", *args],
        env={**(env or os.environ), "COLUMNS": "500"},  # rich wraps tables at the width
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_env(node: HarperNode) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARPERBQ_", "BIGQUERY_"))}
    env["TEST_HARPER_PASSWORD"] = node.password
    return env


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    return path


def assert_clean(output: str, *secrets: str) -> None:
    assert "Traceback" not in output, output[-3000:]
    for secret in secrets:
        assert secret not in output, output[-3000:]


# -- item 4: a Harper URL with credentials ----------------------------------------------------


def test_config_check_rejects_credentials_in_the_harper_url_without_printing_them(
    harper_node: HarperNode, write_config: WriteConfig, bq: bigquery.Client, unique: str
) -> None:
    path, _ = write_config([keyed_table(bq, f"cred_{unique}", 3)])
    host = harper_node.url.split("://", 1)[1]

    def with_credentials(data: dict[str, Any]) -> None:
        data["harper"]["url"] = f"http://{harper_node.username}:{harper_node.password}@{host}"

    edit(path, with_credentials)
    env = stack_env(harper_node)
    code, output = cli("config", "check", "-c", str(path), env=env)
    assert code == 1, output
    assert "harper.url" in output and "HARPERBQ_HARPER_PASSWORD" in output
    assert f"http://***@{host}" in output
    assert_clean(output, harper_node.password)

    code, output = cli("config", "check", "--json", "-c", str(path), env=env)
    assert code == 1, output
    report = json.loads(output)
    [problem] = report["problems"]
    assert problem["path"] == "harper.url" and problem["value"] == f"http://***@{host}"
    assert "harper.username" in problem["fix"]
    assert_clean(output, harper_node.password)

    # Every other command stops at the same problem, in the same words.
    for command in (["sync", "run", "--once"], ["sync", "status"], ["sync", "validate"]):
        code, output = cli(*command, "-c", str(path), env=env)
        assert code == 2 and "harper.url" in output, (command, output)
        assert_clean(output, harper_node.password)

    # The same from the environment (HARPERBQ_HARPER_URL overrides the file).
    edit(path, lambda data: data["harper"].update(url=harper_node.url))
    env["HARPERBQ_HARPER_URL"] = f"https://u:{harper_node.password}@{host}"
    code, output = cli("config", "check", "--offline", "--json", "-c", str(path), env=env)
    assert code == 1 and json.loads(output)["problems"][0]["path"] == "harper.url"
    assert_clean(output, harper_node.password)


# -- item 5: tracebacks instead of errors ----------------------------------------------------


@pytest.mark.parametrize(
    "key_text",
    [
        "",
        "{not json",
        '["a list"]',
        json.dumps({"type": "service_account", "project_id": "p"}),
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "client_email": "sync@p.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        ),
    ],
    ids=["empty", "not-json", "a-list", "fields-missing", "bad-private-key"],
)
def test_a_bad_key_file_is_one_clear_error(
    harper_node: HarperNode,
    write_config: WriteConfig,
    bq: bigquery.Client,
    unique: str,
    tmp_path: Path,
    key_text: str,
) -> None:
    path, _ = write_config([keyed_table(bq, f"key_{unique}", 3)])
    key = tmp_path / "key.json"
    key.write_text(key_text)

    def real_bigquery(data: dict[str, Any]) -> None:
        for name in ("endpoint", "storageEndpoint"):
            data["bigquery"].pop(name)
        data["bigquery"]["credentials"] = str(key)

    edit(path, real_bigquery)
    env = stack_env(harper_node)
    for command in (
        ["sync", "run", "--once", "--no-control"],
        ["sync", "validate"],
        ["synth", "initialize", "small"],
    ):
        code, output = cli(*command, "-c", str(path), env=env)
        assert code in (1, 2), (command, output)
        assert "cannot use the credentials file" in output and str(key) in output, output
        assert "bigquery.credentials" in output, output
        assert_clean(output, harper_node.password)


def test_harper_unreachable_ends_status_validate_and_once_with_one_line(
    harper_node: HarperNode, write_config: WriteConfig, bq: bigquery.Client, unique: str
) -> None:
    path, _ = write_config([keyed_table(bq, f"down_{unique}", 3)])
    dead = f"http://127.0.0.1:{free_port()}"
    edit(path, lambda data: data["harper"].update(url=dead))
    env = stack_env(harper_node)
    for command in (
        ["sync", "run", "--once", "--no-control"],
        ["sync", "status"],
        ["sync", "validate"],
        ["sync", "reset", "--table", "t"],
    ):
        started = time.monotonic()
        code, output = cli(*command, "-c", str(path), env=env)
        assert code == 1, (command, output)
        assert time.monotonic() - started < 60, command
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output
        assert f"Harper at {dead}" in errors[0] and "check harper.url" in errors[0], output
        assert_clean(output, harper_node.password)


def test_sync_run_waits_for_harper_with_one_line_per_attempt_and_stops_on_sigterm(
    harper_node: HarperNode,
    write_config: WriteConfig,
    bq: bigquery.Client,
    unique: str,
    tmp_path: Path,
) -> None:
    path, _ = write_config(
        [keyed_table(bq, f"wait_{unique}", 3)],
        retry={"initialDelay": 200, "maxDelay": "1s"},
    )
    dead = f"http://127.0.0.1:{free_port()}"
    edit(path, lambda data: data["harper"].update(url=dead))
    port = free_port()
    log = tmp_path / "sync.log"
    command = [sys.executable, "-m", "harperbq", "sync", "run", "-c", str(path)]
    command += ["--control-port", str(port), "--node-name", "waiting"]
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, env=stack_env(harper_node), stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        ready: httpx.Response | None = None
        while time.monotonic() < deadline and process.poll() is None:
            if log.read_text().count("cannot start the sync") >= 3:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
                    break
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        assert process.poll() is None, log.read_text()
        assert ready is not None and ready.status_code == 503, log.read_text()
        assert ready.json()["checks"]["harper"]["ok"] is False
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    attempts = [line for line in text.splitlines() if "cannot start the sync" in line]
    assert len(attempts) >= 3 and all(f"Harper at {dead}" in line for line in attempts)
    assert "attempt 1," in attempts[0] and "attempt 2," in attempts[1]
    assert_clean(text, harper_node.password)


def test_unknown_table_id_is_an_error_not_a_traceback(
    harper_node: HarperNode, write_config: WriteConfig, bq: bigquery.Client, unique: str
) -> None:
    path, _ = write_config([keyed_table(bq, f"unk_{unique}", 3)])
    for command in (
        ["sync", "run", "--once", "--no-control", "--table", "nope"],
        ["sync", "reset", "--table", "nope"],
    ):
        code, output = cli(*command, "-c", str(path), env=stack_env(harper_node))
        assert code == 2 and "no table with id 'nope' (configured: t)" in output, output
        assert_clean(output)


# -- item 6: no upper bounds, empty files ----------------------------------------------------


def test_absurd_batch_sizes_and_durations_are_refused_with_the_allowed_range(
    harper_node: HarperNode, write_config: WriteConfig, bq: bigquery.Client, unique: str
) -> None:
    path, _ = write_config([keyed_table(bq, f"big_{unique}", 3)])
    # A whole number, as the probe wrote it (a float this large is refused by pydantic anyway).
    edit(path, lambda data: data.update(sync={"initialBatchSize": 10**30, "pollInterval": 1e12}))
    assert f"initialBatchSize: {10**30}" in path.read_text()
    env = stack_env(harper_node)
    code, output = cli("config", "check", "--offline", "--json", "-c", str(path), env=env)
    assert code == 1, output
    found = {p["path"]: p for p in json.loads(output)["problems"]}
    assert found["sync.initialBatchSize"]["message"].startswith("must be at most 1,000,000")
    assert found["sync.initialBatchSize"]["value"] == 10**30
    assert "between 1 and 1,000,000" in found["sync.initialBatchSize"]["fix"]
    assert "at most 1d" in found["sync.pollInterval"]["message"]
    code, output = cli("sync", "run", "--once", "--no-control", "-c", str(path), env=env)
    assert code == 2 and "sync.initialBatchSize" in output, output
    assert_clean(output)


def test_an_empty_config_file_is_an_error(tmp_path: Path) -> None:
    for text in ("", "# only a comment\n"):
        path = tmp_path / "empty.yaml"
        path.write_text(text)
        code, output = cli("config", "check", "--offline", "-c", str(path))
        assert code == 1 and "the config file is empty" in output, output
        code, output = cli("config", "check", "--offline", "--json", "-c", str(path))
        assert code == 1 and "docs/configuration.md" in json.loads(output)["problems"][0]["fix"]
        code, output = cli("sync", "status", "-c", str(path))
        assert code == 2 and "empty" in output, output
        assert_clean(output)
    path.write_text("just a string\n")
    code, output = cli("config", "check", "--offline", "-c", str(path))
    assert code == 1 and "must be a mapping" in output, output
