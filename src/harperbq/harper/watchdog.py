"""Notice a Harper that stopped answering, within `stallTimeout`, without aborting anything.

Why a watchdog and not a shorter timeout: httpx's read timeout is the longest silence on the
socket, and Harper is silent until it has applied a whole upsert, so a large batch on a busy
node looks exactly like a stopped process (SIGSTOP, a frozen VM, a dead disk) to the socket.
Cutting it short would make a slow node slower (the same batch sent again). Instead:

- the transport registers every request attempt waiting for an answer
  (`Transport.oldest_in_flight`);
- once the oldest has waited a third of `stall_after_s`, the watchdog sends a liveness probe
  (`user_info` on a connection of its own, bounded by the other two thirds, never retried);
- if the probe fails too and the request has by then waited `stall_after_s`, Harper is
  stalled: a busy Harper still answers a trivial call (measured here: within 2.5 s while
  applying a single 150 000-row upsert), a stopped one answers nothing;
- the stall clears as soon as a probe is answered or no request waits any more.

Nothing is aborted: the request in flight finishes when Harper resumes (it is in the kernel's
buffers), or fails after `harper.timeout` and is retried by the transport's own rules. The
watchdog only makes the stall visible (status, metrics, log, audit after recovery).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from harperbq.harper.client import HarperClient

log = logging.getLogger("harperbq.harper.watchdog")


@dataclass(frozen=True)
class Stall:
    """Harper not answering: which request waits, since when, and what the probe said."""

    operation: str
    since: float
    """Wall-clock time (Unix seconds) when the unanswered attempt was sent."""
    probe_error: str

    def waited_s(self, now: float) -> float:
        return max(0.0, now - self.since)

    def message(self, now: float) -> str:
        return (
            f"Harper stalled: {self.operation} unanswered for {self.waited_s(now):.0f} s and a "
            f"liveness probe failed too ({self.probe_error})"
        )


class StallWatchdog:
    """Watches one Harper client's requests from a daemon thread (`start`/`stop`)."""

    def __init__(
        self,
        client: HarperClient,
        stall_after_s: float,
        *,
        on_stall: Callable[[Stall], None] | None = None,
        on_recover: Callable[[Stall, float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if stall_after_s <= 0:
            raise ValueError("stall_after_s must be above 0")
        self.client = client
        self.stall_after_s = stall_after_s
        self.probe_timeout_s = stall_after_s * 2 / 3
        self.interval_s = min(1.0, stall_after_s / 10)
        self.on_stall = on_stall
        self.on_recover = on_recover
        self.clock = clock
        self.stalls = 0
        """Stalls noticed since start."""
        self._stall: Stall | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stall(self) -> Stall | None:
        """The current stall, or None while Harper answers."""
        return self._stall

    def oldest_request_age_s(self) -> float:
        """Seconds the oldest request attempt has been waiting for Harper (0 when none)."""
        oldest = self.client.oldest_request()
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest.started)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="harper-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # a watchdog that dies silently is worse than none
                log.exception("Harper stall watchdog check failed")

    def check(self) -> Stall | None:
        """One look: probe if a request waits long, declare or clear the stall."""
        if self.oldest_request_age_s() < self.stall_after_s - self.probe_timeout_s:
            self._clear()
            return None
        try:
            self.client.probe(self.probe_timeout_s)
        except Exception as exc:
            oldest = self.client.oldest_request()
            if oldest is None:  # it was answered meanwhile (or failed): nothing is stuck
                self._clear()
                return None
            waited = time.monotonic() - oldest.started
            if self._stall is None and waited >= self.stall_after_s:
                text = str(exc).splitlines()[0] if str(exc) else ""
                stall = Stall(
                    oldest.operation, self.clock() - waited, f"{type(exc).__name__}: {text}"[:300]
                )
                self.stalls += 1
                log.error("%s", stall.message(self.clock()))
                if self.on_stall is not None:
                    self.on_stall(stall)
                # Shown only once its consequences are counted: whoever sees the stall (status,
                # metrics) sees its error counted too.
                self._stall = stall
            return self._stall
        self._clear()  # Harper answers: the request is slow, not stuck
        return None

    def _clear(self) -> None:
        stall = self._stall
        if stall is None:
            return
        self._stall = None
        waited = stall.waited_s(self.clock())
        log.warning("Harper answers again after a stall of %.0f s (%s)", waited, stall.operation)
        if self.on_recover is not None:
            self.on_recover(stall, waited)
