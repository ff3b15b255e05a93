"""Which BigQuery errors are worth retrying, and exponential backoff with full jitter.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions

from harperbq.config import BigQueryConfig, RetryConfig

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


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: sleep ~ U(0, min(cap, initial * m^k))."""

    max_attempts: int = 5
    initial_delay_s: float = 1.0
    multiplier: float = 2.0
    max_delay_s: float = 60.0
    total_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay_s <= 0 or self.multiplier < 1 or self.max_delay_s <= 0:
            raise ValueError("delays must be positive and the multiplier at least 1")

    @classmethod
    def from_config(cls, retry: RetryConfig, bigquery: BigQueryConfig | None = None) -> RetryPolicy:
        """`retry.*`, with `bigquery.maxRetries` (retries after the first attempt) and
        `bigquery.initialRetryDelay` taking precedence for BigQuery calls when set."""
        policy = cls(
            max_attempts=retry.max_attempts,
            initial_delay_s=retry.initial_delay_s,
            multiplier=retry.backoff_multiplier,
            max_delay_s=max(retry.max_delay_s, retry.initial_delay_s),
            total_timeout_s=retry.total_timeout_s,
        )
        if bigquery is not None and bigquery.max_retries is not None:
            policy = replace(policy, max_attempts=bigquery.max_retries + 1)
        if bigquery is not None and bigquery.initial_retry_delay_s:
            initial = bigquery.initial_retry_delay_s
            policy = replace(
                policy, initial_delay_s=initial, max_delay_s=max(policy.max_delay_s, initial)
            )
        return policy

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Sleep before retry k (k = 1, 2, ...): full jitter over the exponential cap."""
        draw = rng or random.Random()
        cap = self.initial_delay_s
        while True:
            yield draw.uniform(0.0, min(cap, self.max_delay_s))
            cap *= self.multiplier


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    operation: str = "bigquery call",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Run fn; retry transient failures within the policy's attempts and total time, log each
    retry; raise the original exception at once when it is permanent or the budget is spent."""
    deadline = clock() + policy.total_timeout_s
    delays = policy.delays(rng)
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            transient, reason = classify(exc)
            if not transient:
                raise
            remaining = deadline - clock()
            if attempt >= policy.max_attempts or remaining <= 0:
                log.error(
                    "bigquery.retry_exhausted",
                    extra={
                        "operation": operation,
                        "attempts": attempt,
                        "reason": reason,
                        "error": _brief(exc),
                    },
                )
                raise
            delay = min(next(delays), remaining)
            log.warning(
                "bigquery.retry",
                extra={
                    "operation": operation,
                    "attempt": attempt,
                    "max_attempts": policy.max_attempts,
                    "delay_s": round(delay, 3),
                    "reason": reason,
                    "error": _brief(exc),
                },
            )
            sleep(delay)
            attempt += 1


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


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
