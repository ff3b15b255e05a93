"""G3 end to end: the sync survives kill -9 of itself, a Harper crash and BigQuery error storms.

Every test ends by comparing Harper's final content with BigQuery's, row by row (ids and values):
nothing lost, nothing duplicated. Faults are injected only at process or transport level: SIGKILL
of the sync process, SIGKILL of Harper, fabricated 429/503 answers in the BigQuery client's HTTP
transport. Moments are chosen by polling real progress, never by sleeping for luck.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from google.cloud import bigquery
from requests.adapters import HTTPAdapter
from tests.support import harper_rows, make_source, run_to_end

from harperbq.bigquery.client import make_client
from harperbq.config import Config
from harperbq.devstack import harper, processes
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import HarperError
from harperbq.harper.transport import RequestEvent
from harperbq.phases import RunState
from harperbq.sync.service import SyncService
from harperbq.sync.state import StateStore
from harperbq.sync.table.keys import row_hash

CHANGE_FEED = "none"  # the query path's faults; the feed's: test_change_feed.py

BASE = datetime(2024, 3, 1, tzinfo=UTC)
SMALL_BATCHES = {"initialBatchSize": 500, "catchupBatchSize": 500, "steadyBatchSize": 500}

WriteConfig = Callable[..., tuple[Path, Config]]


# -- source data and the comparison -------------------------------------------------------------


KEYED_SCHEMA = [
    bigquery.SchemaField("ts", "TIMESTAMP"),
    bigquery.SchemaField("k", "INT64"),
    bigquery.SchemaField("v", "STRING"),
    bigquery.SchemaField("x", "FLOAT64"),
]


def keyed_rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Position-like rows with a primary key `k`; 7 rows share each timestamp."""
    return [
        {
            "ts": (BASE + timedelta(milliseconds=250 * (i // 7))).isoformat(),
            "k": i,
            "v": f"vessel-{rng.randrange(1_000_000)}",
            "x": round(rng.uniform(-180, 180), 6),
        }
        for i in range(n)
    ]


def unkeyed_rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Rows without a key: many equal timestamps, and exact duplicates (ids come from the hash)."""
    rows: list[dict[str, Any]] = []
    i = 0
    while len(rows) < n:
        row = {
            "ts": (BASE + timedelta(seconds=i // 5)).isoformat(),
            "mmsi": 200_000_000 + rng.randrange(500),
            "v": rng.choice(["moored", "under way", "anchored", "fishing"]),
        }
        copies = 3 if i % 40 == 0 else 1  # identical rows: one record per copy, never merged
        rows.extend(dict(row) for _ in range(copies))
        i += 1
    return rows[:n]


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def source_records(
    bq: bigquery.Client, dataset: str, table: str, columns: list[str]
) -> list[dict[str, Any]]:
    """BigQuery's content of the table, as Harper should hold it (TIMESTAMP as ISO ...Z)."""
    listed = ", ".join(f"`{c}`" for c in columns)
    result = bq.query(f"SELECT {listed} FROM `{bq.project}.{dataset}.{table}`").result(  # noqa: S608
        page_size=50_000
    )
    return [
        {k: iso_z(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in result
    ]


def expected_by_id(
    records: list[dict[str, Any]], primary_key: list[str]
) -> dict[str, dict[str, Any]]:
    """Each source row under the id the design gives it: the key's text, or the 128-bit row hash
    with `~k` for the k-th identical copy."""
    out: dict[str, dict[str, Any]] = {}
    copies: Counter[str] = Counter()
    for record in records:
        if primary_key:
            rid = "|".join(str(record[c]) for c in primary_key)
        else:
            digest = row_hash(record)
            rid = digest if copies[digest] == 0 else f"{digest}~{copies[digest]}"
            copies[digest] += 1
        assert rid not in out, f"the source itself repeats key {rid}"
        out[rid] = {"id": rid, **record}
    return out


def assert_same_content(
    expected: Mapping[str, dict[str, Any]], got: Mapping[str, dict[str, Any]], what: str
) -> None:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = [rid for rid in expected if rid in got and got[rid] != expected[rid]]
    assert not (missing or extra or differ), (
        f"{what}: {len(expected)} source rows, {len(got)} Harper records; "
        f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}), "
        f"{len(differ)} different (e.g. "
        f"{[(expected[r], got[r]) for r in differ[:2]]})"
    )


def check_table(
    bq: bigquery.Client,
    harper_client: HarperClient,
    database: str,
    dataset: str,
    source: str,
    target: str,
    columns: list[str],
    primary_key: list[str],
) -> int:
    expected = expected_by_id(source_records(bq, dataset, source, columns), primary_key)
    got = harper_rows(harper_client, database, target)
    assert_same_content(expected, got, f"{dataset}.{source} -> {database}.{target}")
    return len(got)


def table_spec(
    table_id: str, dataset: str, source: str, target: str, columns: list[str], key: list[str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": table_id,
        "dataset": dataset,
        "table": source,
        "timestampColumn": "ts",
        "columns": columns,
        "targetTable": target,
        "sync": dict(SMALL_BATCHES),
    }
    if key:
        spec["primaryKey"] = key
    return spec


def record_count(client: HarperClient, database: str, table: str) -> int:
    """Harper's estimate of the record count (0 before the table exists): to pick moments only."""
    try:
        return client.describe_table(database, table).record_count_estimate or 0
    except HarperError:
        return 0


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.1)


# -- c. the sync process killed with SIGKILL at 10 moments ---------------------------------------


def sync_command(config: Path, *extra: str) -> list[str]:
    """`harperbq sync run`, its control API on a free port (tests run side by side)."""
    run = ["sync", "run", "--config", str(config), "--control-port", "0", *extra]
    return [sys.executable, "-m", "harperbq", *run]


def start_sync(config: Path, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            sync_command(config, "--log-format", "json"),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def kill_ten_times(
    config: Path,
    env: Mapping[str, str],
    log: Path,
    progress: Callable[[], int],
    total: int,
    rng: random.Random,
) -> None:
    """Start `sync run` and kill -9 it at 10 moments of a catch-up of `total` rows (amounts of
    progress spread over it, never its very end), restarting it each time."""
    targets = sorted(rng.sample(range(total // 25, total * 7 // 10), 10))
    # Never wait for more than 90 %: a fast run may already be past a target when it restarts,
    # and the count is Harper's estimate, which need not reach the exact total.
    ceiling = total * 9 // 10
    killed_at: list[int] = []
    for target in targets:
        goal = min(max(target, progress() + 1), ceiling)  # at least one new row when possible
        proc = start_sync(config, env, log)
        try:

            def reached(goal: int = goal, proc: subprocess.Popen[bytes] = proc) -> bool:
                return progress() >= goal or proc.poll() is not None

            wait_for(reached, 90, f"the sync to reach {goal} rows")
            time.sleep(rng.uniform(0, 0.3))  # anywhere in a window: reading, upserting, saving
            assert proc.poll() is None, f"the sync exited by itself:\n{log.read_text()[-2000:]}"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at.append(progress())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert len(killed_at) == 10, (targets, killed_at)
    assert sum(k < total for k in killed_at) >= 8, (targets, killed_at)  # mid catch-up


def test_sync_process_killed_ten_times(
    bq: bigquery.Client,
    harper_client: HarperClient,
    harper_node: HarperNode,
    write_config: WriteConfig,
    unique: str,
    tmp_path: Path,
) -> None:
    """kill -9 of the sync process at 10 random moments of a 50 000-row catch-up, restarted each
    time, then `--once` to the end: every row once, for a keyed table and one without a key."""
    rng = random.Random(3_050_000)
    dataset = f"src_{unique}"
    keyed = keyed_rows(40_000, rng)
    unkeyed = unkeyed_rows(10_000, rng)
    make_source(
        bq,
        dataset,
        "keyed",
        KEYED_SCHEMA,
        keyed,
    )
    make_source(
        bq,
        dataset,
        "unkeyed",
        [
            bigquery.SchemaField("ts", "TIMESTAMP"),
            bigquery.SchemaField("mmsi", "INT64"),
            bigquery.SchemaField("v", "STRING"),
        ],
        unkeyed,
    )
    keyed_cols, unkeyed_cols = ["ts", "k", "v", "x"], ["ts", "mmsi", "v"]
    tables = [
        table_spec("keyed", dataset, "keyed", "Keyed", keyed_cols, ["k"]),
        table_spec("unkeyed", dataset, "unkeyed", "Unkeyed", unkeyed_cols, []),
    ]
    for spec in tables:
        # ~330 windows: the catch-up outlasts ten restarts even on an idle machine.
        spec["sync"] = {"initialBatchSize": 150, "catchupBatchSize": 150, "steadyBatchSize": 150}
    config, cfg = write_config(tables, sync={"settle": "0s"})
    # The password reaches the process only through the environment (`${TEST_HARPER_PASSWORD}`).
    assert harper_node.password not in config.read_text()
    env = {**os.environ, "TEST_HARPER_PASSWORD": harper_node.password}
    db = cfg.harper.database
    total = len(keyed) + len(unkeyed)

    def progress() -> int:
        return record_count(harper_client, db, "Keyed") + record_count(harper_client, db, "Unkeyed")

    kill_ten_times(config, env, tmp_path / "sync.log", progress, total, rng)

    done = subprocess.run(
        sync_command(config, "--once"),
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    n = check_table(bq, harper_client, db, dataset, "keyed", "Keyed", keyed_cols, ["k"])
    m = check_table(bq, harper_client, db, dataset, "unkeyed", "Unkeyed", unkeyed_cols, [])
    assert (n, m) == (len(keyed), len(unkeyed))
    # What `sync status` reports agrees: every row counted once across the ten crashes.
    state = StateStore(harper_client, cfg.harper.state_database)
    for table_id, rows in (("keyed", keyed), ("unkeyed", unkeyed)):
        checkpoints = state.get_checkpoints(table_id)
        assert len(checkpoints) == cfg.table(table_id).partitions
        assert sum(cp.rows_total for cp in checkpoints.values()) == len(rows), table_id


# -- d. Harper killed and restarted during a sync -----------------------------------------------


def start_again(node: HarperNode, install: Path) -> None:
    """Start a SIGKILLed node on the same data and ports (devstack waits for the ports)."""
    assert not processes.alive(node.pid())
    harper.start(node, install, timeout_s=90)


@pytest.fixture
def own_harper(tmp_path: Path, harper_install: Path) -> Iterator[HarperNode]:
    """A Harper node of this test alone: killing it leaves the session node untouched."""
    node = harper.new_node(tmp_path / "own-harper", name="fault-node")
    harper.start(node, harper_install)
    try:
        yield node
    finally:
        harper.stop(node)


def test_harper_killed_and_restarted_mid_sync(
    bq: bigquery.Client,
    own_harper: HarperNode,
    harper_install: Path,
    write_config: WriteConfig,
    unique: str,
) -> None:
    """SIGKILL of Harper mid-catch-up, restart on the same data and ports: the running sync
    notices, its runner retries with backoff, and it finishes by itself with exact content."""
    rng = random.Random(4_040_000)
    dataset = f"src_{unique}"
    rows = keyed_rows(30_000, rng)
    columns = ["ts", "k", "v", "x"]
    make_source(
        bq,
        dataset,
        "positions",
        KEYED_SCHEMA,
        rows,
    )
    spec = table_spec("positions", dataset, "positions", "Positions", columns, ["k"])
    spec["sync"] = {"initialBatchSize": 1000, "catchupBatchSize": 1000, "steadyBatchSize": 1000}
    _, cfg = write_config(
        [spec],
        sync={"settle": "0s"},
        harper={
            "url": own_harper.url,
            "username": own_harper.username,
            "password": own_harper.password,
        },
    )
    db = cfg.harper.database
    events: list[RequestEvent] = []
    user, password = own_harper.username, own_harper.password
    with (
        HarperClient(own_harper.url, user, password, on_event=events.append) as client,
        HarperClient(own_harper.url, user, password, max_retries=0) as probe,
    ):
        # Not --once: a running service must ride out the outage however long it lasts.
        service = SyncService(cfg, client, make_client(cfg.bigquery))
        service.start()
        try:
            [runner] = service.runners()
            kill_at = int(len(rows) * rng.uniform(0.2, 0.5))
            wait_for(lambda: record_count(probe, db, "Positions") >= kill_at, 90, "progress")
            before = record_count(probe, db, "Positions")
            harper.kill(own_harper)
            # Harper stays down until the engine gave up on its window and the runner backs off.
            wait_for(lambda: runner.attempts >= 1, 90, "the runner to notice the outage")
            start_again(own_harper, harper_install)
            wait_for(
                lambda: runner.engine.status.caught_up and runner.state == RunState.IDLE,
                120,
                "the sync to catch up after the restart",
            )
        finally:
            service.stop()
        assert before < len(rows), "Harper was killed after the catch-up, not during it"
        assert any(e.status is None and e.error for e in events), "the sync never saw Harper down"
        n = check_table(bq, probe, db, dataset, "positions", "Positions", columns, ["k"])
        assert n == len(rows)


# -- e. BigQuery 429/503 bursts at the HTTP transport -------------------------------------------


class FaultyBigQuery(HTTPAdapter):
    """A transport that answers some requests itself, as BigQuery does when it is overloaded:
    bursts of 1-3 consecutive 429 rateLimitExceeded / 503 backendError answers at random, and
    `storms` storms (every request fails for `storm_s`), each `storm_every` requests after the
    previous one ended. A faulted request is never forwarded, so it cannot have had any effect."""

    def __init__(
        self,
        rng: random.Random,
        *,
        burst_p: float,
        storms: int,
        storm_every: int,
        storm_s: float,
    ) -> None:
        super().__init__()
        self.rng = rng
        self.burst_p = burst_p
        self.storms_left = storms
        self.storm_every = storm_every
        self.storm_s = storm_s
        self.requests = 0
        self.faults: Counter[int] = Counter()
        self.storms = 0
        self.storm_faults = 0
        self.retried = 0  # faulted requests sent again, byte for byte, and answered
        self._burst: tuple[int, int] = (0, 0)  # (status, requests left)
        self._storm_until: float | None = None
        self._next_storm = storm_every
        self._faulted: set[tuple[str, str, bytes]] = set()
        self._lock = threading.Lock()

    def _decide(self, url: str) -> tuple[int | None, bool]:
        self.requests += 1
        now = time.monotonic()
        if self._storm_until is not None and now >= self._storm_until:
            self._storm_until, self._next_storm = None, self.requests + self.storm_every
        if (
            self._storm_until is None
            and self.storms_left
            and self.requests >= self._next_storm
            and "/queries/" in url
        ):
            self._storm_until = now + self.storm_s
            self.storms_left -= 1
            self.storms += 1
        if self._storm_until is not None:
            return (503 if self.requests % 2 else 429), True
        status, left = self._burst
        if left == 0 and self.requests > 3 and self.rng.random() < self.burst_p:
            status, left = self.rng.choice((429, 503)), self.rng.randint(1, 3)
        if left > 0:
            self._burst = (status, left - 1)
            return status, False
        return None, False

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        body = request.body
        payload = body.encode() if isinstance(body, str) else body
        signature = (
            str(request.method),
            str(request.url),
            payload if isinstance(payload, bytes) else repr(payload).encode(),
        )
        with self._lock:
            status, storm = self._decide(signature[1])
            if status is not None:
                self.faults[status] += 1
                self.storm_faults += storm
                self._faulted.add(signature)
        if status is not None:
            return self._answer(request, status)
        response = super().send(request, stream, timeout, verify, cert, proxies)
        with self._lock:
            if signature in self._faulted and response.ok:
                self._faulted.discard(signature)
                self.retried += 1
        return response

    def _answer(self, request: requests.PreparedRequest, status: int) -> requests.Response:
        reason, message = (
            ("rateLimitExceeded", "Exceeded rate limits: too many api requests per user per method")
            if status == 429
            else ("backendError", "Error encountered during execution. Retrying may solve it.")
        )
        payload = {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
                "status": "RESOURCE_EXHAUSTED" if status == 429 else "UNAVAILABLE",
            }
        }
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(json.dumps(payload).encode()),
            headers={"Content-Type": "application/json; charset=UTF-8"},
            status=status,
            reason="Too Many Requests" if status == 429 else "Service Unavailable",
            preload_content=False,
        )
        return self.build_response(request, raw)


def test_bigquery_error_bursts(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: WriteConfig,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """429/503 bursts and storms from BigQuery's HTTP API during a `--once` catch-up: retried
    where they happen, whole windows retried by the runner when a call runs out of budget, and
    the run finishes with nothing lost or doubled."""
    caplog.set_level(logging.WARNING, logger="harperbq")
    rng = random.Random(5_050_000)
    dataset = f"src_{unique}"
    rows = keyed_rows(10_000, rng)
    columns = ["ts", "k", "v", "x"]
    make_source(
        bq,
        dataset,
        "positions",
        KEYED_SCHEMA,
        rows,
    )
    max_attempts = 3
    _, cfg = write_config(
        [table_spec("positions", dataset, "positions", "Positions", columns, ["k"])],
        sync={"settle": "0s"},
        # Every read goes through the HTTP API. A BigQuery call may retry for 1 s, so each 2 s
        # storm fails a window; the table gives up after 3 failures in a row without progress.
        bigquery={"readApi": "query", "maxRetries": 5},
        retry={"maxAttempts": max_attempts, "totalTimeout": "1s"},
    )
    storms = max_attempts + 2
    faulty = FaultyBigQuery(rng, burst_p=0.15, storms=storms, storm_every=12, storm_s=2.0)
    session = requests.Session()
    session.mount("http://", faulty)
    session.mount("https://", faulty)
    service = SyncService(cfg, harper_client, make_client(cfg.bigquery, http=session), once=True)
    try:
        ok, _ = run_to_end(service, 150)
    finally:
        session.close()
    [runner] = service.runners()
    failures = StateStore(harper_client, cfg.harper.state_database).recent_audit(
        "positions", kind="error"
    )
    retries = [r for r in caplog.records if r.getMessage() == "bigquery.retry"]
    seen = (
        f"{faulty.requests} requests, faults {dict(faulty.faults)}, {faulty.storms} storms "
        f"({faulty.storm_faults} faults), {faulty.retried} faulted requests re-sent and answered, "
        f"{len(retries)} retries logged, {len(failures)} windows failed"
    )
    assert ok, f"sync did not finish: {runner.state} {runner.engine.status.last_error}; {seen}"
    n = check_table(
        bq, harper_client, cfg.harper.database, dataset, "positions", "Positions", columns, ["k"]
    )
    assert n == len(rows)
    # The faults really happened, and were retried where they happened...
    assert faulty.faults[429] >= 5 and faulty.faults[503] >= 5, seen
    assert faulty.storms == storms, seen
    assert faulty.retried >= 5 and len(retries) >= 10, seen
    # ...and the storms outlasted a call's budget: windows failed, more of them than a table may
    # fail in a row, and the runner retried each from its checkpoint until the end.
    assert len(failures) >= storms - 1 > max_attempts, seen
