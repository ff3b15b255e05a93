"""BigQuery's own clock, carried forward by this process's monotonic clock.

Why: BigQuery judges change-feed ranges by its clock: an `APPENDS`/`CHANGES` range that ends
after its now is refused, and one that ends long before it delays every row. A node whose clock
runs 10 minutes ahead would plan every window in BigQuery's future; one 10 minutes behind would
lag 10 minutes. So every "now" that ends a feed window or a probe range is BigQuery's:
`SELECT CURRENT_TIMESTAMP()` (no table, 0 bytes billed) once, then the monotonic time elapsed
since, asked again every `refresh_s` (10 min) to follow BigQuery's clock rather than drift.
The local wall clock is never used for it (only if BigQuery cannot be asked at all, with a
warning: the queries that need the time would fail the same way).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

log = logging.getLogger("harperbq.bigquery.server_clock")

REFRESH_S = 600.0
RETRY_S = 30.0
QUERY = "SELECT CURRENT_TIMESTAMP() AS now"


def ask_bigquery(client: Any) -> float:
    """BigQuery's current time (epoch seconds), by a query that reads no table."""
    rows = list(client.query(QUERY).result())
    now = rows[0][0]
    if not isinstance(now, datetime):
        raise TypeError(f"CURRENT_TIMESTAMP() returned {now!r}")
    return now.timestamp()


class ServerClock:
    """`now()`: the server's time in epoch seconds, as `time.time` would give it there."""

    def __init__(
        self,
        ask: Callable[[], float],
        *,
        refresh_s: float = REFRESH_S,
        monotonic: Callable[[], float] = time.monotonic,
        fallback: Callable[[], float] = time.time,
    ) -> None:
        self._ask = ask
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._fallback = fallback
        self._base: float | None = None
        self._at = 0.0
        self._next_ask = float("-inf")
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            if self._monotonic() >= self._next_ask:
                self._refresh()
            if self._base is None:
                return self._fallback()
            return self._base + (self._monotonic() - self._at)

    def offset_s(self) -> float | None:
        """Server time minus local wall time (seconds), once known: for logs and status."""
        with self._lock:
            if self._base is None:
                return None
            return self._base + (self._monotonic() - self._at) - self._fallback()

    def _refresh(self) -> None:
        before = self._monotonic()
        try:
            server = self._ask()
        except Exception as exc:
            # Not on every call while BigQuery is away: again in RETRY_S.
            self._next_ask = self._monotonic() + RETRY_S
            if self._base is None:
                log.warning("could not read BigQuery's clock (%s); using the local clock", exc)
            else:
                log.warning("could not read BigQuery's clock again (%s); carrying it on", exc)
            return
        after = self._monotonic()
        # The server read its clock somewhere in the round trip: take the middle.
        self._base, self._at = server, (before + after) / 2
        self._next_ask = after + self.refresh_s


_CLOCKS: weakref.WeakKeyDictionary[Any, ServerClock] = weakref.WeakKeyDictionary()
_CLOCKS_LOCK = threading.Lock()


def for_client(client: Any) -> ServerClock:
    """One clock per BigQuery client (so per process in practice), shared by every table."""
    with _CLOCKS_LOCK:
        try:
            clock = _CLOCKS.get(client)
        except TypeError:  # not weak-referenceable (no client at all): not shared
            return ServerClock(lambda: ask_bigquery(client))
        if clock is None:
            clock = _CLOCKS[client] = ServerClock(lambda: ask_bigquery(client))
        return clock
