"""`bucket_counts_query` on the emulator equals the Python bucketing used for Harper's side,
row for row, including rows exactly on a window bound and duplicate keys."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F

from harperbq.bigquery.read import run_query
from harperbq.bigquery.retry import RetryPolicy
from harperbq.bigquery.sql import Column, TableRef, bucket_counts_query
from harperbq.sync.grid import count_into
from harperbq.sync.partitions import partition_of
from harperbq.sync.windows import to_micros

P = 5


def test_bucket_counts_match_python(bq: bigquery.Client) -> None:
    dataset = f"buckets_{uuid.uuid4().hex[:8]}"
    bq.create_dataset(dataset)
    table = bigquery.Table(
        f"{bq.project}.{dataset}.t", schema=[F("ts", "TIMESTAMP"), F("k", "INT64")]
    )
    bq.create_table(table)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    edges = [to_micros(t0 + timedelta(seconds=s)) for s in (0, 7, 8, 30, 31, 60)]
    moments = [t0 + timedelta(seconds=s, microseconds=u) for s in range(-2, 63) for u in (0, 1)]
    rows: list[dict[str, Any]] = [{"ts": m.isoformat(), "k": i % 40} for i, m in enumerate(moments)]
    rows += [dict(rows[20]), dict(rows[21])]  # duplicate keys: counted by n, not by k
    bq.load_table_from_json(rows, table).result()

    ref = TableRef(bq.project, dataset, "t")
    ts, k = Column("ts", "TIMESTAMP"), Column("k", "INT64")
    query = bucket_counts_query(
        ref, ts, edges, partition_key=[k], partitions=P, parts=[0, 2, 3], distinct_key=[ts, k]
    )
    got = {
        (r["p"], r["b"]): (r["n"], r["k"])
        for r in run_query(bq, query, policy=RetryPolicy(max_attempts=2)).rows()
    }

    expected: dict[tuple[int, int], int] = {}
    distinct: dict[tuple[int, int], set[tuple[str, int]]] = {}
    for row in rows:
        p = partition_of([row["k"]], P, ["INT64"])
        if p not in (0, 2, 3):
            continue
        at = to_micros(datetime.fromisoformat(row["ts"]))
        count_into(expected, edges, p, at)
        if edges[0] <= at < edges[-1]:
            b = max(i for i, e in enumerate(edges) if e <= at) + 1
            distinct.setdefault((p, b), set()).add((row["ts"], row["k"]))
    assert {key: n for key, (n, _) in got.items()} == expected
    assert {key: kk for key, (_, kk) in got.items()} == {k: len(v) for k, v in distinct.items()}
    assert sum(n for n, _ in got.values()) > sum(kk for _, kk in got.values())  # duplicates seen
    assert {b for _, b in got} <= set(range(1, len(edges)))
