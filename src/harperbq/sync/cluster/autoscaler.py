"""The `workers: auto` loop: samples every table's lag, asks `autoscale.decide`, applies it.

Kept apart from the service so the service only provides three callables (sample, add, remove);
adding and removing go through the same paths as `workers: N` start-up and shutdown, so the
partition handover is the one the lease machinery already does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from harperbq.sync.cluster.autoscale import Decision, LagSample, ScalePolicy, decide

log = logging.getLogger("harperbq.sync.cluster.autoscaler")


class AutoScaler:
    """One thread per service; `desired` and `last_reason` are read by status and metrics."""

    def __init__(
        self,
        policy: ScalePolicy,
        interval_s: float,
        sample: Callable[[float], LagSample],
        count: Callable[[], int],
        add: Callable[[], object],
        remove: Callable[[], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.interval_s = interval_s
        self._sample, self._count, self._add, self._remove = sample, count, add, remove
        self._clock = clock
        self.history: list[LagSample] = []
        self.desired = count()
        self.last_reason = "started"
        self.last_change_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> Decision:
        """Take one sample and apply the decision (one worker at most)."""
        now = self._clock()
        self.history.append(self._sample(now))
        # Enough to cover the calm period and the growth run, not more.
        keep = max(self.policy.grow_samples + 1, int(self.policy.calm_s / self.interval_s) + 2)
        del self.history[:-keep]
        current = self._count()
        decision = decide(self.policy, self.history, current, now, self.last_change_at)
        self.desired = decision.workers
        if decision.workers != current:
            log.info(
                "auto scaling %d -> %d local workers: %s",
                current,
                decision.workers,
                decision.reason,
            )
            # Noted first: status shows why while the worker starts or stops, and a failed
            # change still waits out the cool-down rather than being retried at once.
            self.last_change_at = now
            self.last_reason = decision.reason
            if decision.workers > current:
                self._add()
            else:
                self._remove()
        return decision

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.step()
            except Exception as exc:  # a failed sample or start: the next tick tries again
                log.warning("auto scaling step failed: %s", exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="autoscaler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
