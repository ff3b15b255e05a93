"""Helpers shared by end-to-end tests: source tables, one-shot syncs, content comparison."""

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from google.cloud import bigquery

from harperbq.bigquery.client import make_client
from harperbq.config import Config
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.models import Condition
from harperbq.sync.service import SyncService


def harper_rows(client: HarperClient, database: str, table: str) -> dict[str, dict[str, Any]]:
    """Every record of a Harper table by id, with every attribute (also undeclared ones),
    minus the timestamps Harper adds itself."""
    rows = client.search(database, table, [Condition("id", "greater_than_equal", "")])
    internal = ("__createdtime__", "__updatedtime__")
    return {str(r["id"]): {k: v for k, v in r.items() if k not in internal} for r in rows}


def make_source(
    bq: bigquery.Client,
    dataset: str,
    table: str,
    schema: list[bigquery.SchemaField],
    rows: list[dict[str, Any]],
) -> None:
    bq.create_dataset(dataset, exists_ok=True)
    ref = bigquery.Table(f"{bq.project}.{dataset}.{table}", schema=schema)
    bq.create_table(ref, exists_ok=True)
    for start in range(0, len(rows), 50_000):
        bq.load_table_from_json(rows[start : start + 50_000], ref).result()


def run_to_end(service: SyncService, timeout_s: float) -> tuple[bool, bool]:
    """Start a `--once` service, wait for it to end by itself (at most `timeout_s`), stop it:
    (every table done, ended by itself rather than by the timeout)."""
    service.start()
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        ok = service.wait(stop)
    finally:
        timer.cancel()
        service.stop()
    return ok, not stop.is_set()


def run_once(cfg: Config, harper: HarperClient, timeout_s: float = 240) -> SyncService:
    """`sync run --once` in-process: start, wait until caught up, stop; asserts success."""
    service = SyncService(cfg, harper, make_client(cfg.bigquery), once=True)
    ok, _ = run_to_end(service, timeout_s)
    errors = {r.table_id: r.engine.status.last_error for r in service.runners()}
    assert ok, f"sync did not finish: {errors}"
    return service


def keyed_table(bq: bigquery.Client, dataset: str, rows: int, **spec: Any) -> dict[str, Any]:
    """Source table `t` (ts TIMESTAMP one second apart, k INT64 key) with `rows` rows, and its
    table spec for a config (target `T`, key `[k]`, `spec` merged in)."""
    start = datetime(2024, 2, 1, tzinfo=UTC)
    data = [{"ts": (start + timedelta(seconds=i)).isoformat(), "k": i} for i in range(rows)]
    schema = [bigquery.SchemaField("ts", "TIMESTAMP"), bigquery.SchemaField("k", "INT64")]
    make_source(bq, dataset, "t", schema, data)
    return {
        "id": "t",
        "dataset": dataset,
        "table": "t",
        "timestampColumn": "ts",
        "columns": ["ts", "k"],
        "targetTable": "T",
        "primaryKey": ["k"],
        **spec,
    }


class FaultProxy:
    """Forwards Operations API requests to Harper, except for the faults queued in `plan`:
    "503" (answer 503 without forwarding), "drop" (close without answering, not forwarded),
    "forward-drop" (forward to Harper, then close without answering), "lose-confirmation"
    (forward, then strip the last id from Harper's `upserted_hashes`), "slow:<s>" (hold the
    request for s seconds, a slow link, then forward it).

    `hold(table, after=N)` makes every upsert into that table but the next N wait until
    `release()` (a Harper that stopped taking one table's writes); `held` counts the upserts
    that waited."""

    def __init__(self, target: HarperNode) -> None:
        self.target = target
        self.plan: list[str] = []
        self.seen: list[str] = []
        self.held = 0
        self._held_table: str | None = None
        self._passes = 0
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with proxy._lock:
                    action = proxy.plan.pop(0) if proxy.plan else "pass"
                    proxy.seen.append(action)
                if action == "503":
                    self._answer(
                        503, b'{"error":"Outstanding write transactions have too long of queue"}'
                    )
                    return
                if action == "drop":
                    self._drop()
                    return
                if action.startswith("slow:"):
                    time.sleep(float(action.removeprefix("slow:")))
                proxy._wait_if_held(body)
                answer = proxy._http.post(
                    target.url,
                    content=body,
                    headers={
                        "authorization": self.headers["authorization"],
                        "content-type": "application/json",
                    },
                )
                if action == "forward-drop":
                    self._drop()
                    return
                content = answer.content
                if action == "lose-confirmation":
                    reply = answer.json()
                    reply["upserted_hashes"] = reply["upserted_hashes"][:-1]
                    content = json.dumps(reply).encode()
                self._answer(answer.status_code, content)

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self, **options: Any) -> HarperClient:
        """A client of the target node through this proxy (JSON: the proxy reads bodies)."""
        options = {"backoff_base_s": 0.01, "encoding": "json", **options}
        return HarperClient(self.url, self.target.username, self.target.password, **options)

    def hold(self, table: str, after: int = 0) -> None:
        """Hold the upserts into `table` from the one after the next `after` on."""
        with self._lock:
            self._held_table, self._passes = table, after
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def _wait_if_held(self, body: bytes) -> None:
        if self._gate.is_set():
            return
        request = json.loads(body)
        if request.get("operation") == "upsert" and request.get("table") == self._held_table:
            with self._lock:
                if self._passes > 0:
                    self._passes -= 1
                    return
                self.held += 1
            self._gate.wait(120)

    def close(self) -> None:
        self._gate.set()
        self.server.shutdown()
        self.server.server_close()
        self._http.close()
