"""Who owns which partition: partitions by capacity-bounded rendezvous over the live workers
(who is live: `cluster/leases.py`).

Every worker computes the same assignment from the same inputs (the live set read from the
replicated `SyncWorker` table), so no coordinator is needed. Plain rendezvous hashing moves few
partitions on a change but can be lopsided with few partitions (16 over 3 workers may split 3/6/7);
bounding each worker to ceil(P/W) partitions keeps the split as even as P allows while each
partition still prefers its highest-ranked worker, so a change moves only a few partitions.

`Membership` keeps one process's view: it heartbeats its workers into `SyncWorker` and derives
the live set from what it reads back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import farmhash

from harperbq.sync.cluster.leases import Leases

if TYPE_CHECKING:  # annotations only
    from harperbq.config import TableConfig
    from harperbq.sync.state import StateStore

log = logging.getLogger("harperbq.sync.membership")


def _rank(table_id: str, partition: int, worker_id: str) -> int:
    return int(farmhash.fingerprint64(f"{table_id}\x1f{partition}\x1f{worker_id}"))


def assign(table_id: str, partitions: int, workers: Iterable[str]) -> dict[str, list[int]]:
    """Partition lists per worker; deterministic for a given (table, P, live set)."""
    live = sorted(set(workers))
    result: dict[str, list[int]] = {w: [] for w in live}
    if not live:
        return result
    capacity = -(-partitions // len(live))
    for partition in range(partitions):
        ranked = sorted(live, key=lambda w: _rank(table_id, partition, w), reverse=True)
        owner = next(w for w in ranked if len(result[w]) < capacity)
        result[owner].append(partition)
    return result


def owned(table_id: str, partitions: int, workers: Iterable[str], me: str) -> list[int]:
    return assign(table_id, partitions, workers).get(me, [])


class Membership:
    """Heartbeats this process's workers and keeps the cluster's live set fresh."""

    def __init__(self, state: StateStore, node: str, workers: Sequence[str], lease_s: float):
        self.state = state
        self.node = node
        self.workers = list(workers)
        self.lease_s = lease_s
        self._live: list[str] = list(workers)
        self._leases = Leases(lease_s)
        self._lock = threading.Lock()

    def beat(self, info: Callable[[str], dict[str, Any]]) -> None:
        for worker in self.workers:
            self.state.heartbeat(worker, self.node, info(worker))
        records = self.state.workers()
        # By this process's monotonic clock only: other nodes' wall clocks may be off.
        live = self._leases.observe([(w.worker_id, w.beat) for w in records], time.monotonic())
        with self._lock:
            # Our own workers are live by definition, even if the read lagged behind our write.
            self._live = sorted(set(live) | set(self.workers))

    def live(self) -> list[str]:
        with self._lock:
            return list(self._live)

    def owned(self, table: TableConfig, worker: str) -> list[int]:
        return owned(table.id, table.partitions, self.live(), worker)  # the module's function

    def snapshot_leader(self, table: TableConfig, worker: str) -> bool | None:
        """Whether `worker` copies the table's snapshots for every worker (the first live one
        by id), or None when each copies its own (one worker alone, or `snapshotBy: each`)."""
        live = self.live()
        if table.snapshot_by != "one" or len(live) < 2:
            return None
        return min(live) == worker

    def join(self, worker: str) -> None:
        """A local worker added while running (`workers: auto`): live here at once."""
        with self._lock:
            self.workers = [*self.workers, worker]
            self._live = sorted(set(self._live) | {worker})

    def drop(self, worker: str) -> None:
        """A local worker whose runners have ended: its row goes, so every worker (here at
        once, elsewhere at its next read) re-derives ownership without it."""
        with self._lock:
            self.workers = [w for w in self.workers if w != worker]
            self._live = [w for w in self._live if w != worker]
        try:
            self.state.remove_worker(worker)
        except Exception as exc:  # best effort: the lease expires anyway
            log.warning("could not remove worker %s: %s", worker, exc)

    def leave(self) -> None:
        for worker in self.workers:
            try:
                self.state.remove_worker(worker)
            except Exception as exc:  # best effort: the lease expires anyway
                log.warning("could not remove worker %s: %s", worker, exc)
