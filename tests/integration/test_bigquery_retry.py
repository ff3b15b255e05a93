"""Retries against the emulator with faults injected at the HTTP transport (a requests adapter
given to the real client as `_http`): transient faults are retried and logged; permanent ones
fail at once with BigQuery's own message. Nothing of ours is faked."""

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
import requests
from google.api_core import exceptions
from google.cloud import bigquery
from requests.adapters import HTTPAdapter

from harperbq.bigquery.client import make_client
from harperbq.bigquery.read import run_query
from harperbq.bigquery.retry import PolicyRetry
from harperbq.bigquery.sql import Query, TableRef
from harperbq.config import BigQueryConfig, RetryConfig
from harperbq.devstack.emulator import Emulator
from harperbq.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=4, initial_delay_s=0.01, multiplier=2, max_delay_s=0.05)
ROWS = 120


@dataclass
class Fault:
    method: str
    path: str  # a fragment of the URL
    times: int
    status: int = 503
    reason: str | None = "backendError"
    message: str = "injected fault"
    reset: bool = False  # raise a connection reset instead of answering
    failed_job: bool = False  # accept a jobs.insert, but report the job as failed


class FaultAdapter(HTTPAdapter):
    """Answers matching requests with a BigQuery-shaped error (or a reset) `times` times."""

    def __init__(self, faults: list[Fault]) -> None:
        super().__init__()
        self.faults = faults
        self.requests: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.requests.append(f"{request.method} {request.url}")
        for fault in self.faults:
            if (
                fault.times > 0
                and request.method == fault.method
                and fault.path in str(request.url)
            ):
                fault.times -= 1
                if fault.reset:
                    raise requests.exceptions.ConnectionError("Connection reset by peer")
                if fault.failed_job:
                    return self._failed_job(request, fault)
                return self._error(request, fault)
        return super().send(request, *args, **kwargs)

    @staticmethod
    def _error(request: requests.PreparedRequest, fault: Fault) -> requests.Response:
        errors = [{"reason": fault.reason, "message": fault.message}] if fault.reason else []
        body = {"error": {"code": fault.status, "message": fault.message, "errors": errors}}
        response = requests.Response()
        response.status_code = fault.status
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = str(request.url)
        response.request = request
        return response

    @staticmethod
    def _failed_job(request: requests.PreparedRequest, fault: Fault) -> requests.Response:
        job = json.loads(cast(bytes, request.body or b"{}"))
        error = {"reason": fault.reason, "message": fault.message}
        job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(job).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = str(request.url)
        response.request = request
        return response

    def count(self, method: str, fragment: str) -> int:
        return sum(r.startswith(method + " ") and fragment in r for r in self.requests)


def faulty_client(emu: Emulator, faults: list[Fault]) -> tuple[bigquery.Client, FaultAdapter]:
    adapter = FaultAdapter(faults)
    session = requests.Session()
    session.mount("http://", adapter)
    cfg = BigQueryConfig.model_validate({"projectId": emu.project, "endpoint": emu.endpoint})
    return make_client(cfg, http=session), adapter


@pytest.fixture(scope="module")
def table(bq: bigquery.Client) -> Iterator[TableRef]:
    retry = PolicyRetry(FAST)
    dataset = f"retry_{uuid.uuid4().hex[:8]}"
    bq.create_dataset(dataset, retry=retry)
    ref = TableRef(bq.project, dataset, "numbers")
    sql = f"CREATE TABLE {ref.sql} AS SELECT n FROM UNNEST(GENERATE_ARRAY(1, {ROWS})) AS n"  # noqa: S608
    run_query(bq, Query(sql), policy=FAST)
    yield ref
    bq.delete_dataset(dataset, delete_contents=True, not_found_ok=True, retry=retry)


def select(ref: TableRef) -> Query:
    return Query(
        f"SELECT n FROM {ref.sql} WHERE n >= @lo",  # noqa: S608
        (bigquery.ScalarQueryParameter("lo", "INT64", 1),),
    )


def retries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "bigquery.retry"]


def all_numbers(client: bigquery.Client, ref: TableRef, page_size: int = 1000) -> list[int]:
    result = run_query(client, select(ref), policy=FAST, page_size=page_size)
    return sorted(n for batch in result.batches() for n in batch.column("n").to_pylist())


def test_transient_job_insert_failures_are_retried_and_logged(
    bq_emulator: Emulator, table: TableRef, caplog: pytest.LogCaptureFixture
) -> None:
    client, adapter = faulty_client(
        bq_emulator,
        [Fault("POST", "/jobs", 1, 503, "backendError"), Fault("POST", "/jobs", 1, 429, None)],
    )
    with caplog.at_level(logging.WARNING, logger="harperbq.bigquery.retry"):
        assert all_numbers(client, table) == list(range(1, ROWS + 1))
    assert adapter.count("POST", "/jobs") == 3
    assert [getattr(r, "reason", None) for r in retries(caplog)] == ["backendError", "HTTP 429"]


def test_a_job_that_fails_transiently_is_run_again(
    bq_emulator: Emulator, table: TableRef, caplog: pytest.LogCaptureFixture
) -> None:
    client, adapter = faulty_client(
        bq_emulator, [Fault("POST", "/jobs", 1, reason="backendError", failed_job=True)]
    )
    with caplog.at_level(logging.WARNING, logger="harperbq.bigquery.retry"):
        assert all_numbers(client, table) == list(range(1, ROWS + 1))
    assert adapter.count("POST", "/jobs") == 2  # a new job, after the failed one
    assert [getattr(r, "reason", None) for r in retries(caplog)] == ["backendError"]


def test_a_job_that_fails_permanently_is_not_run_again(
    bq_emulator: Emulator, table: TableRef
) -> None:
    message = "Resources exceeded during query execution: per-day limit"
    client, adapter = faulty_client(
        bq_emulator,
        [Fault("POST", "/jobs", 5, reason="resourcesExceeded", message=message, failed_job=True)],
    )
    with pytest.raises(exceptions.GoogleAPICallError, match="Resources exceeded"):
        run_query(client, select(table), policy=FAST)
    assert adapter.count("POST", "/jobs") == 1


def test_a_failing_result_page_is_refetched_without_duplicates(
    bq_emulator: Emulator, table: TableRef, caplog: pytest.LogCaptureFixture
) -> None:
    client, adapter = faulty_client(
        bq_emulator,
        [
            Fault("GET", "pageToken", 2, 503, None),
            Fault("GET", "pageToken", 1, 500, "internalError"),
        ],
    )
    with caplog.at_level(logging.WARNING, logger="harperbq.bigquery.retry"):
        numbers = all_numbers(client, table, page_size=25)
    assert numbers == list(range(1, ROWS + 1))  # every row exactly once
    assert len(retries(caplog)) == 3
    assert adapter.count("GET", "pageToken") >= 3 + ROWS // 25 - 1


def test_connection_resets_are_retried(bq_emulator: Emulator, table: TableRef) -> None:
    client, adapter = faulty_client(bq_emulator, [Fault("POST", "/jobs", 2, reset=True)])
    assert all_numbers(client, table) == list(range(1, ROWS + 1))
    assert adapter.count("POST", "/jobs") == 3


def test_an_invalid_query_fails_at_once_with_bigquerys_message(
    bq_emulator: Emulator, table: TableRef, caplog: pytest.LogCaptureFixture
) -> None:
    client, adapter = faulty_client(bq_emulator, [])
    bad = Query(f"SELECT no_such_column FROM {table.sql}")  # noqa: S608
    with (
        caplog.at_level(logging.WARNING, logger="harperbq.bigquery.retry"),
        pytest.raises(exceptions.BadRequest) as caught,
    ):
        run_query(client, bad, policy=FAST)
    assert "no_such_column" in str(caught.value)  # the emulator's own message, unchanged
    assert adapter.count("POST", "/jobs") == 1 and retries(caplog) == []


def test_a_missing_table_fails_at_once(bq_emulator: Emulator, table: TableRef) -> None:
    client, adapter = faulty_client(bq_emulator, [])
    missing = TableRef(table.project, table.dataset, "absent")
    with pytest.raises(exceptions.NotFound) as caught:
        run_query(client, select(missing), policy=FAST)
    assert "absent" in str(caught.value) and adapter.count("POST", "/jobs") == 1


@pytest.mark.parametrize(
    ("status", "reason", "message", "error"),
    [
        (
            403,
            "accessDenied",
            "Access Denied: Table p:d.t: User does not have permission",
            exceptions.Forbidden,
        ),
        (
            403,
            "quotaExceeded",
            "Quota exceeded: Your project exceeded quota for free query bytes scanned",
            exceptions.Forbidden,
        ),
        (400, "invalidQuery", "Syntax error: Unexpected end of script", exceptions.BadRequest),
    ],
)
def test_permanent_errors_are_not_retried(
    bq_emulator: Emulator,
    table: TableRef,
    status: int,
    reason: str,
    message: str,
    error: type[Exception],
) -> None:
    client, adapter = faulty_client(
        bq_emulator, [Fault("POST", "/jobs", 5, status, reason, message)]
    )
    with pytest.raises(error) as caught:
        run_query(client, select(table), policy=FAST)
    assert message in str(caught.value)
    assert adapter.count("POST", "/jobs") == 1


def test_per_second_quota_is_retried(bq_emulator: Emulator, table: TableRef) -> None:
    message = "Exceeded quota: too many api requests per user per method per second"
    client, adapter = faulty_client(
        bq_emulator, [Fault("POST", "/jobs", 1, 403, "quotaExceeded", message)]
    )
    assert all_numbers(client, table) == list(range(1, ROWS + 1))
    assert adapter.count("POST", "/jobs") == 2


def test_attempts_from_config_bound_the_retries(
    bq_emulator: Emulator, table: TableRef, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = BigQueryConfig.model_validate({"maxRetries": 2, "initialRetryDelay": 10})
    policy = RetryPolicy.from_config(RetryConfig.model_validate({"maxDelay": 0.05}), cfg)
    client, adapter = faulty_client(bq_emulator, [Fault("POST", "/jobs", 99, 503, "backendError")])
    with (
        caplog.at_level(logging.WARNING, logger="harperbq.bigquery.retry"),
        pytest.raises(exceptions.ServiceUnavailable),
    ):
        run_query(client, select(table), policy=policy)
    assert adapter.count("POST", "/jobs") == 3  # maxRetries 2 = 3 attempts
    assert any(r.getMessage() == "bigquery.retry_exhausted" for r in caplog.records)
