"""Window grids (one count per bucket, exact sums per variable window) and health verdicts."""

import itertools
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from harperbq.sync.health import DRIFT, HEALTHY, LAGGING, STALLED, progress, verdict
from harperbq.sync.state import Checkpoint, RecentWindow
from harperbq.sync.table.grid import (
    Cell,
    bucket_of,
    by_window,
    cell_sums,
    compact,
    count_into,
    covering_cells,
    edges_of,
    recorded_cells,
)
from harperbq.times import MICROS, iso

# Per partition: contiguous windows of variable length (as the engine records them).
lengths = st.lists(st.integers(1, 50), min_size=1, max_size=8)
layouts = st.dictionaries(st.integers(0, 5), st.tuples(st.integers(0, 40), lengths), max_size=4)
rows = st.lists(st.tuples(st.integers(0, 5), st.integers(-10, 500)), max_size=300)


def cells_of(layout: dict[int, tuple[int, list[int]]]) -> list[Cell]:
    cells = []
    for partition, (start, steps) in layout.items():
        at = start
        for step in steps:
            cells.append(Cell(partition, at, at + step))
            at += step
    return cells


@given(layout=layouts, data=rows)
def test_cell_sums_equal_direct_counts(
    layout: dict[int, tuple[int, list[int]]], data: list[tuple[int, int]]
) -> None:
    """One pass of bucket counts over the union of all bounds gives every window's exact count,
    whatever the windows of the other partitions look like."""
    cells = cells_of(layout)
    if not cells:
        return
    edges = edges_of(cells)
    counts: dict[tuple[int, int], int] = {}
    for partition, at in data:
        count_into(counts, edges, partition, at)
    sums = cell_sums(cells, edges, counts)
    for cell in cells:
        direct = sum(1 for p, at in data if p == cell.partition and cell.lo <= at < cell.hi)
        assert sums[cell] == direct


def test_bucket_of_is_range_bucket() -> None:
    """1-based like BigQuery's RANGE_BUCKET; a value equal to an edge opens the next bucket."""
    edges = [10, 20, 35]
    assert [bucket_of(edges, v) for v in (9, 10, 19, 20, 34, 35)] == [None, 1, 1, 2, 2, None]


@given(layout=layouts, lo=st.integers(0, 100), span=st.integers(1, 400), fill=st.integers(1, 60))
def test_covering_cells_tile_the_range(
    layout: dict[int, tuple[int, list[int]]], lo: int, span: int, fill: int
) -> None:
    """Recorded windows are kept whole; the rest of [lo, hi) is filled; nothing overlaps."""
    recorded = cells_of(layout)
    hi = lo + span
    for partition in {*layout, 9}:
        cover = covering_cells(partition, recorded, lo, hi, fill)
        covered: Counter[int] = Counter()
        for cell in cover:
            assert cell.partition == partition
            covered.update(range(cell.lo, cell.hi))
        assert all(n == 1 for n in covered.values())  # no overlaps
        assert set(range(lo, hi)) <= set(covered)
        mine = [c for c in recorded if c.partition == partition and c.hi > lo and c.lo < hi]
        assert set(mine) <= set(cover)


def test_by_window_groups_partitions_for_one_read() -> None:
    cells = [Cell(3, 0, 10), Cell(1, 0, 10), Cell(1, 10, 20)]
    groups = by_window(cells)
    assert [(w.lo, w.hi, ps) for w, ps in groups.items()] == [(0, 10, [1, 3]), (10, 20, [1])]


@given(counts=st.lists(st.integers(0, 20), max_size=60), cap=st.integers(1, 20))
def test_compact_keeps_coverage_and_counts(counts: list[int], cap: int) -> None:
    """Over the cap, adjacent windows merge (counts summed): the span and the total stay."""
    recent = [
        RecentWindow(lo=i * MICROS, hi=(i + 1) * MICROS, count=n) for i, n in enumerate(counts)
    ]
    out = compact(recent, cap)
    assert len(out) == min(len(recent), cap)
    assert sum(w["count"] for w in out) == sum(counts)
    if recent:
        assert out[0]["lo"] == recent[0]["lo"] and out[-1]["hi"] == recent[-1]["hi"]
        assert all(a["hi"] == b["lo"] for a, b in itertools.pairwise(out))
    if len(recent) <= cap:
        assert out == recent


def _cp(partition: int, hi_s: float, updated_s: float, recent: list[RecentWindow]) -> Checkpoint:
    return Checkpoint(
        "t",
        partition,
        hi=int(hi_s * MICROS),
        updated_at=iso(int(updated_s * MICROS)),
        recent=recent,
    )


def test_recorded_cells_ignore_windows_not_behind_the_checkpoint() -> None:
    w = [
        RecentWindow(lo=0, hi=10 * MICROS, count=3),
        RecentWindow(lo=10 * MICROS, hi=10 * MICROS, count=0),  # empty: no cell
        RecentWindow(lo=10 * MICROS, hi=30 * MICROS, count=1),  # past hi: ignored
    ]
    cells = recorded_cells({0: _cp(0, 20, 20, w)}, [0, 1])
    assert cells == {Cell(0, 0, 10 * MICROS): 3}


NOW = 1_800_000_000.0


def _progress(behind_s: float, idle_s: float) -> str:
    cps = {0: _cp(0, NOW - 5 - behind_s, NOW - idle_s, []), 1: _cp(1, NOW - 5, NOW, [])}
    state = progress(cps, now=NOW, settle_s=5, lagging_after_s=300, stalled_after_s=600)
    return verdict(state, drift=False)


def test_health_verdicts() -> None:
    # Idle table: nothing new at the source, but the checkpoint keeps up with now - settle.
    assert _progress(behind_s=20, idle_s=20) == HEALTHY
    # Far behind but its checkpoint moves: catching up.
    assert _progress(behind_s=5_000, idle_s=2) == LAGGING
    # Far behind and no checkpoint written for longer than stalledAfter.
    assert _progress(behind_s=5_000, idle_s=700) == STALLED
    # Not behind at all, even if not written for long (nothing to do): not stalled.
    assert _progress(behind_s=0, idle_s=10_000) == HEALTHY
    cps = {0: _cp(0, NOW - 5, NOW, [])}
    fresh = progress(cps, now=NOW, settle_s=5, lagging_after_s=300, stalled_after_s=600)
    assert verdict(fresh, drift=True) == DRIFT
