"""Keeps one table's engine going: poll by phase, back off on errors, never stop the others."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from harperbq.phases import RunState
from harperbq.retry import RetryPolicy
from harperbq.sync.table.engine import TableEngine

log = logging.getLogger("harperbq.sync.runner")


class TableRunner:
    """Runs `engine` in its own thread until stopped (or, with `once`, until caught up)."""

    def __init__(
        self,
        engine: TableEngine,
        prepare: Callable[[], None],
        on_error: Callable[[BaseException], None],
        *,
        once: bool = False,
        policy: RetryPolicy | None = None,
        maintenance: Callable[[threading.Event], None] | None = None,
        finish: Callable[[threading.Event], None] | None = None,
    ) -> None:
        self.engine = engine
        self.maintenance = maintenance  # periodic jobs run between passes (sync.maintenance)
        self.finish = finish  # --once: run after the catch-up; raising fails the attempt
        self.prepare = prepare
        self.on_error = on_error
        self.once = once
        # Attempts (--once gives up after max_attempts) and the sleep between them.
        self.policy = policy or RetryPolicy()
        self.state = RunState.STARTING
        self.attempts = 0  # failed attempts in a row without progress (--once gives up at max)
        self._windows_at_failure = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prepared = False

    @property
    def table_id(self) -> str:
        return self.engine.settings.table_id

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sync-{self.table_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Asked to stop; its thread may still be finishing the current request."""
        return self._stop.is_set()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        self.state = RunState.RUNNING
        while not self._stop.is_set():
            finishing = False
            try:
                if not self._prepared:
                    self.prepare()
                    self._prepared = True
                self.state = RunState.RUNNING
                caught_up = self.engine.catch_up(self._stop)
                if caught_up and self.once:
                    if self.finish is not None:
                        finishing = True
                        self.finish(self._stop)
                        if self._stop.is_set():
                            break
                    self.attempts = 0
                    self.state = RunState.DONE
                    return
                self.attempts = 0
                if caught_up:
                    self._maintain()
                    self.state = RunState.IDLE
                    self._stop.wait(self.engine.settings.policy.poll_s(self.engine.status.phase))
            except Exception as exc:
                if not finishing and self.engine.status.windows != self._windows_at_failure:
                    # Windows were written since the last failure: a long catch-up through
                    # intermittent errors is not a table that keeps failing; count afresh.
                    self._windows_at_failure = self.engine.status.windows
                    self.attempts = 0
                self.attempts += 1
                self.state = RunState.ERROR
                self.engine.status.last_error = f"{type(exc).__name__}: {exc}"
                self.engine.reload_checkpoints()
                self._prepared = False
                log.warning("table %s: attempt %d failed: %s", self.table_id, self.attempts, exc)
                try:
                    self.on_error(exc)
                except Exception:  # the audit trail itself may be what is failing
                    log.exception("table %s: could not record the error", self.table_id)
                permanent = getattr(exc, "permanent", False) is True  # retrying cannot help
                if self.once and (self.attempts >= self.policy.max_attempts or permanent):
                    self.state = RunState.FAILED
                    return
                self._stop.wait(self.policy.delay(self.attempts))
        self.state = RunState.STOPPED

    def _maintain(self) -> None:
        """Reconciliation, retention, validation when due; never fails the table's sync."""
        if self.maintenance is None:
            return
        try:
            self.maintenance(self._stop)
        except Exception:
            log.exception("table %s: maintenance failed", self.table_id)
