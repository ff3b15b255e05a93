"""Merging the per-writer checkpoint records of one partition into the checkpoint to resume.

Why: Harper resolves concurrent writes by last-write-wins per record, on its own transaction
time. With one shared record per partition, a worker that lost its lease but is still finishing
a window overwrites a newer checkpoint (and the recent window counts reconciliation needs) with
an older one. So every writer writes only its own record (`<tableId>/<partition>/<workerId>`),
and readers merge them: per record, last-write-wins only ever replaces a writer's value by that
writer's later value, and a writer resumes from the merged view (which holds its own last
write), so each record only moves forward and so does their maximum, in any delivery order.

Rules (pure functions, no I/O):
- the winner is the record with the greatest `(generation, hi)` (no `hi` is lowest); ties go to
  the later `updated_at`, then the greater writer id, so every reader picks the same record;
- `generation` is a fencing epoch: a deliberate restart that must move a checkpoint backwards
  (target table lost, read clock changed) writes `max(seen) + 1`, so the maximum does not undo
  it, and records of older generations are ignored by the merge;
- the winner's `recent` windows are completed from the other records of the same generation and
  read clock with windows that end at or before the winner's `hi` and overlap none already kept.
A legacy record (`<tableId>/<partition>`, written before per-writer records) is one more writer
of generation 0, so an upgraded deployment resumes from it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: state.py imports this module
    from harperbq.sync.state import Checkpoint, RecentWindow


def rank(checkpoint: Checkpoint) -> tuple[int, bool, int, str, str]:
    """The order of records of one partition: the greatest is the merged checkpoint (one
    without `hi` ranks below any with one, whatever its value)."""
    hi = checkpoint.hi
    synced = hi is not None
    return (checkpoint.generation, synced, hi or 0, checkpoint.updated_at, checkpoint.worker_id)


def merge_recent(winner: Checkpoint, others: Iterable[Checkpoint]) -> list[RecentWindow]:
    """The winner's recent windows plus the others' (same generation and clock) that end at or
    before its `hi` and overlap no window already kept; sorted by `lo`."""
    kept: list[RecentWindow] = list(winner.recent)
    limit = winner.hi
    for other in sorted(others, key=rank, reverse=True):
        if other.generation != winner.generation or other.clock != winner.clock:
            continue
        for window in other.recent:
            if limit is None or window["hi"] > limit:
                continue
            if any(window["lo"] < k["hi"] and k["lo"] < window["hi"] for k in kept):
                continue
            kept.append(window)
    return sorted(kept, key=lambda w: (w["lo"], w["hi"]))


def merge_partition(records: Sequence[Checkpoint]) -> Checkpoint:
    """The merged checkpoint of one partition's records (at least one)."""
    if not records:
        raise ValueError("merge_partition needs at least one record")
    winner = max(records, key=rank)
    others = [r for r in records if r is not winner]
    return replace(winner, recent=merge_recent(winner, others))


def merge_table(records: Iterable[Checkpoint]) -> dict[int, Checkpoint]:
    """The merged checkpoint of every partition that has records, by partition."""
    by_partition: dict[int, list[Checkpoint]] = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record)
    return {p: merge_partition(rs) for p, rs in sorted(by_partition.items())}


def next_generation(current: Checkpoint | None) -> int:
    """The generation of a deliberate restart over the merged checkpoint `current`."""
    return 0 if current is None else current.generation + 1
