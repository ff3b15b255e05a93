"""Window grids: counting many variable-length windows of many partitions in one pass.

Why: late-row reconciliation and validation compare row counts per (partition, window), and
every partition keeps its own recorded windows (variable length; partitions read in different
groups have different bounds). The union of all window bounds cuts the time axis into
elementary buckets; one `RANGE_BUCKET` query (BigQuery) or one bisect pass (Harper) counts rows
per (partition, bucket), and each window is then the exact sum of the buckets between its
bounds. No fixed bucket size has to be stored, and `Checkpoint.recent` keeps the windows the
engine actually wrote.

All bounds are integer µs since the epoch (raw values for INT64 cursors); windows are half-open.
Bucket numbers are 1-based like BigQuery's `RANGE_BUCKET`: bucket b is `[edges[b-1], edges[b])`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from harperbq.sync.state import Checkpoint, RecentWindow
from harperbq.sync.table.windows import Window

WATCH_LATENESS_MULTIPLE = 4
"""Recorded windows are kept for this many `lateness` behind the checkpoint: those within
`lateness` are re-synced when their source count changes; the older ones are only watched, so
rows arriving later than `lateness` (up to about 3 x `lateness` later) are reported, not lost
silently (`sync.reconcile`)."""


@dataclass(frozen=True, order=True)
class Cell:
    """One window `[lo, hi)` of one partition: the unit that is counted, compared, re-synced."""

    partition: int
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if self.hi <= self.lo:
            raise ValueError(f"empty cell [{self.lo}, {self.hi})")

    @property
    def window(self) -> Window:
        return Window(self.lo, self.hi)


BucketCounts = Mapping[tuple[int, int], int]
"""Rows per (partition, 1-based bucket)."""


def edges_of(cells: Iterable[Cell]) -> list[int]:
    """Every cell bound once, ascending: the grid that makes every cell a union of buckets."""
    return sorted({bound for cell in cells for bound in (cell.lo, cell.hi)})


def bucket_of(edges: Sequence[int], value: int) -> int | None:
    """The 1-based bucket holding value, or None outside `[edges[0], edges[-1])`."""
    b = bisect.bisect_right(edges, value)
    return b if 1 <= b < len(edges) else None


def cell_sums(cells: Iterable[Cell], edges: Sequence[int], counts: BucketCounts) -> dict[Cell, int]:
    """Rows per cell, summed from bucket counts over the same edges (exact; cells may overlap)."""
    index = {edge: i for i, edge in enumerate(edges)}
    per_partition: dict[int, list[int]] = {}
    for (partition, b), n in counts.items():
        if 1 <= b < len(edges):
            per_partition.setdefault(partition, [0] * len(edges))[b] += n
    prefix: dict[int, list[int]] = {}
    for partition, values in per_partition.items():
        running, total = [], 0
        for n in values:
            total += n
            running.append(total)
        prefix[partition] = running  # running[i] = rows in buckets 1..i = [edges[0], edges[i])
    out: dict[Cell, int] = {}
    for cell in cells:
        sums = prefix.get(cell.partition)
        out[cell] = sums[index[cell.hi]] - sums[index[cell.lo]] if sums else 0
    return out


def count_into(
    counts: dict[tuple[int, int], int], edges: Sequence[int], partition: int, value: int
) -> None:
    """Add one row (its partition and cursor µs) to bucket counts."""
    b = bucket_of(edges, value)
    if b is not None:
        counts[(partition, b)] = counts.get((partition, b), 0) + 1


def recorded_cells(
    checkpoints: Mapping[int, Checkpoint], partitions: Iterable[int]
) -> dict[Cell, int]:
    """The windows each partition's checkpoint recorded as written (last `lateness`), with the
    row counts written; windows not behind the checkpoint's `hi` are ignored."""
    out: dict[Cell, int] = {}
    for partition in partitions:
        cp = checkpoints.get(partition)
        if cp is None or cp.hi is None:
            continue
        hi = cp.hi
        for window in cp.recent:
            lo_us, hi_us = window["lo"], window["hi"]
            if lo_us < hi_us <= hi:
                out[Cell(partition, lo_us, hi_us)] = int(window["count"])
    return out


def covering_cells(
    partition: int, recorded: Iterable[Cell], lo: int, hi: int, fill_us: int
) -> list[Cell]:
    """Cells covering `[lo, hi)` for one partition: its recorded windows that end after lo
    (taken whole, so their written counts stay comparable), and fixed `fill_us` buckets for
    any stretch no recorded window covers."""
    if fill_us < 1:
        raise ValueError("fill_us must be >= 1")
    out: list[Cell] = []
    at = lo
    for cell in sorted(c for c in recorded if c.partition == partition and c.hi > lo):
        if cell.lo >= hi:
            break
        out.extend(_fill(partition, at, min(cell.lo, hi), fill_us))
        out.append(cell)
        at = max(at, cell.hi)
    out.extend(_fill(partition, at, hi, fill_us))
    return out


def _fill(partition: int, lo: int, hi: int, step: int) -> list[Cell]:
    return [Cell(partition, a, min(a + step, hi)) for a in range(lo, hi, step)]


def by_window(cells: Iterable[Cell]) -> dict[Window, list[int]]:
    """Cells grouped by window: the partitions to read together in one source query."""
    groups: dict[Window, list[int]] = defaultdict(list)
    for cell in sorted(cells):
        groups[cell.window].append(cell.partition)
    return dict(sorted(groups.items(), key=lambda item: (item[0].lo, item[0].hi)))


def compact(recent: Sequence[RecentWindow], cap: int) -> list[RecentWindow]:
    """At most `cap` recorded windows, without losing coverage: while over the cap, the two
    adjacent windows (one's `hi` is the other's `lo`) with the fewest rows together become one
    window with the summed count. Dropping old windows instead would leave late rows in them
    unreconciled when polls are frequent (a 1 s poll records 3 600 windows an hour); a merged
    window only costs a larger re-read if it ever changes. Falls back to dropping the oldest
    when no two windows touch."""
    if cap < 1:
        raise ValueError("cap must be >= 1")
    out = [RecentWindow(lo=w["lo"], hi=w["hi"], count=w["count"]) for w in recent]
    while len(out) > cap:
        pairs = [i for i in range(len(out) - 1) if out[i]["hi"] == out[i + 1]["lo"]]
        if not pairs:
            out.pop(0)
            continue
        i = min(pairs, key=lambda j: (out[j]["count"] + out[j + 1]["count"], j))
        merged = RecentWindow(
            lo=out[i]["lo"], hi=out[i + 1]["hi"], count=out[i]["count"] + out[i + 1]["count"]
        )
        out[i : i + 2] = [merged]
    return out
