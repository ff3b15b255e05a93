# ruff: noqa: S104  (binding to all interfaces is what these tests check is refused)
"""The control API answers every malformed request with a 4xx JSON error over a real socket,
checks the token before telling whether a path exists, and refuses to listen beyond loopback
without a token (a real service on the test Harper and emulator behind it)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google.cloud import bigquery
from tests.support import keyed_table

from harperbq.bigquery.client import make_client
from harperbq.config import Config, ConfigError, load_config
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.server import ControlApp, ControlServer, InsecureBind
from harperbq.sync.service import SyncService

WriteConfig = Callable[..., tuple[Path, Config]]


@pytest.fixture
def service(
    harper_node: HarperNode, write_config: WriteConfig, bq: bigquery.Client, unique: str
) -> Iterator[SyncService]:
    _, cfg = write_config([keyed_table(bq, f"api_{unique}", 3)])
    with HarperClient(harper_node.url, harper_node.username, harper_node.password) as harper:
        yield SyncService(cfg, harper, make_client(cfg.bigquery), node_name="api-test")


@pytest.fixture
def server(service: SyncService) -> Iterator[tuple[ControlServer, str]]:
    token = secrets.token_urlsafe(24)
    control = ControlServer(ControlApp(service, token=token), port=0).start()
    try:
        yield control, token
    finally:
        control.stop()


def raw(port: int, request: bytes, *, half_close: bool = False) -> tuple[int, dict[str, Any]]:
    """Send bytes as they are; (status, decoded JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(request)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = dict(
        line.decode().lower().split(": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
    )
    assert headers["content-type"] == "application/json", head
    return status, json.loads(body)


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def post(path: str, token: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Authorization: Bearer {token}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_malformed_requests_get_a_4xx_json_error(server: tuple[ControlServer, str]) -> None:
    control, token = server
    port = control.port
    cases: list[tuple[bytes, int, bool]] = [
        (post("/control", token, b"{}", "Content-Length: abc"), 400, False),
        (post("/control", token, b"{}", "Content-Length: -5"), 400, False),
        (post("/control", token, b"{}", "Content-Length: 2", "Content-Length: 3"), 400, False),
        (post("/control", token, b"", "Content-Length: 1.5"), 400, False),
        (post("/control", token, b"", f"Content-Length: {10**30}"), 413, False),
        (
            post("/control", token, b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"),
            411,
            False,
        ),
        (post("/control", token, b'{"act', "Content-Length: 40"), 400, True),  # body cut short
        (post("/control", token, b"{nope", "Content-Length: 5"), 400, False),
        (post("/control", token, b"\xff\xfe", "Content-Length: 2"), 400, False),
        (post("/control", token, b"[1]", "Content-Length: 3"), 400, False),
        (post("/status", token, b"", "Content-Length: 0"), 405, False),
        (f"PUT /control HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode(), 405, False),
        (f"DELETE /status HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode(), 405, False),
        (b"BREW /status HTTP/1.1\r\n\r\n", 405, False),
        (b"GET /status HTTP/9.9\r\n\r\n", 400, False),
        (b"NONSENSE\r\n\r\n", 400, False),
        (
            f"GET /%ZZ%\xff HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode("latin-1"),
            404,
            False,
        ),
    ]
    for request, expected, half_close in cases:
        status, body = raw(port, request, half_close=half_close)
        assert status == expected, (request, status, body)
        assert 400 <= status < 500 and isinstance(body["error"], str) and body["error"], request
    # The listener survived all of it.
    assert httpx.get(control.url + "/healthz", timeout=10).json() == {"status": "ok"}


def test_unknown_paths_answer_401_before_404(server: tuple[ControlServer, str]) -> None:
    control, token = server
    for path in ("/nope", "/admin", "/%ZZ", "/status/extra"):
        anonymous = httpx.get(control.url + path, timeout=10)
        assert anonymous.status_code == 401, path
        assert "endpoints" not in anonymous.json() and "/control" not in anonymous.text
        known = httpx.get(control.url + path, headers={"Authorization": f"Bearer {token}"})
        assert known.status_code == 404 and "GET /status" in known.json()["endpoints"], path
    status, body = raw(control.port, b"PUT /control HTTP/1.1\r\n\r\n")
    assert status == 401 and "endpoints" not in body
    # The probes stay open.
    assert httpx.get(control.url + "/healthz", timeout=10).status_code == 200


def test_binding_beyond_loopback_needs_a_token(service: SyncService) -> None:
    for host in ("0.0.0.0", "::", "10.1.2.3"):
        with pytest.raises(InsecureBind, match=f"on {host} without a token"):
            ControlServer(ControlApp(service), host=host, port=0)
    for host in ("127.0.0.1", "localhost", "::1"):
        try:
            server = ControlServer(ControlApp(service), host=host, port=0).start()
        except OSError as exc:  # no IPv6 on this machine
            assert host == "::1", exc
            continue
        server.stop()
    with_token = ControlServer(ControlApp(service, token="t" * 24), host="0.0.0.0", port=0)
    with_token.start().stop()


def test_sync_run_refuses_a_non_loopback_control_api_without_a_token(
    harper_node: HarperNode, write_config: WriteConfig, bq: bigquery.Client, unique: str
) -> None:
    path, _ = write_config([keyed_table(bq, f"bind_{unique}", 3)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARPERBQ_")}
    env["TEST_HARPER_PASSWORD"] = harper_node.password
    command = [sys.executable, "-m", "harperbq", "sync", "run", "-c", str(path)]
    for extra in (["--control-host", "0.0.0.0"], ["--once", "--control-host", "0.0.0.0"]):
        done = subprocess.run(
            [*command, *extra, "--control-port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "refusing to serve the control API on 0.0.0.0 without a token" in done.stderr
        assert "Traceback" not in done.stderr
    # In the file (or HARPERBQ_CONTROL_HOST, the container's switch) it is a config problem.
    data = yaml.safe_load(path.read_text())
    data["control"] = {"host": "0.0.0.0"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"TEST_HARPER_PASSWORD": harper_node.password})
    assert [p.path for p in caught.value.problems] == ["control.host"]
    token_env = {"TEST_HARPER_PASSWORD": harper_node.password, "HARPERBQ_CONTROL_TOKEN": "x" * 20}
    assert load_config(path, token_env).control.host == "0.0.0.0"
    data["control"] = {}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"control\.host"):
        load_config(path, {**env, "HARPERBQ_CONTROL_HOST": "0.0.0.0"})
