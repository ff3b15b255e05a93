"""HTTP control plane of `harperbq sync run`: status, start/stop/validate, health, metrics.

Standard library only (`ThreadingHTTPServer` in a daemon thread): the surface is a handful of
small JSON endpoints, not worth a framework. Loopback by default. With a token configured every
endpoint except `/healthz` and `/readyz` needs `Authorization: Bearer <token>` (compared in
constant time; never logged); the probes stay open so an orchestrator can call them without the
secret, and readiness results are cached so they cannot be used to flood Harper or BigQuery.

Endpoints (docs/operations.md has examples):
- `GET /status`: node, cluster, every table on every local worker (state, phase, checkpoint,
  lag, rows, last error).
- `POST /control {"action": "start"|"stop"|"validate", "table": <id, omitted = every table>}`.
- `GET /SyncControl`, `POST /SyncControl {"action": ...}`: the JS plugin's shapes, acting on
  every table (the plugin only ever reached its first).
- `GET /healthz` (the process answers), `GET /readyz` (Harper and BigQuery reachable),
  `GET /metrics` (Prometheus text format).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harperbq.config import is_loopback
from harperbq.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from harperbq.sync import live_status
from harperbq.sync.service import SyncService

log = logging.getLogger("harperbq.server")

MAX_BODY_BYTES = 64 * 1024
ACTIONS = ("start", "stop", "validate")
_LEGACY_MESSAGES = {
    "start": "Sync started",
    "stop": "Sync stopped",
    "validate": "Validation triggered",
}
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="harperbq"'}

Readiness = Callable[[], tuple[bool, dict[str, Any]]]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = (json.dumps(payload, default=str, indent=2) + "\n").encode()
    return Response(status, body, headers=dict(headers or {}))


def _error(
    status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    return json_response(status, {"error": message, **extra}, headers)


class ControlApp:
    """Routes one request to the service; knows nothing of sockets (ControlServer does)."""

    def __init__(
        self,
        service: SyncService,
        *,
        token: str | None = None,
        readiness: Readiness | None = None,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.service = service
        self._token = token.encode() if token else None
        self.readiness = readiness
        self.stop_timeout_s = stop_timeout_s
        self._actions = threading.Lock()
        self._routes: dict[tuple[str, str], Callable[[bytes], Response]] = {
            ("GET", "/healthz"): lambda _: json_response(200, {"status": "ok"}),
            ("GET", "/readyz"): self._readyz,
            ("GET", "/status"): lambda _: json_response(200, live_status.service_status(service)),
            ("GET", "/metrics"): self._metrics,
            ("POST", "/control"): self._control,
            ("GET", "/SyncControl"): lambda _: json_response(
                200, live_status.sync_control_status(service)
            ),
            ("POST", "/SyncControl"): self._sync_control,
        }

    @property
    def auth_required(self) -> bool:
        return self._token is not None

    def authorized(self, header: str | None) -> bool:
        if self._token is None:
            return True
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode(), self._token)

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        path = target.split("?", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        # Authentication first: without the token nothing, not even the list of endpoints,
        # is told (only the open probes answer).
        if path not in _OPEN_PATHS and not self.authorized(headers.get("authorization")):
            return _error(401, "a valid bearer token is required", _CHALLENGE)
        route = self._routes.get((method, path))
        if route is None:
            allowed = sorted(m for m, p in self._routes if p == path)
            if allowed:
                return _error(405, f"{method} not allowed on {path}", {"Allow": ", ".join(allowed)})
            return _error(404, "no such endpoint", endpoints=self.endpoints())
        return route(body)

    def endpoints(self) -> list[str]:
        return [f"{m} {p}" for m, p in self._routes]

    # -- handlers ------------------------------------------------------------------------------

    def _readyz(self, _: bytes) -> Response:
        if self.readiness is None:
            return json_response(200, {"ready": True, "checks": {}})
        ready, checks = self.readiness()
        return json_response(200 if ready else 503, {"ready": ready, "checks": checks})

    def _metrics(self, _: bytes) -> Response:
        return Response(200, self.service.metrics.exposition(), METRICS_CONTENT_TYPE)

    def _control(self, body: bytes) -> Response:
        request = _json_object(body)
        if isinstance(request, Response):
            return request
        action, table = request.get("action"), request.get("table")
        if action not in ACTIONS:
            return _error(400, f"action must be one of {list(ACTIONS)}", action=action)
        if table is not None and not isinstance(table, str):
            return _error(400, "table must be a table id (string) or omitted for every table")
        status, result = self.act(str(action), table)
        return json_response(status, result)

    def _sync_control(self, body: bytes) -> Response:
        request = _json_object(body)
        if isinstance(request, Response):
            return request
        action, table = request.get("action"), request.get("table")
        if action not in ACTIONS:
            return _error(400, f"Unknown action: {action}")
        if table is not None and not isinstance(table, str):
            return _error(400, "table must be a table id (string) or omitted for every table")
        status, result = self.act(str(action), table)
        if status >= 400:
            return json_response(status, result)
        return json_response(status, {"message": _LEGACY_MESSAGES[str(action)], **result})

    def act(self, action: str, table: str | None) -> tuple[int, dict[str, Any]]:
        """Apply an action to one table or every table; (HTTP status, body)."""
        try:
            ids = self.service.table_ids(table)
        except KeyError:
            return 404, {"error": f"unknown table {table!r}", "tables": self.service.table_ids()}
        log.info("control action", extra={"action": action, "tables": ids})
        if action == "validate":
            return self._validate(ids)
        results: dict[str, Any] = {}
        with self._actions:  # one start/stop at a time, so they cannot interleave per table
            for table_id in ids:
                if action == "start":
                    ok = self.service.start_table(table_id, self.stop_timeout_s)
                else:
                    ok = self.service.stop_table(table_id, self.stop_timeout_s)
                results[table_id] = {"ok": ok, "workers": self._states(table_id)}
        # 202: accepted but still in progress (a runner is finishing a request).
        status = 200 if all(r["ok"] for r in results.values()) else 202
        return status, {"action": action, "tables": results}

    def _validate(self, ids: list[str]) -> tuple[int, dict[str, Any]]:
        """Runs in the request's thread (blocks for the duration; start/stop stay available)."""
        results: dict[str, Any] = {}
        for table_id in ids:
            try:
                result = self.service.validate_table(table_id)
            except NotImplementedError as exc:
                return 501, {"error": str(exc)}
            except Exception as exc:
                log.exception("validation of %s failed", table_id)
                result = {"error": f"{type(exc).__name__}: {exc}"}
            results[table_id] = {"ok": not result.get("error"), **result}
        status = 200 if all(r["ok"] for r in results.values()) else 500
        return status, {"action": "validate", "tables": results}

    def _states(self, table_id: str) -> dict[str, str]:
        return {
            h.worker_id: str(h.runner.state) for h in self.service.handles if h.table.id == table_id
        }


def _json_object(body: bytes) -> dict[str, Any] | Response:
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return _error(400, "the body must be a JSON object")
    if not isinstance(request, dict):
        return _error(400, "the body must be a JSON object")
    return request


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may take to send its request (slow clients hold a thread)
    server_version = "harperbq"
    sys_version = ""  # no Python version in the Server header

    def _serve(self, method: str) -> None:
        started = time.monotonic()
        body = self._body()
        if isinstance(body, Response):
            response = body
            self.close_connection = True  # the rest of the stream cannot be trusted
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                response = self.server.app.handle(method, self.path, headers, body)
            except Exception as exc:  # a bug must not kill the listener
                log.exception("control request failed: %s %s", method, self.path.split("?")[0])
                response = _error(500, f"{type(exc).__name__}: {exc}")
        self._send(method, response)
        log.debug(
            "http.request",
            extra={
                "method": method,
                "path": self.path.split("?", 1)[0],
                "status": response.status,
                "duration_s": round(time.monotonic() - started, 4),
            },
        )

    def _body(self) -> bytes | Response:
        """The request body, or the 4xx answer to a malformed or oversized one."""
        if self.headers.get("transfer-encoding"):
            return _error(411, "send the body with a Content-Length (chunked is not supported)")
        values = self.headers.get_all("content-length") or []
        if not values:
            return b""
        if len(set(values)) > 1 or not values[0].strip().isdigit():
            return _error(400, "Content-Length must be one non-negative integer")
        length = int(values[0])
        if length > MAX_BODY_BYTES:
            return _error(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            body = self.rfile.read(length) if length > 0 else b""
        except OSError:  # includes the socket timeout of a client that stopped sending
            return _error(408, "the request body did not arrive in time")
        if len(body) < length:
            return _error(400, "the request body is shorter than its Content-Length")
        return body

    def _send(self, method: str, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    # Other methods are answered (405 on a known path, 404 elsewhere, after the auth check)
    # instead of http.server's HTML 501.
    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_OPTIONS(self) -> None:
        self._serve("OPTIONS")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own rejections (bad request line, headers too long, unknown method) as
        JSON 4xx like every other answer: an unknown method is a 405 (not a 501), an HTTP
        version we do not speak a 400 (not a 505)."""
        status = {501: 405, 505: 400}.get(code, code)
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # an unparsed request: answer with a status line
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may be gone
            self._send("GET", _error(status, message or explain or "malformed request"))

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own stderr line per request (_serve logs each one)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: ControlApp


class _Server6(_Server):
    address_family = socket.AF_INET6


class InsecureBind(ValueError):  # noqa: N818 (reads as what is wrong)
    """The control API was asked to listen beyond loopback without a token."""


class ControlServer:
    """Serves a ControlApp on host:port (port 0: any free port, see `.port`) in a thread.
    Refuses (InsecureBind) an address beyond loopback unless the app requires a token."""

    def __init__(self, app: ControlApp, host: str = "127.0.0.1", port: int = 8181) -> None:
        if not is_loopback(host) and not app.auth_required:
            raise InsecureBind(
                f"refusing to serve the control API on {host} without a token: anyone who can "
                "reach it could stop the sync. Set control.token (or HARPERBQ_CONTROL_TOKEN), "
                "or bind 127.0.0.1 (control.host / --control-host)"
            )
        self.app = app
        self.host = host
        cls = _Server6 if ":" in host else _Server
        try:
            self._server = cls((host, port), _Handler)
        except OSError as exc:
            raise OSError(
                f"cannot serve the control API on {host}:{port}: {exc.strerror or exc} "
                "(set control.port / --control-port, or --no-control)"
            ) from exc
        self._server.app = app
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ControlServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="control-api"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info(
            "control API listening",
            extra={"url": self.url, "auth": "bearer" if self.app.auth_required else "none"},
        )
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)


def serve(
    service: SyncService,
    *,
    host: str | None = None,
    port: int | None = None,
    readiness: Readiness | None = None,
) -> ControlServer | None:
    """Start the control API per the config's `control` block (host/port overridable), or
    return None when it is disabled."""
    control = service.config.control
    if not control.enabled:
        return None
    token = control.token.get_secret_value() if control.token is not None else None
    app = ControlApp(service, token=token, readiness=readiness)
    return ControlServer(app, host or control.host, control.port if port is None else port).start()
