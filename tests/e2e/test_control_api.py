"""The control plane over real HTTP, against a real running sync (real Harper, emulator).

One long-running service (two tables, the control API on a free port with a bearer token) is
shared by the read-only tests; tests that stop and start tables restore what they changed.
"""

from __future__ import annotations

import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google.cloud import bigquery
from prometheus_client.parser import text_string_to_metric_families
from tests.support import harper_rows, make_source

from harperbq.bigquery.client import make_client
from harperbq.config import Config, load_config
from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import NotFound
from harperbq.metrics import METRICS
from harperbq.readiness import Readiness
from harperbq.server import ControlApp, ControlServer, serve
from harperbq.sync.service import SyncService

TABLES = ("alpha", "beta")
FIRST_ROWS = 40
SCHEMA = [
    bigquery.SchemaField("ts", "TIMESTAMP"),
    bigquery.SchemaField("k", "INT64"),
    bigquery.SchemaField("v", "STRING"),
]


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; its last value on timeout is reported."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@dataclass
class Stack:
    cfg: Config
    service: SyncService
    url: str
    token: str
    harper: HarperClient
    bq: bigquery.Client
    dataset: str

    def get(self, path: str, *, auth: bool = True, bearer: str | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers=self._auth(auth, bearer), timeout=30)

    def post(
        self, path: str, body: Any, *, auth: bool = True, bearer: str | None = None
    ) -> httpx.Response:
        headers = self._auth(auth, bearer)
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30)

    def _auth(self, auth: bool, bearer: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {bearer or self.token}"} if auth else {}

    def status(self) -> dict[str, Any]:
        response = self.get("/status")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def caught_up(self) -> bool:
        tables = self.status()["tables"]
        return all(w["caught_up"] and w["lag_s"] is not None for t in tables for w in t["workers"])

    def table(self, table_id: str) -> dict[str, Any]:
        return next(t for t in self.status()["tables"] if t["table"] == table_id)

    def harper_count(self, table_id: str) -> int:
        """Records in the table's Harper target (-1 while the sync has not created it yet)."""
        try:
            return len(harper_rows(self.harper, self.cfg.harper.database, target(table_id)))
        except NotFound:
            return -1

    def add_rows(self, table_id: str, keys: range, at: datetime) -> None:
        rows = [{"ts": at.isoformat(), "k": k, "v": f"{table_id}-{k}"} for k in keys]
        make_source(self.bq, self.dataset, table_id, SCHEMA, rows)


def target(table_id: str) -> str:
    return table_id.capitalize()


def write_stack_config(
    directory: Path, node: HarperNode, emu: Emulator, dataset: str, **control: Any
) -> tuple[Path, Config]:
    suffix = uuid.uuid4().hex[:8]
    data = {
        "harper": {
            "url": node.url,
            "username": node.username,
            "password": "${TEST_HARPER_PASSWORD}",
            "database": f"ctl_{suffix}",
            "stateDatabase": f"ctlstate_{suffix}",
        },
        "bigquery": {
            "projectId": emu.project,
            "endpoint": emu.endpoint,
            "storageEndpoint": emu.grpc_endpoint,
            "tables": [
                {
                    "id": t,
                    "dataset": dataset,
                    "table": t,
                    "timestampColumn": "ts",
                    "columns": ["ts", "k", "v"],
                    "targetTable": target(t),
                    "primaryKey": ["k"],
                    "partitions": 4,
                }
                for t in TABLES
            ],
        },
        # Always "steady" (thresholds far away), polling every 200 ms, no settle delay.
        "sync": {
            "settle": "0s",
            "pollInterval": 200,
            "catchupThreshold": 10 * 86400,
            "steadyThreshold": 10 * 86400,
        },
        "retry": {"maxAttempts": 5, "initialDelay": 200, "maxDelay": "2s"},
        "control": {"port": 0, **control},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, load_config(path, {"TEST_HARPER_PASSWORD": node.password})


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    harper_node: HarperNode,
    bq_emulator: Emulator,
    bq: bigquery.Client,
) -> Iterator[Stack]:
    dataset = f"ctl_{uuid.uuid4().hex[:8]}"
    token = secrets.token_urlsafe(24)
    _, cfg = write_stack_config(
        tmp_path_factory.mktemp("control"), harper_node, bq_emulator, dataset, token=token
    )
    base = datetime.now(UTC) - timedelta(minutes=10)
    for t in TABLES:
        rows = [
            {"ts": (base + timedelta(seconds=i)).isoformat(), "k": i, "v": f"{t}-{i}"}
            for i in range(FIRST_ROWS)
        ]
        make_source(bq, dataset, t, SCHEMA, rows)
    harper = HarperClient(harper_node.url, harper_node.username, harper_node.password)
    client = make_client(cfg.bigquery)
    service = SyncService(cfg, harper, client)
    readiness = Readiness(cfg, client)
    server = serve(service, readiness=readiness.check)
    assert server is not None
    service.start()
    s = Stack(cfg, service, server.url, token, harper, bq, dataset)
    try:
        wait_for(
            lambda: all(s.harper_count(t) == FIRST_ROWS for t in TABLES), what="first rows synced"
        )
        wait_for(s.caught_up, what="every worker caught up")
        yield s
    finally:
        service.stop()
        server.stop()
        readiness.close()
        harper.close()


def test_status_reports_every_table_and_worker(stack: Stack) -> None:
    body = stack.status()
    assert body["node"] == stack.service.node
    assert body["version"] and body["uptime_s"] > 0 and body["running"] is True
    worker = f"{stack.service.node}-0"
    assert body["workers"] == [worker]
    assert worker in body["cluster"]["live_workers"] and body["cluster"]["size"] >= 1
    assert [t["table"] for t in body["tables"]] == list(TABLES)
    for table in body["tables"]:
        assert table["running"] is True
        assert table["target"] == f"{stack.cfg.harper.database}.{target(table['table'])}"
        [w] = table["workers"]
        assert w["worker"] == worker and w["state"] in ("running", "idle")
        assert w["phase"] == "steady" and w["last_error"] is None
        assert w["partitions"] == [0, 1, 2, 3]
        assert w["rows_written"] == FIRST_ROWS and w["windows"] >= 1
        assert w["checkpoint"].endswith("Z") and 0 <= w["lag_s"] < 60


def test_caught_up_holds_while_polls_find_nothing_new(stack: Stack) -> None:
    """A poll that finds nothing new does not make a caught-up worker look behind: 20 readings
    over 2 s (about ten polls of 200 ms each) all say caught up."""
    readings = []
    for _ in range(20):
        readings.append(stack.caught_up())
        time.sleep(0.1)  # spacing the readings across polls, not waiting for a condition
    assert all(readings), readings


def test_sync_control_keeps_the_original_shapes(stack: Stack) -> None:
    response = stack.get("/SyncControl")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "uptime", "version"}
    status = body["status"]
    assert {"nodeId", "clusterSize", "running", "phase", "lastCheckpoint"} <= set(status)
    assert status["nodeId"] == stack.service.node and status["clusterSize"] >= 1
    assert status["running"] is True and status["phase"] == "steady"
    checkpoint = status["lastCheckpoint"]
    assert checkpoint["tableId"] in TABLES and checkpoint["lastTimestamp"].endswith("Z")
    assert checkpoint["recordsIngested"] >= FIRST_ROWS
    # Every table is reported, not only the first.
    assert [t["tableId"] for t in status["tables"]] == list(TABLES)

    bad = stack.post("/SyncControl", {"action": "explode"})
    assert bad.status_code == 400 and bad.json()["error"] == "Unknown action: explode"


def test_stop_and_start_one_table_then_all(stack: Stack) -> None:
    alpha_before = stack.harper_count("alpha")
    beta_before = stack.harper_count("beta")

    stopped = stack.post("/control", {"action": "stop", "table": "alpha"})
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["tables"]["alpha"]["workers"] == {f"{stack.service.node}-0": "stopped"}
    assert stack.table("alpha")["running"] is False
    assert stack.table("beta")["running"] is True

    # New rows for both, stamped a few seconds ahead so no running pass can have passed them.
    at = datetime.now(UTC) + timedelta(seconds=2)
    stack.add_rows("alpha", range(1000, 1010), at)
    stack.add_rows("beta", range(1000, 1010), at)
    wait_for(lambda: stack.harper_count("beta") == beta_before + 10, what="beta's new rows")
    # beta (same poll interval, same rows) got them; alpha, stopped, did not.
    assert stack.harper_count("alpha") == alpha_before
    assert stack.table("alpha")["workers"][0]["state"] == "stopped"

    started = stack.post("/control", {"action": "start", "table": "alpha"})
    assert started.status_code == 200 and started.json()["tables"]["alpha"]["ok"] is True
    wait_for(lambda: stack.harper_count("alpha") == alpha_before + 10, what="alpha resumed")

    # No table named: the action reaches every table (the original reached only the first).
    everything = stack.post("/control", {"action": "stop"})
    assert everything.status_code == 200 and set(everything.json()["tables"]) == set(TABLES)
    assert all(not t["running"] for t in stack.status()["tables"])
    legacy = stack.post("/SyncControl", {"action": "start"})
    assert legacy.status_code == 200 and legacy.json()["message"] == "Sync started"
    assert all(t["running"] for t in stack.status()["tables"])

    unknown = stack.post("/control", {"action": "stop", "table": "nope"})
    assert unknown.status_code == 404 and unknown.json()["tables"] == list(TABLES)


def test_bearer_token_is_enforced(stack: Stack) -> None:
    for path in ("/status", "/metrics", "/SyncControl"):
        missing = stack.get(path, auth=False)
        assert missing.status_code == 401, path
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert stack.get(path, bearer=stack.token + "x").status_code == 401
        assert stack.get(path).status_code == 200
    denied = stack.post("/control", {"action": "stop"}, bearer="wrong-token-wrong-token")
    assert denied.status_code == 401
    assert all(t["running"] for t in stack.status()["tables"])  # nothing was stopped
    basic = httpx.get(stack.url + "/status", auth=("admin", stack.token), timeout=10)
    assert basic.status_code == 401
    # Probes stay open so an orchestrator needs no secret.
    assert stack.get("/healthz", auth=False).json() == {"status": "ok"}


def test_health_and_readiness(
    stack: Stack, bq: bigquery.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ready = stack.get("/readyz", auth=False)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["harper"]["ok"] is True and checks["bigquery"]["ok"] is True
    assert stack.get("/nope").status_code == 404
    assert stack.post("/status", {}).status_code == 405

    # Harper unreachable and a dataset that does not exist: not ready, and fast.
    harper = stack.cfg.harper.model_copy(update={"url": f"http://127.0.0.1:{_free_port()}"})
    tables = [t.model_copy(update={"dataset": "no_such_dataset"}) for t in stack.cfg.tables]
    broken = Readiness(
        stack.cfg.model_copy(update={"harper": harper, "tables": tables}), bq, timeout_s=2
    )
    server = ControlServer(ControlApp(stack.service, readiness=broken.check), port=0).start()
    try:
        started = time.monotonic()
        answer = probe_get(server.url + "/readyz")
        assert time.monotonic() - started < 10
        assert answer.status_code == 503
        body = answer.json()
        assert body["ready"] is False
        assert body["checks"]["harper"]["ok"] is False
        assert body["checks"]["bigquery"]["ok"] is False
        assert "NotFound" in body["checks"]["bigquery"]["error"]
        assert probe_get(server.url + "/healthz").status_code == 200  # alive all the same
    finally:
        server.stop()
        broken.close()


def test_metrics_show_rows_and_lag_per_table(stack: Stack) -> None:
    worker = f"{stack.service.node}-0"

    def scrape() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        response = stack.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                key = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[key] = sample.value
        return samples

    def polled() -> bool:
        # The first pass of a change feed copies a snapshot (no query); the polls after it
        # query the feed, every 200 ms.
        queries = scrape()["harperbq_bigquery_queries_total"]
        return all(queries.get((("table", t), ("worker", worker)), 0) >= 1 for t in TABLES)

    wait_for(polled, 30)
    samples = scrape()
    for table in TABLES:
        tw = (("table", table), ("worker", worker))
        assert samples["harperbq_rows_synced_total"][tw] >= FIRST_ROWS
        assert samples["harperbq_windows_total"][tw] >= 1
        assert 0 <= samples["harperbq_lag_seconds"][tw] < 60
        assert samples["harperbq_checkpoint_timestamp_seconds"][tw] > time.time() - 120
        assert samples["harperbq_last_success_timestamp_seconds"][tw] > 0
        assert samples["harperbq_partitions_owned"][tw] == 4
        assert samples["harperbq_bigquery_queries_total"][tw] >= 1
        assert samples["harperbq_write_duration_seconds_count"][tw] >= 1
        assert samples["harperbq_window_duration_seconds_count"][tw] >= 1
        steady = tuple(sorted((*tw, ("phase", "steady"))))
        assert samples["harperbq_phase"][steady] == 1
        states = {
            dict(k)["state"]: v
            for k, v in samples["harperbq_runner_state"].items()
            if dict(k)["table"] == table
        }
        assert sum(states.values()) == 1 and states["running"] + states["idle"] == 1
    assert samples["harperbq_cluster_workers"][()] >= 1
    assert samples["harperbq_local_workers"][()] == 1

    # Lag is computed at scrape time: it grows while the table is stopped.
    stack.post("/control", {"action": "stop", "table": "alpha"})
    try:
        tw = (("table", "alpha"), ("worker", worker))
        first = scrape()["harperbq_lag_seconds"][tw]
        wait_for(lambda: scrape()["harperbq_lag_seconds"][tw] > first + 0.5, what="lag growing")
    finally:
        stack.post("/control", {"action": "start", "table": "alpha"})

    # Every metric the catalogue names is exposed (those without samples yet show HELP/TYPE).
    text = stack.get("/metrics").text
    for spec in METRICS:
        names = {spec.name, spec.name.removesuffix("_total")}
        assert any(f"# TYPE {name} {spec.kind}\n" in text for name in names), spec.name


def test_validate_action_calls_the_hook_and_records_drift(stack: Stack) -> None:
    service = stack.service
    # The validation the service ships with answers for every table, with its drift in rows.
    legacy = stack.post("/SyncControl", {"action": "validate"})
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["message"] == "Validation triggered"
    assert set(legacy.json()["tables"]) == set(TABLES)
    assert all(isinstance(t["drift_rows"], int) for t in legacy.json()["tables"].values())

    def count_validator(table_id: str) -> dict[str, Any]:
        """A crude but real validation through the same hook: BigQuery's count vs Harper's."""
        name = f"{stack.bq.project}.{stack.dataset}.{table_id}"
        query = f"SELECT COUNT(*) AS n FROM `{name}`"  # noqa: S608 (our own identifiers)
        source = next(iter(stack.bq.query(query).result()))["n"]
        harper = stack.harper_count(table_id)
        return {"source_rows": source, "harper_rows": harper, "drift_rows": abs(source - harper)}

    shipped, service.validator = service.validator, count_validator
    try:
        wait_for(
            lambda: (
                stack.post("/control", {"action": "validate", "table": "beta"}).json()["tables"][
                    "beta"
                ]["drift_rows"]
                == 0
            ),
            what="beta in step",
        )
        # A record deleted behind the sync's back is drift, on /control and on /metrics.
        victim = next(iter(harper_rows(stack.harper, stack.cfg.harper.database, "Beta")))
        stack.harper.delete(stack.cfg.harper.database, "Beta", [victim])
        answer = stack.post("/control", {"action": "validate", "table": "beta"})
        assert answer.status_code == 200
        assert answer.json()["tables"]["beta"]["drift_rows"] == 1
        assert 'harperbq_validation_drift_rows{table="beta"} 1.0' in stack.get("/metrics").text

        service.validator = None
        missing = stack.post("/control", {"action": "validate", "table": "beta"})
        assert missing.status_code == 501
    finally:
        service.validator = shipped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe_get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=30)
