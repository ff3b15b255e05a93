"""Readiness: can this process reach Harper and BigQuery right now?

Cheap calls with short timeouts and no retries, so a probe answers within a few seconds even when
a dependency hangs: Harper `user_info` (authenticated, reads nothing) on a client of its own, and
BigQuery `get_dataset` for each dataset the configured tables live in (metadata only, not billed,
and it proves the credentials may see the data). Results are cached for a second, so probes
hammering an unauthenticated /readyz cannot multiply calls to either service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.cloud import bigquery

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.harper.connect import harper_client

log = logging.getLogger("harperbq.readiness")
_NO_RETRY: Any = None  # google-cloud-bigquery takes None for "no retry"; its stubs say Retry


@dataclass(frozen=True)
class Check:
    ok: bool
    duration_s: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, "duration_s": round(self.duration_s, 3)}
        if self.error:
            body["error"] = self.error
        return body


def _timed(probe: Callable[[], object]) -> Check:
    started = time.monotonic()
    try:
        probe()
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        return Check(False, time.monotonic() - started, f"{type(exc).__name__}: {text}"[:300])
    return Check(True, time.monotonic() - started)


class Readiness:
    """`check()` -> (ready, per-dependency results)."""

    def __init__(
        self, config: Config, bq: bigquery.Client, timeout_s: float = 3.0, cache_s: float = 1.0
    ) -> None:
        self.config = config
        self.bq = bq
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self._harper: HarperClient | None = None
        self._lock = threading.Lock()
        self._last: tuple[float, bool, dict[str, Any]] | None = None
        project = config.bigquery.project_id or bq.project
        self.datasets = sorted({(t.project_id or project, t.dataset) for t in config.tables})

    def _harper_client(self) -> HarperClient:
        if self._harper is None:
            fast = self.config.harper.model_copy(
                update={"timeout_s": self.timeout_s, "connect_timeout_s": self.timeout_s}
            )
            self._harper = harper_client(fast, max_retries=0)
        return self._harper

    def _bigquery(self) -> None:
        for project, dataset in self.datasets:
            ref = bigquery.DatasetReference(project, dataset)
            self.bq.get_dataset(ref, retry=_NO_RETRY, timeout=self.timeout_s)

    def check(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self.cache_s:
                return self._last[1], self._last[2]
            harper = _timed(lambda: self._harper_client().ping())
            bq = _timed(self._bigquery)
            ready = harper.ok and bq.ok
            body = {"harper": harper.to_json(), "bigquery": bq.to_json()}
            if not ready:
                log.warning("not ready", extra={"checks": body})
            self._last = (time.monotonic(), ready, body)
            return ready, body

    def close(self) -> None:
        if self._harper is not None:
            self._harper.close()
