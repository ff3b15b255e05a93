"""Worker leases judged by this process's monotonic clock alone.

Why: a heartbeat's wall-clock time is the writer's clock, and comparing it with the reader's
makes a node whose clock runs ahead look alive forever and one behind look dead. Each heartbeat
increments the worker's `beat` counter instead, and every observer notes *when it saw the
counter change*, by its own `time.monotonic()`: a worker is live while its beat changed within
`lease` seconds of the observer's now. No two clocks are ever compared, so skewed (or stepped)
wall clocks do not matter.

First sight of a worker counts as a change: a process that just started sees every worker live
for one lease, then only those still beating (a worker that died just before is taken for
live for at most one lease, as it would have been by its last heartbeat).

Pure logic: the caller passes the records it read and its monotonic now (`Membership.beat`,
`sync status`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sighting:
    """A worker's beat as last seen to change, and when (observer's monotonic seconds)."""

    beat: int
    changed_at: float
    first_at: float


class Leases:
    """Live workers by how recently their beat counter changed, as seen by this observer."""

    def __init__(self, lease_s: float) -> None:
        if lease_s <= 0:
            raise ValueError(f"lease must be positive, got {lease_s}")
        self.lease_s = lease_s
        self._seen: dict[str, Sighting] = {}

    def observe(self, beats: Iterable[tuple[str, int]], now: float) -> list[str]:
        """Note the (worker id, beat) pairs just read at monotonic `now`; returns the live ids.
        Workers absent from the read (removed on clean shutdown) are forgotten."""
        current = dict(beats)
        for worker in set(self._seen) - set(current):
            del self._seen[worker]
        for worker, beat in current.items():
            seen = self._seen.get(worker)
            if seen is None:
                self._seen[worker] = Sighting(beat, now, now)
            elif seen.beat != beat:
                self._seen[worker] = Sighting(beat, now, seen.first_at)
        return self.live(now)

    def live(self, now: float) -> list[str]:
        return sorted(w for w, s in self._seen.items() if now - s.changed_at < self.lease_s)

    def changed_since_first_sight(self) -> list[str]:
        """Workers seen beating (a change after first sight): proof of life that a one-shot
        reader can rely on, unlike first sight."""
        return sorted(w for w, s in self._seen.items() if s.changed_at > s.first_at)
