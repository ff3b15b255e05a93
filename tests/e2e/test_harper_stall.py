"""Item 10 of issue 11: a hung Harper (SIGSTOP) is an error in status and metrics within
`harper.stallTimeout`, never `running` with 0 attempts and no error; after SIGCONT the sync
recovers by itself and ends equal to BigQuery."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import bigquery
from tests.e2e.live import running, wait_for
from tests.e2e.test_sync_faults import check_table
from tests.support import keyed_table

from harperbq.config import Config
from harperbq.devstack import harper
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient
from harperbq.phases import RunState
from harperbq.sync.live_status import service_status
from harperbq.sync.state import StateStore

WriteConfig = Callable[..., tuple[Path, Config]]
STALL_S = 3.0


@pytest.fixture
def stoppable(tmp_path: Path, harper_install: Path) -> Iterator[HarperNode]:
    """A Harper node of this test alone; never left stopped (SIGCONT before it is stopped)."""
    node = harper.new_node(tmp_path / "stall-harper", name="stall-node")
    harper.start(node, harper_install)
    try:
        yield node
    finally:
        pid = node.pid()
        if pid:
            os.kill(pid, signal.SIGCONT)
        harper.stop(node)


def metric(text: str, name: str, *labels: str) -> float | None:
    """The value of the first sample of `name` whose labels include every `labels` pair."""
    for line in text.splitlines():
        found = re.match(re.escape(name) + r"(\{(?P<labels>[^}]*)\})? (?P<value>\S+)$", line)
        if found and all(label in (found.group("labels") or "") for label in labels):
            return float(found.group("value"))
    return None


@pytest.mark.change_feed("none")  # needs many small windows mid catch-up
def test_stopped_harper_is_a_stall_error_then_recovers(
    bq: bigquery.Client, stoppable: HarperNode, write_config: WriteConfig, unique: str
) -> None:
    dataset = f"stall_{unique}"
    rows = 12_000
    spec = keyed_table(bq, dataset, rows)
    spec["sync"] = {"initialBatchSize": 500, "catchupBatchSize": 500, "steadyBatchSize": 500}
    _, cfg = write_config(
        [spec],
        sync={"settle": "0s"},
        harper={
            "url": stoppable.url,
            "username": stoppable.username,
            "password": stoppable.password,
            "stallTimeout": f"{STALL_S}s",
        },
    )
    db = cfg.harper.database
    user, password = stoppable.username, stoppable.password
    pid = stoppable.pid()
    assert pid
    with (
        HarperClient(stoppable.url, user, password, timeout_s=60) as client,
        HarperClient(stoppable.url, user, password, max_retries=0) as probe,
        running(cfg, client) as service,
    ):
        [handle] = service.handles

        def synced() -> int:
            return handle.engine.status.rows_synced

        wait_for("some progress", lambda: synced() >= 1_500, timeout_s=90)
        os.kill(pid, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            before = synced()

            def worker() -> dict[str, object]:
                status: dict[str, object] = service_status(service)["tables"][0]["workers"][0]
                return status

            took = wait_for("the stall to show", lambda: worker()["state"] == "stalled", 30)
            # Noticed within the stall timeout (plus the watchdog's tick and the gap until the
            # sync's next Harper request after the SIGSTOP).
            assert took <= STALL_S + 3.0, took
            shown = worker()
            assert shown["running"] is True  # not stopped: it waits on Harper
            assert str(shown["last_error"]).startswith("Harper stalled: "), shown
            assert service_status(service)["harper"]["stalled"] is True
            text = service.metrics.exposition().decode()
            assert metric(text, "harperbq_harper_stalled") == 1.0
            age = metric(text, "harperbq_harper_oldest_request_age_seconds")
            assert age is not None and age >= STALL_S, text
            assert metric(text, "harperbq_runner_state", 'table="t"', 'state="stalled"') == 1.0
            errors = metric(text, "harperbq_errors_total", 'kind="HarperStalled"')
            assert errors == 1.0, text
            assert synced() == before  # no progress was claimed while Harper was stopped
            # Stays a stall while Harper is stopped (one probe failure is not flapping).
            time.sleep(STALL_S)  # the outage itself: Harper stays stopped this long
            assert worker()["state"] == "stalled"
        finally:
            os.kill(pid, signal.SIGCONT)
        stalled_for = time.monotonic() - stopped_at
        wait_for("the stall to clear", lambda: service.watchdog.stall is None, 30)
        wait_for(
            "the sync to catch up after SIGCONT",
            lambda: handle.engine.status.caught_up and handle.runner.state == RunState.IDLE,
            120,
        )
        assert service.watchdog.stalls == 1
        assert worker()["state"] == "idle" and worker()["last_error"] is None
        # The stall is in the audit trail, written once Harper answered again.
        entries = StateStore(probe, cfg.harper.state_database).recent_audit("t", kind="error")
        stall = [e for e in entries if e.details.get("job") == "harper_stall"]
        assert len(stall) == 1, entries
        assert stall[0].details["stalled_s"] >= STALL_S
        assert stall[0].details["stalled_s"] <= stalled_for + 1
        assert check_table(bq, probe, db, dataset, "t", "T", ["ts", "k"], ["k"]) == rows
