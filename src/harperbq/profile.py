"""Stage totals of one process's syncs, on when `HARPERBQ_PROFILE` is set (to anything but 0).

Why: py-spy is not available and cProfile sees one thread, while the engine reads in one thread
and writes in another. Each stage adds its wall time here, and at exit the totals go to stderr
as one line: read (fetch, net of conversion), convert, ids, encode, write (Harper's round
trips, net of encoding), checkpoint, and `idle` (the writer waiting for a page). Reader stages
(read, convert, ids) overlap writer stages, so the totals add up to more than the run. `start`
is not a total but the process's age when its first write began: imports, config, Harper's
schema, the feed's decision and the read session, the latency before any row moves.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGES = ("read", "convert", "ids", "encode", "write", "checkpoint", "idle")


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc, 10 ms resolution; 0.0 elsewhere)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


class StageTimes:
    """Thread-safe seconds per stage; `add` is a no-op unless enabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._seconds = dict.fromkeys(STAGES, 0.0)
        self._start: float | None = None

    def add(self, stage: str, seconds: float) -> None:
        if self.enabled:
            with self._lock:
                self._seconds[stage] += seconds

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if stage == "write" and self._start is None:
            self._start = process_age_s()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def totals(self) -> dict[str, float]:
        """Seconds per stage; `read` and `write` net of the stages nested in them."""
        with self._lock:
            seconds = dict(self._seconds)
        seconds["read"] = max(0.0, seconds["read"] - seconds["convert"])
        seconds["write"] = max(0.0, seconds["write"] - seconds["encode"])
        seconds["start"] = self._start or 0.0
        return seconds

    def summary(self) -> str:
        return "harperbq profile (s): " + " ".join(
            f"{stage}={seconds:.2f}" for stage, seconds in self.totals().items()
        )


PROFILE = StageTimes(os.environ.get("HARPERBQ_PROFILE", "0") not in ("", "0"))
if PROFILE.enabled:
    atexit.register(lambda: print(PROFILE.summary(), file=sys.stderr, flush=True))
