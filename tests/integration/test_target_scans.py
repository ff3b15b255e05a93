"""`TargetTable.records`: a cursor range expected to be large is scanned in bounded answers.

Harper answers a search whole, so one scan of a big range is one big parsed answer in the
sync's memory (validation's stage 2 read whole windows of every partition this way). The
split must return exactly the records one scan returns: none twice at a sub-range boundary,
none lost, ties at the boundaries included.
"""

import random

from tests.support import FaultProxy

from harperbq.bigquery.sql import Column
from harperbq.harper.client import HarperClient
from harperbq.harper.models import Attribute
from harperbq.sync.table.target import TargetTable
from harperbq.times import iso

BASE_US = 1_714_521_600_000_000  # 2024-05-01T00:00:00Z


def test_a_large_range_is_scanned_in_bounded_answers_with_the_same_records(
    client: HarperClient, db: str, proxy: FaultProxy
) -> None:
    client.create_table(
        db,
        "t",
        attributes=[Attribute("ts", "String", indexed=True), Attribute("vessel", "String")],
    )
    rng = random.Random(3)
    # 600 records over 1 000 µs: many share a µs, so sub-range bounds fall on ties
    stamps = [BASE_US + rng.randrange(1_000) for _ in range(600)]
    client.upsert(
        db,
        "t",
        [{"id": f"r{i}", "ts": iso(at), "vessel": f"v{i % 7}"} for i, at in enumerate(stamps)],
    )
    with proxy.client() as through:
        target = TargetTable(
            through, db, "t", Column("ts", "TIMESTAMP"), [Column("vessel", "STRING")], 4
        )
        lo, hi = BASE_US + 100, BASE_US + 900
        whole = sorted((r.id, r.cursor_us, r.partition) for r in target.records(lo, hi))
        before = len(proxy.seen)
        split = sorted(
            (r.id, r.cursor_us, r.partition)
            for r in target.records(lo, hi, expected_rows=len(whole), max_rows=50)
        )
        scans = len(proxy.seen) - before
    assert split == whole
    assert whole == sorted(
        (f"r{i}", at, target.partition_of({"vessel": f"v{i % 7}"}))
        for i, at in enumerate(stamps)
        if lo <= at < hi
    )
    assert scans == -(-len(whole) // 50)  # one request per bounded sub-range
