"""Event-time windows on a table partitioned by the cursor and not clustered on it end on
partition boundaries, so each partition is billed once per pass (`windows.align_to_partitions`)."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harperbq.sync.table.windows import Window, align_to_partitions, next_window, partition_end
from harperbq.times import MAX_US, MICROS, to_micros

DAY = 86_400 * MICROS


def at(*parts: int) -> int:
    return to_micros(datetime(*parts, tzinfo=UTC))  # type: ignore[misc, arg-type]


def test_partition_ends_per_unit() -> None:
    assert partition_end(at(2026, 3, 4, 5, 6), "HOUR") == at(2026, 3, 4, 6)
    assert partition_end(at(2026, 3, 4, 5, 6), "DAY") == at(2026, 3, 5)
    assert partition_end(at(2026, 12, 31, 23), "MONTH") == at(2027, 1, 1)
    assert partition_end(at(2026, 2, 3), "MONTH") == at(2026, 3, 1)
    assert partition_end(at(2026, 2, 3), "YEAR") == at(2027, 1, 1)
    assert partition_end(MAX_US, "YEAR") == MAX_US + 1
    with pytest.raises(ValueError, match="unit"):
        partition_end(0, "WEEK")


@given(
    st.integers(at(2020, 1, 1), at(2030, 1, 1)),
    st.integers(1, 40 * DAY),
    st.integers(1, 3 * DAY),
)
def test_a_pass_touches_each_day_partition_in_one_window(lo: int, span: int, length: int) -> None:
    cap = lo + span
    touched: dict[int, int] = {}
    while (w := next_window(lo, cap, 0, length)) is not None:
        w = align_to_partitions(w, cap, "DAY")
        assert w.hi == cap or w.hi % DAY == 0, "ends on a partition boundary"
        for day in range(w.lo // DAY, (w.hi - 1) // DAY + 1):
            touched[day] = touched.get(day, 0) + 1
        lo = w.hi
    assert set(touched.values()) == {1}


def test_no_unit_leaves_the_window_alone() -> None:
    assert align_to_partitions(Window(5, 10), 100, None) == Window(5, 10)
