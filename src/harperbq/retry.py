"""One retry policy for every remote call: BigQuery's, Harper's, and a table's runner between
attempts. Bounded attempts and total time, exponential backoff with full jitter, computed in
one function (`full_jitter`). Which errors are worth retrying is the caller's to say: only the
BigQuery layer knows BigQuery's errors, only the Harper layer Harper's."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

from harperbq.config import BigQueryConfig, RetryConfig

T = TypeVar("T")

_DEFAULTS = RetryConfig.model_validate({})  # the defaults of `retry.*`, written once, in config


def full_jitter(
    attempt: int, initial_s: float, multiplier: float, cap_s: float, rng: random.Random
) -> float:
    """The sleep before retry `attempt` (1, 2, ...): uniform in [0, min(cap, initial * m^(k-1))].
    Full jitter, so that a storm of failing callers does not retry in step."""
    try:
        bound = min(cap_s, initial_s * multiplier ** max(attempt - 1, 0))
    except OverflowError:  # the thousandth retry of a tight loop: long past the cap
        bound = cap_s
    return rng.uniform(0.0, bound)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: sleep ~ U(0, min(cap, initial * m^k))."""

    max_attempts: int = _DEFAULTS.max_attempts
    initial_delay_s: float = _DEFAULTS.initial_delay_s
    multiplier: float = _DEFAULTS.backoff_multiplier
    max_delay_s: float = _DEFAULTS.max_delay_s
    total_timeout_s: float = _DEFAULTS.total_timeout_s

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

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The sleep before retry `attempt` (1, 2, ...)."""
        return full_jitter(
            attempt, self.initial_delay_s, self.multiplier, self.max_delay_s, rng or _RANDOM
        )

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The sleeps before retries 1, 2, ... in turn."""
        attempt = 1
        while True:
            yield self.delay(attempt, rng)
            attempt += 1


_RANDOM = random.Random()


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    classify: Callable[[BaseException], tuple[bool, str]],
    *,
    operation: str,
    log: logging.Logger,
    event: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Run fn; retry the failures `classify` calls transient within the policy's attempts and
    total time, logging each retry as `event` (and `<event>_exhausted` when the budget is
    spent); raise the original exception at once when it is permanent or the budget is spent."""
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
            facts = {"operation": operation, "reason": reason, "error": _brief(exc)}
            if attempt >= policy.max_attempts or remaining <= 0:
                log.error(f"{event}_exhausted", extra={**facts, "attempts": attempt})
                raise
            delay = min(next(delays), remaining)
            log.warning(
                event,
                extra={
                    **facts,
                    "attempt": attempt,
                    "max_attempts": policy.max_attempts,
                    "delay_s": round(delay, 3),
                },
            )
            sleep(delay)
            attempt += 1


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
