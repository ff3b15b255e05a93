"""G4: with W workers each owns about 1/W of the rows, whatever the timestamp granularity.

Uses the Python partition function, which the integration tests prove bit-identical to the SQL
one the workers query with. The original partitioned by MOD(UNIX_MICROS(ts), N): with
millisecond timestamps every row landed on worker 0 for N = 2, 4, 5, 8, 10.
"""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from harperbq.sync.cluster.membership import assign
from harperbq.sync.cluster.partitions import partition_of

START = datetime(2024, 1, 1, tzinfo=UTC)
ROWS = 30_000


def timestamps(step: timedelta) -> list[datetime]:
    return [START + step * i for i in range(ROWS)]


@pytest.mark.parametrize("workers", [2, 3, 4, 5])
@pytest.mark.parametrize("step", [timedelta(milliseconds=1), timedelta(seconds=1)], ids=["ms", "s"])
@pytest.mark.parametrize("keyed", [True, False], ids=["key-mmsi-ts", "no-key-ts"])
def test_each_worker_owns_a_fair_share(workers: int, step: timedelta, keyed: bool) -> None:
    partitions = 60
    plan = assign("positions", partitions, [f"node{i}-0" for i in range(workers)])
    owner = {p: w for w, parts in plan.items() for p in parts}
    per_worker: Counter[str] = Counter()
    for i, ts in enumerate(timestamps(step)):
        if keyed:
            values: list[object] = [200_000_000 + i % 500, ts]
            types = ["INT64", "TIMESTAMP"]
        else:
            values, types = [ts], ["TIMESTAMP"]
        per_worker[owner[partition_of(values, partitions, types)]] += 1
    fair = ROWS / workers
    assert len(per_worker) == workers
    for worker, rows in per_worker.items():
        assert abs(rows - fair) <= 0.15 * fair, (worker, rows, fair)


def test_the_originals_scheme_fails_where_ours_holds() -> None:
    """The check above can fail: the original's partitioning puts every ms row on one node."""
    per_node = Counter(
        (int(ts.timestamp() * 1_000_000)) % 4 for ts in timestamps(timedelta(milliseconds=1))
    )
    assert per_node == Counter({0: ROWS})
