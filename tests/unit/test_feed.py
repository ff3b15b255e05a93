"""The change feed's pure rules: the mode chosen per table, the shared window grid, and how one
window's change rows become upserts and deletes."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harperbq.bigquery.history import FeedUnavailableError, choose, refusal_means_unsupported
from harperbq.bigquery.sql import CHANGE_TS_COLUMN, CHANGE_TYPE_COLUMN
from harperbq.sync.table.feed import LONGEST_WINDOW_US, feed_window, split_changes
from harperbq.times import MICROS

S = MICROS


def test_auto_reads_regular_tables_by_appends_and_views_by_event_time() -> None:
    def auto(**kw: bool) -> str:
        args = {"appends_ok": True, "changes_ok": False, "keyed": False, "mirror_deletes": False}
        return choose("auto", table="p.d.t", **{**args, **kw}).mode

    assert auto() == "appends"
    assert auto(appends_ok=False) == "none"
    assert auto(changes_ok=True, keyed=True) == "changes"
    assert auto(changes_ok=True, keyed=False) == "appends"  # deletes need a key to apply
    assert auto(mirror_deletes=True) == "none"  # APPENDS cannot see deletes


def test_an_explicit_mode_the_table_refuses_is_an_error_naming_the_fix() -> None:
    with pytest.raises(FeedUnavailableError, match="enable_change_history = TRUE"):
        choose(
            "changes", table="p.d.t", appends_ok=True, changes_ok=False, keyed=True,
            mirror_deletes=False,
        )  # fmt: skip
    with pytest.raises(FeedUnavailableError, match="changeFeed: none"):
        choose(
            "appends", table="p.d.v", appends_ok=False, changes_ok=False, keyed=False,
            mirror_deletes=False,
        )  # fmt: skip


def plan(lo: int, cap: int, grid: int) -> list[tuple[int, int]]:
    out = []
    while (w := feed_window(lo, cap, grid)) is not None:
        out.append((w.lo, w.hi))
        lo = w.hi
    return out


@given(
    st.integers(0, 10**6),
    st.integers(1, 5 * 10**5),
    st.sampled_from([1, 2, 5, 30, 60]),
)
def test_windows_tile_the_range_up_to_the_grid_line_below_the_cap(
    start_s: int, span_s: int, grid_s: int
) -> None:
    lo, cap, grid = start_s * S + 123, (start_s + span_s) * S, grid_s * S
    windows = plan(lo, cap, grid)
    end = cap // grid * grid
    if lo >= end:
        assert windows == []
        return
    assert windows[0][0] == lo and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    for w_lo, w_hi in windows[1:]:
        size = w_hi - w_lo
        assert w_lo % size == 0 and size % grid == 0, "aligned blocks"
        assert size <= max(grid, LONGEST_WINDOW_US)


@given(st.integers(0, 10**6), st.integers(1, 10**5), st.integers(0, 10**5))
def test_two_workers_at_one_checkpoint_ask_for_the_same_windows(
    start_s: int, span_s: int, later_s: int
) -> None:
    """Whatever each one's `now`, a window both plan whole is the same window: the query is
    shared, so BigQuery bills it once."""
    grid = 30 * S
    lo = start_s // 30 * 30 * S
    early = plan(lo, (start_s + span_s) * S, grid)
    late = plan(lo, (start_s + span_s + later_s) * S, grid)
    differ = [w for w in early if w not in late]
    # Only the tail may differ (the later worker sees a larger block fit): windows within one
    # largest block, the most a cap difference can bill twice.
    assert early[: len(early) - len(differ)] == late[: len(early) - len(differ)]
    if differ:
        assert differ[-1][1] - differ[0][0] <= LONGEST_WINDOW_US


def test_one_windows_changes_split_into_upserts_and_deletes() -> None:
    rows = [
        {"k": 1, CHANGE_TYPE_COLUMN: "INSERT", CHANGE_TS_COLUMN: "t1"},
        {"k": 2, CHANGE_TYPE_COLUMN: "DELETE", CHANGE_TS_COLUMN: "t1"},
        {"k": 3, CHANGE_TYPE_COLUMN: "UPDATE", CHANGE_TS_COLUMN: "t2"},
    ]
    upserts, up_parts, deletes, del_parts = split_changes(rows, [0, 1, 2])
    assert upserts == [{"k": 1}, {"k": 3}] and up_parts == [0, 2]
    assert deletes == [{"k": 2}] and del_parts == [1]


def test_only_a_missing_change_history_makes_a_refused_probe_a_mode() -> None:
    """The messages the strict local BigQuery gives (as BigQuery's): a view, no option; a range
    in BigQuery's future (a node clock far ahead) is an error, never "a view"."""
    view = "APPENDS requires a regular BigQuery table; p.d.v is a VIEW"
    option = "CHANGES cannot be used on table p.d.t: the table option enable_change_history ..."
    future = "Invalid end_timestamp 2026-12-02T04:10:00+00:00 for APPENDS: it is in the future"
    assert refusal_means_unsupported("APPENDS", view)
    assert refusal_means_unsupported("CHANGES", option)
    assert not refusal_means_unsupported("APPENDS", future)
    assert not refusal_means_unsupported("CHANGES", future.replace("APPENDS", "CHANGES"))
