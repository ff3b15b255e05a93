"""A row that cannot be converted is skipped with its reason in SyncAudit and counted; it never
crashes the sync or holds back its window, and the other rows of the window arrive.

The bad value is injected at the HTTP transport (BigQuery's JSON answer is altered on its way
in), because neither BigQuery nor the emulator stores an unparsable JSON value.
"""

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from requests.adapters import HTTPAdapter
from tests.support import harper_rows, make_source

from harperbq.bigquery.client import make_client
from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.service import SyncService
from harperbq.sync.state import StateStore

MARKER = "BREAK-ME"


class CorruptingTransport(HTTPAdapter):
    """Turns every result cell holding MARKER into text that is not JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.corrupted = 0

    def _corrupt(self, value: Any) -> Any:
        if isinstance(value, str) and MARKER in value:
            self.corrupted += 1
            return "{not json " + MARKER
        if isinstance(value, list):
            return [self._corrupt(v) for v in value]
        if isinstance(value, dict):
            return {k: self._corrupt(v) for k, v in value.items()}
        return value

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        if request.method == "GET" and "/queries/" in (request.url or "") and response.ok:
            body = response.json()
            if "rows" in body:
                body["rows"] = self._corrupt(body["rows"])
                response._content = json.dumps(body).encode()
        return response


@pytest.mark.change_feed("none")  # faults in query result pages
def test_unconvertible_row_is_skipped_and_audited(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
) -> None:
    start = datetime(2024, 4, 1, tzinfo=UTC)
    rows = [
        {
            "ts": (start + timedelta(seconds=i)).isoformat(),
            "k": i,
            "doc": {"n": i, "tag": MARKER if i in (17, 1_234) else "ok"},
        }
        for i in range(2_000)
    ]
    dataset = f"bad_{unique}"
    make_source(
        bq, dataset, "docs", [F("ts", "TIMESTAMP"), F("k", "INT64"), F("doc", "JSON")], rows
    )
    _, cfg = write_config(
        [
            {
                "id": "docs",
                "dataset": dataset,
                "table": "docs",
                "timestampColumn": "ts",
                "columns": ["ts", "k", "doc"],
                "targetTable": "Docs",
                "primaryKey": ["k"],
                "sync": {"initialBatchSize": 500},
            }
        ],
        sync={"settle": "0s"},
        bigquery={"readApi": "query"},
    )
    session = requests.Session()
    transport = CorruptingTransport()
    session.mount("http://", transport)
    service = SyncService(cfg, harper_client, make_client(cfg.bigquery, http=session), once=True)
    service.start()
    stop = threading.Event()
    threading.Timer(120, stop.set).start()
    ok = service.wait(stop)
    service.stop()
    stop.set()
    assert ok, [r.engine.status.last_error for r in service.runners()]
    assert transport.corrupted >= 2

    got = harper_rows(harper_client, cfg.harper.database, "Docs")
    assert set(got) == {str(i) for i in range(2_000)} - {"17", "1234"}
    assert got["18"]["doc"] == {"n": 18, "tag": "ok"}
    status = service.runners()[0].engine.status
    assert status.rows_skipped == 2 and status.rows_synced == 1_998 and status.caught_up
    audit = StateStore(harper_client, cfg.harper.state_database).recent_audit(
        "docs", kind="skipped_row"
    )
    assert len(audit) == 2
    for entry in audit:
        assert entry.details["column"] == "doc"
        assert "JSONDecodeError" in entry.details["reason"] and MARKER in entry.details["sample"]
