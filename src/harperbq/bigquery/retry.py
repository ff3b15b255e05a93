"""Which BigQuery errors are worth retrying; the policy itself is `harperbq.retry`'s.

Transient: reasons rateLimitExceeded, backendError, internalError, badGateway,
jobRateLimitExceeded, jobBackendError, jobInternalError; per-second/per-minute quotaExceeded;
HTTP 429/500/502/503/504; connection resets and timeouts. Everything else (invalidQuery,
accessDenied, notFound, daily quotas, ...) fails at once with BigQuery's own message: retrying
cannot fix it. Attempts and total time are bounded by `retry.*` / `bigquery.maxRetries` /
`bigquery.initialRetryDelay` from the config.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions

from harperbq import retry
from harperbq.retry import RetryPolicy

log = logging.getLogger("harperbq.bigquery.retry")

T = TypeVar("T")

TRANSIENT_REASONS = frozenset(
    {
        "rateLimitExceeded",
        "backendError",
        "internalError",
        "badGateway",
        "jobRateLimitExceeded",
        "jobBackendError",
        "jobInternalError",
    }
)
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_SHORT_QUOTA = re.compile(r"per[\s\-_]?(second|minute)|concurrent|too many requests", re.I)
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    api_exceptions.TooManyRequests,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.ServiceUnavailable,
    api_exceptions.GatewayTimeout,
    api_exceptions.DeadlineExceeded,
    api_exceptions.Aborted,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    auth_exceptions.TransportError,
    ConnectionError,
    TimeoutError,
)
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (requests.exceptions.SSLError,)


def _reasons(exc: BaseException) -> list[str]:
    errors = getattr(exc, "errors", None) or []
    found = []
    for error in errors:
        reason = error.get("reason") if isinstance(error, dict) else None
        if isinstance(reason, str):
            found.append(reason)
    return found


def classify(exc: BaseException) -> tuple[bool, str]:
    """(transient?, short reason) for an exception raised by a BigQuery call."""
    if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, _PERMANENT_TYPES):
        return False, type(exc).__name__
    reasons = _reasons(exc)
    for reason in reasons:
        if reason in TRANSIENT_REASONS:
            return True, reason
        if reason == "quotaExceeded":
            short = bool(_SHORT_QUOTA.search(str(getattr(exc, "message", "") or exc)))
            return short, "quotaExceeded (per-second)" if short else "quotaExceeded"
    if reasons:
        return False, reasons[0]
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code in TRANSIENT_STATUS:
        return True, f"HTTP {code}"
    if isinstance(exc, _TRANSIENT_TYPES):
        return True, type(exc).__name__
    return False, f"HTTP {code}" if isinstance(code, int) else type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    return classify(exc)[0]


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    operation: str = "bigquery call",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """`harperbq.retry.call_with_retry` with BigQuery's classification of its errors."""
    return retry.call_with_retry(
        fn,
        policy,
        classify,
        operation=operation,
        log=log,
        event="bigquery.retry",
        sleep=sleep,
        clock=clock,
        rng=rng,
    )


class PolicyRetry(Retry):
    """Our policy in the shape google-cloud-bigquery takes for `retry=` and `job_retry=`, so
    requests made inside the client (job polling, result pages) follow it too."""

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        operation: str = "bigquery call",
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.operation = operation
        self._sleep = sleep
        kwargs.setdefault("predicate", is_transient)
        kwargs.setdefault("initial", self.policy.initial_delay_s)
        kwargs.setdefault("maximum", self.policy.max_delay_s)
        kwargs.setdefault("multiplier", self.policy.multiplier)
        kwargs.setdefault("timeout", self.policy.total_timeout_s)
        super().__init__(**kwargs)

    def __call__(
        self, func: Callable[..., Any], on_error: Callable[[Exception], Any] | None = None
    ) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return call_with_retry(
                functools.partial(func, *args, **kwargs),
                self._effective_policy(),
                operation=self.operation,
                sleep=self._sleep,
            )

        return wrapped

    def _effective_policy(self) -> RetryPolicy:
        """The library may shorten the deadline with `with_timeout`; honour the smaller one."""
        timeout = self._timeout
        if timeout is not None and timeout < self.policy.total_timeout_s:
            return replace(self.policy, total_timeout_s=float(timeout))
        return self.policy

    def with_timeout(self, timeout: float | None) -> PolicyRetry:
        return PolicyRetry(self.policy, self.operation, self._sleep, timeout=timeout)

    def with_delay(
        self,
        initial: float | None = None,
        maximum: float | None = None,
        multiplier: float | None = None,
    ) -> PolicyRetry:
        return self

    def with_predicate(self, predicate: Callable[[Exception], bool]) -> PolicyRetry:
        return self
