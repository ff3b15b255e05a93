"""`bucket_counts_query` and `bucket_digests_query` on the emulator equal the Python bucketing
and digests used for Harper's side, row for row, including rows exactly on a window bound,
duplicate keys and NULLs."""

import bisect
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F

from harperbq.bigquery.read import run_query
from harperbq.bigquery.sql import Column, TableRef, bucket_counts_query, bucket_digests_query
from harperbq.bigquery.types import format_timestamp
from harperbq.retry import RetryPolicy
from harperbq.sync.checks.digest import Digest, of_row
from harperbq.sync.cluster.partitions import partition_of
from harperbq.sync.table.grid import count_into
from harperbq.times import to_micros

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


def test_bucket_digests_match_python(bq: bigquery.Client) -> None:
    """`bucket_digests_query` equals `sync.digest` over the values as Harper stores them
    (the digest types but BYTES, whose text the partition tests cover: the emulator keeps
    JSON-loaded BYTES as text; NULLs; identical rows of an unkeyed table counted twice),
    and with `newest_by` keeps only each key's newest row, in the bucket of its cursor."""
    dataset = f"digests_{uuid.uuid4().hex[:8]}"
    bq.create_dataset(dataset)
    schema = [
        F("ts", "TIMESTAMP"),
        F("k", "INT64"),
        F("s", "STRING"),
        F("b", "BOOL"),
        F("d", "DATE"),
        F("dt", "DATETIME"),
        F("t", "TIME"),
    ]
    table = bigquery.Table(f"{bq.project}.{dataset}.t", schema=schema)
    bq.create_table(table)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {
            "ts": (t0 + timedelta(seconds=i)).isoformat(),
            "k": i % 30,
            "s": None if i % 7 == 0 else ("" if i % 11 == 0 else f"s{i}|%"),
            "b": None if i % 5 == 0 else i % 2 == 0,
            "d": None if i % 6 == 0 else f"2024-02-{1 + i % 28:02d}",
            "dt": f"2024-03-01T10:00:{i % 60:02d}.{i:06d}",
            "t": f"12:34:{i % 60:02d}.5",
        }
        for i in range(60)
    ]
    rows += [dict(rows[10]), dict(rows[10])]  # identical rows: both counted
    bq.load_table_from_json(rows, table).result()
    ref = TableRef(bq.project, dataset, "t")
    columns = [Column(f.name, f.field_type) for f in schema]
    ts, k = columns[0], columns[1]
    edges = [to_micros(t0 + timedelta(seconds=s)) for s in (0, 7, 8, 30, 45, 60)]
    policy = RetryPolicy(max_attempts=2)

    def stored(row: dict[str, Any]) -> dict[str, Any]:
        """The row as the sync writes it to Harper (TIMESTAMP as µs ISO text with Z)."""
        return {**row, "ts": format_timestamp(datetime.fromisoformat(row["ts"]))}

    def bucket(row: dict[str, Any]) -> tuple[int, int]:
        at = to_micros(datetime.fromisoformat(row["ts"]))
        return (partition_of([row["k"]], P, ["INT64"]), bisect.bisect_right(edges, at))

    for newest in (False, True):
        query = bucket_digests_query(
            ref,
            ts,
            edges,
            partition_key=[k],
            partitions=P,
            columns=columns,
            newest_by=[k] if newest else None,
        )
        got = {
            (r["p"], r["b"]): (r["n"], Digest(r["k"], r["h"] or 0, r["l"] or 0))
            for r in run_query(bq, query, policy=policy).rows()
        }
        inside = [r for r in rows if 1 <= bucket(r)[1] < len(edges)]
        kept = inside
        if newest:
            latest: dict[int, dict[str, Any]] = {}
            for row in inside:
                held = latest.get(row["k"])
                if held is None or row["ts"] > held["ts"]:
                    latest[row["k"]] = row
            kept = list(latest.values())
        expected: dict[tuple[int, int], Digest] = {}
        for row in kept:
            expected[bucket(row)] = expected.get(bucket(row), Digest()) + of_row(
                stored(row), columns
            )
        assert {key: d for key, (_, d) in got.items() if d.rows} == expected
        assert sum(n for n, _ in got.values()) == len(inside)
    # The digest notices a change of one value, a NULL that became '', and a lost copy.
    one = stored(rows[12])
    assert of_row({**one, "s": "other"}, columns) != of_row(one, columns)
    assert of_row({**one, "s": None}, columns) != of_row({**one, "s": ""}, columns)
