"""Notice that the Harper node we write to was restarted, and how far back to check it.

Why: on a Harper cluster a node killed (SIGKILL, OOM, power) and restarted can come back without
the transactions it had just received, its own and those replicated to it, while its peers hold
them (seen on Harper 4.7.29: a node killed right after a checkpoint moved lacked 27 rows of the
last second, present on both peers, and replication never sent them again). The sync's
checkpoints already cover those rows, so nothing would write them again: the node is silently
behind for good. A restart is therefore answered by validating, and repairing, the recent range
on that node (`sync.service`).

How a restart is seen: `system_information` lists Harper's own process (pid and start time);
a different pair is a new process. Harper reports the start time to the second, derived from
the process's uptime, so the same process reads as started a second earlier or later from one
call to the next (seen on Harper 4.7.29): start times within `JITTER_S` of each other, with the
same pid, are the same process. The range to check reaches back from now to the last time
the old process was seen alive, plus a margin for rows written just before it died whose
windows closed earlier (settle, poll) — measured on this process's monotonic clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from harperbq.harper.client import HarperClient

MARGIN_S = 900.0
"""Checked beyond the last sight of the old process: windows close `settle` + a poll after
their rows are written, so a lost row's window may have closed a while before the kill."""

JITTER_S = 3.0
"""Start times of one pid this close are one process (Harper's figure wobbles by a second)."""


def same_process(a: str, b: str, jitter_s: float = JITTER_S) -> bool:
    """Whether two `pid@started` identities name one process."""
    if a == b:
        return True
    pid_a, _, started_a = a.partition("@")
    pid_b, _, started_b = b.partition("@")
    if pid_a != pid_b:
        return False
    try:
        apart = datetime.fromisoformat(started_a) - datetime.fromisoformat(started_b)
    except ValueError:  # not a time we can read: only equal texts are one process
        return False
    return abs(apart.total_seconds()) <= jitter_s


def boot_id(client: HarperClient) -> str | None:
    """Harper's process identity (`pid@started`), or None when Harper does not list it."""
    info = client.system_information(["harperdb_processes"])
    core = (info.get("harperdb_processes") or {}).get("core") or []
    if not core or not isinstance(core[0], dict):
        return None
    first = core[0]
    return f"{first.get('pid')}@{first.get('started')}"


@dataclass(frozen=True)
class Restart:
    """A restart seen: the old and new identities, and how far back to check (seconds)."""

    before: str
    after: str
    check_s: float


class RestartWatch:
    """Fed one identity reading at a time; says when it changed. Thread-safe."""

    def __init__(self, margin_s: float = MARGIN_S, clock: Callable[[], float] = time.monotonic):
        self.margin_s = margin_s
        self.clock = clock
        self._boot: str | None = None
        self._seen_at = 0.0
        self._lock = threading.Lock()

    def observe(self, boot: str | None) -> Restart | None:
        """A reading (None: not answered); a `Restart` when the identity changed since the last."""
        now = self.clock()
        with self._lock:
            if boot is None:
                return None
            previous, seen_at = self._boot, self._seen_at
            if previous is not None and same_process(previous, boot):
                self._seen_at = now  # keep the first reading: the wobble never adds up
                return None
            self._boot, self._seen_at = boot, now
            if previous is None:
                return None
            return Restart(previous, boot, now - seen_at + self.margin_s)
