"""Newest version per key: whatever the read order and the page boundaries, the same one wins."""

import itertools
from collections.abc import Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harperbq.sync.table.keys import row_hash
from harperbq.sync.table.target import cursor_micros
from harperbq.sync.table.versions import NewestVersions, drop_older_than_stored


def micros(value: Any) -> int | None:
    return cursor_micros("INT64", value)


versions = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 3), st.sampled_from("abc")),
    min_size=1,
    max_size=40,
)


@given(rows=versions, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 40)))
def test_same_winner_whatever_the_order_and_pages(
    rows: list[tuple[int, int, str]], order: Any, cuts: list[int]
) -> None:
    records = [{"k": k, "c": c, "v": v} for k, c, v in rows]
    shuffled = list(records)
    order.shuffle(shuffled)
    bounds = sorted({0, len(shuffled), *(c for c in cuts if c < len(shuffled))})
    newest = NewestVersions(["k"], "c", micros)
    written: dict[int, dict[str, Any]] = {}
    superseded = 0
    for lo, hi in itertools.pairwise(bounds):
        page = shuffled[lo:hi]
        kept, parts, dropped = newest.keep(page, [0] * len(page))
        assert len(kept) == len(parts) and len(kept) + len(dropped) == len(page)
        assert len({r["k"] for r in kept}) == len(kept)  # one version per key and page
        superseded += len(dropped)
        for record in kept:  # Harper keeps the last one written
            written[record["k"]] = record
    expected = {
        k: max((r for r in records if r["k"] == k), key=lambda r: (r["c"], row_hash(r)))
        for k in {r["k"] for r in records}
    }
    assert written == expected
    assert superseded + sum(1 for _ in written) <= len(records)


def test_reread_never_writes_over_a_newer_stored_version() -> None:
    rows = [{"id": "1", "c": 5}, {"id": "2", "c": 5}, {"id": "3", "c": 5}, {"id": "4", "c": 5}]
    kept, older = drop_older_than_stored(rows, {"1": 9, "2": 5, "3": 1}, "c", micros)
    assert [r["id"] for r in kept] == ["2", "3", "4"] and older == 1


def test_equal_cursors_are_ranked_by_the_tie_break_first() -> None:
    """The source passes the validation digest's fingerprint: the version Harper keeps is the
    one `validate` computes as newest (larger fingerprint), whatever the row hashes say."""
    a, b = {"k": 1, "c": 7, "v": "a"}, {"k": 1, "c": 7, "v": "b"}
    prefer = {"a": 2, "b": 1}
    for order in ([a, b], [b, a]):
        newest = NewestVersions(["k"], "c", micros, lambda r: prefer[r["v"]])
        kept, _, _ = newest.keep(list(order), [0, 0])
        assert kept == [a]
    flipped = {"a": 1, "b": 2}
    kept, _, _ = NewestVersions(["k"], "c", micros, lambda r: flipped[r["v"]]).keep([a, b], [0, 0])
    assert kept == [b]


wide = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.one_of(st.none(), st.integers(-(1 << 63), (1 << 63) - 1)),
        st.integers(-(1 << 63), (1 << 63) - 1),
        st.sampled_from("ab"),
    ),
    min_size=1,
    max_size=30,
)


@given(rows=wide, order=st.randoms(use_true_random=False))
def test_packed_rank_orders_as_cursor_then_signed_tie_break_then_hash(
    rows: list[tuple[int, int | None, int, str]], order: Any
) -> None:
    """Ranks are packed into one int per key (memory): negative and NULL cursors and tie-breaks
    at both ends of INT64 must still order as the (cursor, tie-break, hash) tuple."""
    records = [{"k": k, "c": c, "t": t, "v": v} for k, c, t, v in rows]
    shuffled = list(records)
    order.shuffle(shuffled)
    newest = NewestVersions(["k"], "c", micros, lambda r: int(r["t"]))
    written: dict[int, dict[str, Any]] = {}
    for record in shuffled:  # one page per row: every comparison goes through the stored rank
        kept, _, _ = newest.keep([record], [0])
        for r in kept:
            written[r["k"]] = r

    def rank(r: dict[str, Any]) -> tuple[int, int, str]:
        return (-(1 << 63) if r["c"] is None else r["c"], r["t"], row_hash(r))

    expected = {
        k: max((r for r in records if r["k"] == k), key=rank) for k in {r["k"] for r in records}
    }
    assert written == expected


@given(rows=versions, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 40)))
def test_without_the_row_hash_the_same_records_are_written_when_the_tie_break_covers_them(
    rows: list[tuple[int, int, str]], order: Any, cuts: list[int]
) -> None:
    """`hashed` names the columns the tie-break does not cover (the source's choice). With
    none left, tied versions are identical and Harper ends with the records a whole-row hash
    leaves; with some, their hash decides, whatever the order and the pages."""
    records = [{"k": k, "c": c, "v": v} for k, c, v in rows]
    shuffled = list(records)
    order.shuffle(shuffled)
    bounds = sorted({0, len(shuffled), *(c for c in cuts if c < len(shuffled))})

    def fingerprint(record: Mapping[str, Any]) -> int:
        return "abc".index(record["v"])  # covers every column but the key and cursor

    def no_fingerprint(record: Mapping[str, Any]) -> int:
        return 0

    results = []
    for tie_break, hashed in ((fingerprint, None), (fingerprint, []), (no_fingerprint, ["v"])):
        newest = NewestVersions(["k"], "c", micros, tie_break, hashed=hashed)
        written: dict[int, dict[str, Any]] = {}
        for lo, hi in itertools.pairwise(bounds):
            kept, _, _ = newest.keep(shuffled[lo:hi], [0] * (hi - lo))
            written.update({r["k"]: r for r in kept})
        results.append(written)
    assert results[0] == results[1]
    by_hash = {
        k: max((r for r in records if r["k"] == k), key=lambda r: (r["c"], row_hash({"v": r["v"]})))
        for k in {r["k"] for r in records}
    }
    assert results[2] == by_hash
