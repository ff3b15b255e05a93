"""Who owns which partition: partitions by capacity-bounded rendezvous over the live workers
(who is live: `sync.leases`).

Every worker computes the same assignment from the same inputs (the live set read from the
replicated `SyncWorker` table), so no coordinator is needed. Plain rendezvous hashing moves few
partitions on a change but can be lopsided with few partitions (16 over 3 workers may split 3/6/7);
bounding each worker to ceil(P/W) partitions keeps the split as even as P allows while each
partition still prefers its highest-ranked worker, so a change moves only a few partitions.
"""

from collections.abc import Iterable

import farmhash


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
