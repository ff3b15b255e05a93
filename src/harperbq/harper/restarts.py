"""Notice that the Harper node we write to was restarted, and how far back to check it.

Why: on a Harper cluster a node killed (SIGKILL, OOM, power) and restarted can come back without
the transactions it had just received, its own and those replicated to it, while its peers hold
them (seen on Harper 4.7.29: a node killed right after a checkpoint moved lacked 27 rows of the
last second, present on both peers, and replication never sent them again). The sync's
checkpoints already cover those rows, so nothing would write them again: the node is silently
behind for good. A restart is therefore answered by validating, and repairing, the recent range
on that node (`sync.service`).

How a restart is seen: `system_information` lists Harper's own process (pid and start time);
a different pair is a new process. The range to check reaches back from now to the last time
the old process was seen alive, plus a margin for rows written just before it died whose
windows closed earlier (settle, poll) — measured on this process's monotonic clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from harperbq.harper.client import HarperClient

MARGIN_S = 900.0
"""Checked beyond the last sight of the old process: windows close `settle` + a poll after
their rows are written, so a lost row's window may have closed a while before the kill."""


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
            self._boot, self._seen_at = boot, now
            if previous is None or previous == boot:
                return None
            return Restart(previous, boot, now - seen_at + self.margin_s)
