"""Per-writer checkpoint records and their merge: readers never see a checkpoint step back.

A small model of the deployment: writers (workers) interleaved arbitrarily, each writing to its
own node's replica, two replicas that keep the last write per record (Harper's last-write-wins
on transaction time) and receive each other's writes in any order, a stale writer that keeps
writing windows from its old view after another took its partition over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harperbq.sync.state import Checkpoint, RecentWindow, checkpoint_id
from harperbq.sync.table.checkpoint_merge import merge_partition, merge_table, next_generation
from harperbq.times import MICROS, iso_datetime, to_micros

KEEP = 3  # recent windows a writer keeps (the engine keeps a lateness multiple)
WRITERS = ("w0", "w1", "w2")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(n: int) -> str:
    """Second `n` as text (what `updated_at` holds)."""
    return iso_datetime(T0 + timedelta(seconds=n))


def us(n: int) -> int:
    """Second `n` in µs (what window bounds hold)."""
    return to_micros(T0 + timedelta(seconds=n))


def count_of(lo: int) -> int:
    """The true row count of window [lo, lo + 1): every writer counts the same rows."""
    return (lo * 7) % 5 + 1


def window(lo: int) -> RecentWindow:
    return RecentWindow(lo=us(lo), hi=us(lo + 1), count=count_of(lo))


def seconds(micros: int) -> int:
    return (micros - to_micros(T0)) // MICROS


@dataclass
class Model:
    """Writers over two last-write-wins replicas; `record_id` chooses the storage design."""

    record_id: Callable[[Checkpoint], str]
    replicas: list[dict[str, tuple[int, Checkpoint]]] = field(default_factory=lambda: [{}, {}])
    pending: list[tuple[int, int, Checkpoint]] = field(default_factory=list)
    views: dict[str, Checkpoint | None] = field(default_factory=dict)
    seen: list[tuple[int, bool, int] | None] = field(default_factory=lambda: [None, None])
    ts: int = 0

    def home(self, writer: str) -> int:
        return WRITERS.index(writer) % 2

    def merged(self, replica: int) -> Checkpoint | None:
        records = [cp for _, cp in self.replicas[replica].values()]
        return merge_partition(records) if records else None

    def _apply(self, replica: int, ts: int, cp: Checkpoint) -> None:
        key = self.record_id(cp)
        held = self.replicas[replica].get(key)
        if held is None or held[0] < ts:  # last write wins, by transaction time
            self.replicas[replica][key] = (ts, cp)

    def write(self, writer: str, cp: Checkpoint) -> None:
        self.ts += 1
        self._apply(self.home(writer), self.ts, cp)
        self.pending.append((1 - self.home(writer), self.ts, cp))
        self.views[writer] = cp

    def take_over(self, writer: str) -> None:
        """The writer (re)acquires the partition: resumes from its node's merged view."""
        self.views[writer] = self.merged(self.home(writer))

    def window(self, writer: str) -> None:
        """The writer writes its next window from its own view (stale or not)."""
        if writer not in self.views:
            return  # never owned the partition
        view = self.views[writer]
        lo = seconds(view.hi) if view and view.hi is not None else 0
        recent = [*(view.recent if view else []), window(lo)][-KEEP:]
        cp = Checkpoint(
            "t",
            0,
            hi=us(lo + 1),
            worker_id=writer,
            updated_at=at(self.ts),
            recent=recent,
            generation=view.generation if view else 0,
        )
        self.write(writer, cp)

    def restart(self, writer: str) -> None:
        """A deliberate restart (target table lost): back to no `hi`, next generation."""
        current = self.merged(self.home(writer))
        fresh = Checkpoint(
            "t", 0, worker_id=writer, updated_at=at(self.ts), generation=next_generation(current)
        )
        self.write(writer, fresh)

    def deliver(self, index: int) -> None:
        if self.pending:
            replica, ts, cp = self.pending.pop(index % len(self.pending))
            self._apply(replica, ts, cp)

    def check(self) -> None:
        """What a reader polling each replica sees: never a step back, no window lost."""
        for replica in (0, 1):
            merged = self.merged(replica)
            if merged is None:
                continue
            now = (merged.generation, merged.hi is not None, merged.hi or 0)
            before = self.seen[replica]
            assert before is None or now >= before, f"replica {replica}: {before} -> {now}"
            self.seen[replica] = now
            assert_windows_kept(merged, [cp for _, cp in self.replicas[replica].values()])


def assert_windows_kept(merged: Checkpoint, records: list[Checkpoint]) -> None:
    """Merged windows do not overlap, carry the true counts, and cover every window of the
    winner's generation and clock recorded at or before its `hi`."""
    kept = merged.recent
    for a, b in pairwise(kept):
        assert a["hi"] <= b["lo"], f"overlapping windows {a} {b}"
    for w in kept:
        assert w["count"] == count_of(seconds(w["lo"]))
    for cp in records:
        if cp.generation != merged.generation or cp.clock != merged.clock:
            continue
        for w in cp.recent:
            if merged.hi is not None and w["hi"] <= merged.hi:
                assert any(w["lo"] < k["hi"] and k["lo"] < w["hi"] for k in kept), w


def per_writer(cp: Checkpoint) -> str:
    return cp.id


def shared(cp: Checkpoint) -> str:
    return checkpoint_id(cp.table_id, cp.partition)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["take_over", "window", "window", "window", "deliver", "restart"]),
        st.sampled_from(WRITERS),
        st.integers(0, 50),
    ),
    max_size=80,
)


def run(model: Model, ops: list[tuple[str, str, int]]) -> None:
    for op, writer, n in ops:
        if op == "deliver":
            model.deliver(n)
        elif op == "restart":
            if n % 8 == 0:  # rare, like the real ones
                model.restart(writer)
        else:
            getattr(model, op)(writer)
        model.check()
    while model.pending:  # replication catches up in any order
        model.deliver(0)
        model.check()


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_merged_checkpoint_never_steps_back_under_any_interleaving(
    ops: list[tuple[str, str, int]],
) -> None:
    run(Model(per_writer), ops)


# The handover the property is about: w0 owns the partition, w1 takes it over after w0's
# lease, w0 (frozen, then thawed) still writes the window it was finishing from its old view.
HANDOVER = [
    ("take_over", "w0", 0),
    *[("window", "w0", 0)] * 3,
    ("deliver", "w0", 0),
    ("deliver", "w0", 0),
    ("deliver", "w0", 0),
    ("take_over", "w1", 0),
    *[("window", "w1", 0)] * 3,
    ("window", "w0", 0),  # the stale writer
]


def test_handover_with_per_writer_records_is_monotone() -> None:
    model = Model(per_writer)
    run(model, HANDOVER)
    merged = model.merged(0)
    assert merged is not None and merged.worker_id == "w1" and merged.hi == us(6)


def test_one_shared_record_fails_the_same_property() -> None:
    """The old design (one record per partition): the stale writer's older checkpoint wins."""
    with pytest.raises(AssertionError, match="->"):
        run(Model(shared), HANDOVER)


# -- the merge rules ---------------------------------------------------------------------------


def cp(worker: str, hi: int | None, gen: int = 0, **kwargs: object) -> Checkpoint:
    return Checkpoint(
        "t",
        0,
        hi=None if hi is None else us(hi),
        worker_id=worker,
        generation=gen,
        **kwargs,  # type: ignore[arg-type]
    )


def test_greatest_hi_wins_within_a_generation() -> None:
    assert merge_partition([cp("a", 5), cp("b", 9), cp("c", None)]).worker_id == "b"


def test_a_higher_generation_wins_even_without_hi() -> None:
    merged = merge_partition([cp("a", 50), cp("b", None, gen=1)])
    assert merged.worker_id == "b" and merged.hi is None and merged.generation == 1
    assert next_generation(merged) == 2 and next_generation(None) == 0


def test_ties_are_broken_the_same_way_by_every_reader() -> None:
    a = cp("a", 5, updated_at=at(1))
    b = cp("b", 5, updated_at=at(2))
    c = cp("c", 5, updated_at=at(2))
    assert merge_partition([a, b, c]).worker_id == "c"
    assert merge_partition([c, b, a]).worker_id == "c"


def test_recent_windows_are_completed_without_overlap_from_the_same_generation() -> None:
    winner = cp("b", 6, recent=[window(4), window(5)])
    same = cp("a", 4, recent=[window(2), window(3)])  # older windows: kept
    overlapping = cp("c", 5, recent=[window(4)])  # already covered: not duplicated
    beyond = cp("d", 3, recent=[RecentWindow(lo=us(6), hi=us(7), count=1)])  # after hi: dropped
    old_gen = cp("e", 3, gen=0, recent=[window(1)])
    merged = merge_partition([replace(winner, generation=1), replace(same, generation=1)])
    assert [seconds(w["lo"]) for w in merged.recent] == [2, 3, 4, 5]
    merged = merge_partition([winner, same, overlapping, beyond])
    assert [seconds(w["lo"]) for w in merged.recent] == [2, 3, 4, 5]
    other_gen = merge_partition([replace(winner, generation=1), old_gen])
    assert [seconds(w["lo"]) for w in other_gen.recent] == [4, 5]
    other_clock = merge_partition([winner, replace(same, clock="commit")])
    assert [seconds(w["lo"]) for w in other_clock.recent] == [4, 5]


def test_a_legacy_shared_record_is_one_more_writer() -> None:
    legacy = cp("", 8)  # written before per-writer records; read as generation 0
    assert legacy.id == "t/0"
    assert merge_partition([legacy, cp("a", 3)]).id == "t/0"
    assert merge_partition([legacy, cp("a", 9)]).worker_id == "a"
    assert merge_partition([legacy, cp("a", None, gen=1)]).worker_id == "a"


def test_merge_table_groups_by_partition() -> None:
    records = [cp("a", 1), replace(cp("a", 4), partition=1), cp("b", 2)]
    merged = merge_table(records)
    assert sorted(merged) == [0, 1]
    assert merged[0].hi == us(2) and merged[1].hi == us(4)
    with pytest.raises(ValueError):
        merge_partition([])
