"""Retry classification and backoff (the transport-level behaviour is tested against the
emulator in tests/integration/test_bigquery_retry.py)."""

import logging
import random

import pytest
import requests
from google.api_core import exceptions
from hypothesis import given
from hypothesis import strategies as st

from harperbq.bigquery.retry import call_with_retry, classify, is_transient
from harperbq.config import BigQueryConfig, RetryConfig
from harperbq.retry import RetryPolicy


def http_error(
    code: int, reason: str | None, message: str = "boom"
) -> exceptions.GoogleAPICallError:
    errors = [{"reason": reason, "message": message}] if reason else []
    error: exceptions.GoogleAPICallError = exceptions.from_http_status(code, message, errors=errors)
    return error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (http_error(403, "rateLimitExceeded"), True),
        (http_error(400, "backendError"), True),
        (http_error(500, "internalError"), True),
        (http_error(502, "badGateway"), True),
        (http_error(400, "jobRateLimitExceeded"), True),
        (http_error(429, None), True),
        (http_error(500, None), True),
        (http_error(502, None), True),
        (http_error(503, None), True),
        (http_error(504, None), True),
        (http_error(403, "quotaExceeded", "Exceeded quota: too many requests per second"), True),
        (
            http_error(
                403,
                "quotaExceeded",
                "Quota exceeded: your project exceeded quota for free query bytes scanned",
            ),
            False,
        ),
        (http_error(400, "invalidQuery"), False),
        (http_error(403, "accessDenied"), False),
        (http_error(404, "notFound"), False),
        (http_error(409, "duplicate"), False),
        (http_error(400, None), False),
        (requests.exceptions.ConnectionError("reset"), True),
        (requests.exceptions.ReadTimeout("slow"), True),
        (requests.exceptions.SSLError("bad cert"), False),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError(), True),
        (exceptions.ServiceUnavailable("grpc unavailable"), True),
        (exceptions.DeadlineExceeded("grpc deadline"), True),
        (exceptions.RetryError("gave up", http_error(503, "backendError")), True),
        (ValueError("a bug"), False),
    ],
)
def test_classification(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient, classify(error)


def test_reason_wins_over_status() -> None:
    # BigQuery reports rate limits as 403; a 500 carrying a permanent reason is permanent.
    assert classify(http_error(403, "rateLimitExceeded")) == (True, "rateLimitExceeded")
    assert classify(http_error(500, "invalidQuery"))[0] is False


@given(
    st.floats(0.001, 5),
    st.floats(1, 4),
    st.floats(0.01, 30),
    st.integers(0, 2**32),
)
def test_full_jitter_stays_within_the_exponential_cap(
    initial: float, multiplier: float, max_delay: float, seed: int
) -> None:
    policy = RetryPolicy(10, initial, multiplier, max(max_delay, initial), 600)
    delays = policy.delays(random.Random(seed))
    for k in range(12):
        cap = min(initial * multiplier**k, policy.max_delay_s)
        assert 0 <= next(delays) <= cap


def test_full_jitter_uses_the_whole_range() -> None:
    policy = RetryPolicy(10, 1.0, 2.0, 1.0, 600)
    delays = policy.delays(random.Random(1))
    draws = [next(delays) for _ in range(2000)]
    assert min(draws) < 0.05 and max(draws) > 0.95  # not "equal jitter" (which keeps cap/2)
    assert 0.45 < sum(draws) / len(draws) < 0.55


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(errors: list[BaseException], result: str = "ok"):
    calls = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def test_transient_failures_are_retried_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    fn, calls = failing([http_error(503, None), http_error(403, "rateLimitExceeded")])
    with caplog.at_level(logging.WARNING, logger="harperbq.bigquery.retry"):
        result = call_with_retry(
            fn,
            RetryPolicy(5, 1.0, 2.0, 60, 600),
            sleep=clock.sleep,
            clock=clock,
            rng=random.Random(0),
            operation="test",
        )
    assert result == "ok" and len(calls) == 3 and len(clock.sleeps) == 2
    assert clock.sleeps[0] <= 1.0 and clock.sleeps[1] <= 2.0
    retries = [r for r in caplog.records if r.getMessage() == "bigquery.retry"]
    assert [getattr(r, "reason", None) for r in retries] == ["HTTP 503", "rateLimitExceeded"]
    assert all(getattr(r, "operation", None) == "test" for r in retries)


def test_permanent_failures_raise_at_once() -> None:
    clock = Clock()
    error = http_error(400, "invalidQuery", "Syntax error: Unexpected keyword FROM at [1:8]")
    fn, calls = failing([error])
    with pytest.raises(exceptions.BadRequest) as caught:
        call_with_retry(fn, RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert caught.value is error and len(calls) == 1 and clock.sleeps == []


def test_attempts_are_bounded() -> None:
    clock = Clock()
    errors: list[BaseException] = [http_error(503, None) for _ in range(10)]
    fn, calls = failing(errors)
    with pytest.raises(exceptions.ServiceUnavailable):
        call_with_retry(fn, RetryPolicy(3, 0.1, 2, 1, 600), sleep=clock.sleep, clock=clock)
    assert len(calls) == 3 and len(clock.sleeps) == 2


def test_total_time_is_bounded() -> None:
    clock = Clock()
    errors: list[BaseException] = [http_error(503, None) for _ in range(100)]
    fn, calls = failing(errors)
    with pytest.raises(exceptions.ServiceUnavailable):
        call_with_retry(
            fn,
            RetryPolicy(100, 10, 2, 10, 25),
            sleep=clock.sleep,
            clock=clock,
            rng=random.Random(3),
        )
    assert clock.now <= 25.0 and len(calls) < 100


def test_policy_from_config() -> None:
    retry = RetryConfig.model_validate(
        {"maxAttempts": 5, "initialDelay": 1000, "backoffMultiplier": 3.0}
    )
    assert RetryPolicy.from_config(retry) == RetryPolicy(5, 1.0, 3.0, 60.0, 600.0)
    bq = BigQueryConfig.model_validate({"maxRetries": 2, "initialRetryDelay": 250})
    policy = RetryPolicy.from_config(retry, bq)
    assert policy.max_attempts == 3 and policy.initial_delay_s == 0.25  # 2 retries = 3 attempts
    assert RetryPolicy.from_config(retry, BigQueryConfig.model_validate({})).max_attempts == 5
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
