"""The partition function in Python equals the SQL one on the emulator, bit for bit, and the
windowed reads and counts return exactly the rows the Python function predicts."""

import io
import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harperbq.bigquery.client import make_read_client
from harperbq.bigquery.read import StorageReader, run_query
from harperbq.bigquery.retry import PolicyRetry
from harperbq.bigquery.sql import (
    Column,
    Query,
    TableRef,
    bucket_counts_query,
    cursor_range_query,
    partition_key_sql,
    partition_sql,
    window_query,
    window_restriction,
)
from harperbq.config import BigQueryConfig
from harperbq.devstack.emulator import Emulator
from harperbq.retry import RetryPolicy
from harperbq.sync.cluster.partitions import (
    fingerprint,
    keep_partitions,
    partition_key_string,
    partition_of,
)

POLICY = RetryPolicy(max_attempts=2, initial_delay_s=0.1, total_timeout_s=30)
RETRY = PolicyRetry(POLICY)  # never the client's default 10-minute retry on emulator errors
SCHEMA = [
    F("row", "INT64"),
    F("s", "STRING"),
    F("i", "INT64"),
    F("ts", "TIMESTAMP"),
    F("dt", "DATETIME"),
    F("d", "DATE"),
    F("b", "BYTES"),
    F("bo", "BOOL"),
    F("t", "TIME"),
]
ARROW = pa.schema(
    [
        ("row", pa.int64()),
        ("s", pa.string()),
        ("i", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("dt", pa.timestamp("us")),
        ("d", pa.date32()),
        ("b", pa.binary()),
        ("bo", pa.bool_()),
        ("t", pa.time64("us")),
    ]
)
COLUMNS = {f.name: Column.from_field(f) for f in SCHEMA}
KEYS = [("s",), ("i",), ("ts",), ("dt",), ("d",), ("b",), ("bo",), ("t",), ("s", "i", "ts")]
KEYS += [("d", "b", "bo", "t", "dt")]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def dataset(bq: bigquery.Client) -> Iterator[str]:
    name = f"partitions_{uuid.uuid4().hex[:8]}"
    bq.create_dataset(name, retry=RETRY)
    yield name
    bq.delete_dataset(name, delete_contents=True, not_found_ok=True, retry=RETRY)


def load(bq: bigquery.Client, dataset: str, rows: list[dict[str, Any]], name: str) -> TableRef:
    ref = TableRef(bq.project, dataset, name)
    table = bq.create_table(bigquery.Table(str(ref), schema=SCHEMA), retry=RETRY)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=ARROW), buffer)
    buffer.seek(0)
    config = bigquery.LoadJobConfig(source_format="PARQUET", schema=SCHEMA)
    bq.load_table_from_file(buffer, table, job_config=config).result(timeout=60, retry=RETRY)
    return ref


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


MICROS = st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)
ROW = st.fixed_dictionaries(
    {
        "s": maybe(st.text(max_size=12)),
        "i": maybe(st.integers(-(2**63), 2**63 - 1)),
        "ts": maybe(MICROS.map(lambda us: EPOCH + timedelta(microseconds=us))),
        "dt": maybe(
            MICROS.map(lambda us: (EPOCH + timedelta(microseconds=us)).replace(tzinfo=None))
        ),
        "d": maybe(st.dates(date(1, 1, 1), date(9999, 12, 31))),
        "b": maybe(st.binary(max_size=10)),
        "bo": maybe(st.booleans()),
        "t": maybe(st.times()),
    }
)
EDGES = [
    {
        "s": "",
        "i": -(2**63),
        "ts": datetime(1, 1, 1, tzinfo=UTC),
        "dt": datetime(1, 1, 1),
        "d": date(1, 1, 1),
        "b": b"",
        "bo": False,
        "t": time(0),
    },
    {
        "s": "a\x1fb 𝄞 é\x00",
        "i": 2**63 - 1,
        "ts": datetime(9999, 12, 31, 23, 59, 59, 999999, UTC),
        "dt": datetime(9999, 12, 31, 23, 59, 59, 999999),
        "d": date(9999, 12, 31),
        "b": b"\x00\xff",
        "bo": True,
        "t": time(23, 59, 59, 999999),
    },
    dict.fromkeys(["s", "i", "ts", "dt", "d", "b", "bo", "t"]),
]
_names = (f"t{n}" for n in itertools.count())


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(ROW, min_size=1, max_size=60))
@example(EDGES)
def test_python_partition_function_equals_the_emulator(
    bq: bigquery.Client, dataset: str, rows: list[dict[str, Any]]
) -> None:
    rows = [{"row": n, **r} for n, r in enumerate(rows)]
    ref = load(bq, dataset, rows, next(_names))
    items = []
    for k, key in enumerate(KEYS):
        columns = [COLUMNS[c] for c in key]
        items.append(f"FARM_FINGERPRINT({partition_key_sql(columns)}) AS fp{k}")
        items.append(f"{partition_sql(columns, str(7 + k))} AS p{k}")
    query = Query(f"SELECT `row`, {', '.join(items)} FROM {ref.sql}")  # noqa: S608
    result = {r["row"]: r for r in run_query(bq, query, policy=POLICY).rows()}
    assert len(result) == len(rows)
    for row in rows:
        remote = result[row["row"]]
        for k, key in enumerate(KEYS):
            values = [row[c] for c in key]
            types = [COLUMNS[c].type for c in key]
            text = partition_key_string(values, types)
            assert remote[f"fp{k}"] == fingerprint(text), (key, values)
            assert remote[f"p{k}"] == partition_of(values, 7 + k, types), (key, values)


def test_harper_json_forms_give_the_same_partition() -> None:
    """The engine may hold converted values (ISO text, base64, decimal strings)."""
    native = [datetime(2024, 1, 1, 0, 0, 0, 123456, UTC), 2**62, b"\x00\xff", date(2024, 2, 29)]
    harper = ["2024-01-01T00:00:00.123456Z", str(2**62), "AP8=", "2024-02-29"]
    types = ["TIMESTAMP", "INT64", "BYTES", "DATE"]
    assert partition_key_string(native, types) == partition_key_string(harper, types)


@pytest.fixture(scope="module")
def traffic(bq: bigquery.Client, dataset: str) -> tuple[TableRef, list[dict[str, Any]]]:
    """2 000 rows with millisecond timestamps (the original's skew case), many sharing one."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(2000):
        moment = start + timedelta(milliseconds=(n * 37) % 5000)
        rows.append(
            {
                "row": n,
                "s": f"vessel-{n % 311}",
                "i": n * 7919,
                "ts": moment,
                "dt": moment.replace(tzinfo=None),
                "d": moment.date() + timedelta(days=n % 3),
                "b": None,
                "bo": n % 2 == 0,
                "t": None,
            }
        )
    return load(bq, dataset, rows, "traffic"), rows


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def test_a_workers_window_read_is_exactly_its_partitions(
    bq: bigquery.Client, traffic: tuple[TableRef, list[dict[str, Any]]]
) -> None:
    ref, rows = traffic
    key = [COLUMNS["s"], COLUMNS["i"]]
    lo = micros(datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC))
    hi = micros(datetime(2024, 1, 1, 0, 0, 3, 500000, tzinfo=UTC))
    parts = [1, 4, 6]
    expected = {
        r["row"]
        for r in rows
        if lo <= micros(r["ts"]) < hi and partition_of([r["s"], r["i"]], 8) in parts
    }
    assert 100 < len(expected) < 1500
    columns = [COLUMNS["row"], COLUMNS["s"], COLUMNS["ts"]]
    query = window_query(
        ref,
        columns,
        COLUMNS["ts"],
        lo,
        hi,
        partition_key=key,
        partitions=8,
        parts=parts,
    )
    got = run_query(bq, query, policy=POLICY, page_size=300).rows()
    assert sorted(r["row"] for r in got) == sorted(expected)  # no loss, no duplicate
    # parts omitted = every partition
    everything = window_query(ref, columns, COLUMNS["ts"], lo, hi, partition_key=key, partitions=8)
    assert "UNNEST" not in everything.sql
    in_window = {r["row"] for r in rows if lo <= micros(r["ts"]) < hi}
    assert {r["row"] for r in run_query(bq, everything, policy=POLICY).rows()} == in_window
    # the balance the original lacked: every partition gets a fair share of ms timestamps
    shares = Counter(partition_of([r["s"], r["i"]], 8) for r in rows)
    assert len(shares) == 8 and min(shares.values()) > 2000 / 8 * 0.6


def test_storage_read_of_a_window_matches_the_query(
    bq_emulator: Emulator, traffic: tuple[TableRef, list[dict[str, Any]]]
) -> None:
    ref, rows = traffic
    cfg = BigQueryConfig.model_validate(
        {
            "projectId": bq_emulator.project,
            "endpoint": bq_emulator.endpoint,
            "storageEndpoint": bq_emulator.grpc_endpoint,
        }
    )
    reader = StorageReader(make_read_client(cfg), bq_emulator.project, POLICY, max_streams=3)
    lo = micros(datetime(2024, 1, 1, 0, 0, 2, tzinfo=UTC))
    hi = micros(datetime(2024, 1, 1, 0, 0, 4, tzinfo=UTC))
    restriction = window_restriction(COLUMNS["ts"], lo, hi)  # BigQuery refuses FARM_FINGERPRINT
    batches = reader.read(ref, ["row", "ts"], restriction)
    kept = [keep_partitions(b, ["ts"], ["TIMESTAMP"], 4, [0, 3]) for b in batches]
    got = [r for b in kept for r in b.to_pylist()]
    expected = {
        r["row"]
        for r in rows
        if lo <= micros(r["ts"]) < hi and partition_of([r["ts"]], 4) in (0, 3)
    }
    assert sorted(r["row"] for r in got) == sorted(expected) and expected


@pytest.mark.parametrize("window_us", [1000, 250_000, 60_000_000])
def test_bucket_counts_per_partition_match_python(
    bq: bigquery.Client, traffic: tuple[TableRef, list[dict[str, Any]]], window_us: int
) -> None:
    """The validation's counts (`bucket_counts_query`) on a STRING partition key and a subset
    of partitions, over a grid of equal windows (the last one cut at `hi`)."""
    ref, rows = traffic
    key = [COLUMNS["s"]]
    lo = micros(datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC))
    hi = micros(datetime(2024, 1, 1, 0, 0, 4, tzinfo=UTC))
    edges = [*range(lo, hi, window_us), hi]
    query = bucket_counts_query(
        ref, COLUMNS["ts"], edges, partition_key=key, partitions=5, parts=[0, 2, 4]
    )
    got = {(r["p"], r["b"]): r["n"] for r in run_query(bq, query, policy=POLICY).rows()}
    expected: Counter[tuple[int, int]] = Counter()
    for r in rows:
        us = micros(r["ts"])
        p = partition_of([r["s"]], 5)
        if lo <= us < hi and p in (0, 2, 4):
            expected[(p, (us - lo) // window_us + 1)] += 1  # RANGE_BUCKET: window k is b = k+1
    assert got == dict(expected) and expected


@pytest.mark.parametrize(
    ("cursor", "lo", "hi", "in_range"),
    [
        (
            "dt",
            datetime(2024, 1, 1, 0, 0, 1),
            datetime(2024, 1, 1, 0, 0, 2),
            lambda r: datetime(2024, 1, 1, 0, 0, 1) <= r["dt"] < datetime(2024, 1, 1, 0, 0, 2),
        ),
        (
            "d",
            datetime(2024, 1, 1, 12),
            datetime(2024, 1, 3),  # DATE bounds round up to days
            lambda r: date(2024, 1, 2) <= r["d"] < date(2024, 1, 3),
        ),
        ("i", 7919 * 100, 7919 * 250, lambda r: 7919 * 100 <= r["i"] < 7919 * 250),
    ],
)
def test_datetime_date_and_int64_cursors(
    bq: bigquery.Client,
    traffic: tuple[TableRef, list[dict[str, Any]]],
    cursor: str,
    lo: Any,
    hi: Any,
    in_range: Any,
) -> None:
    ref, rows = traffic
    lo_v = lo if isinstance(lo, int) else micros(lo.replace(tzinfo=UTC))
    hi_v = hi if isinstance(hi, int) else micros(hi.replace(tzinfo=UTC))
    key = [COLUMNS["s"]]
    query = window_query(
        ref,
        [COLUMNS["row"]],
        COLUMNS[cursor],
        lo_v,
        hi_v,
        partition_key=key,
        partitions=3,
        parts=[0, 1, 2],
    )
    got = sorted(r["row"] for r in run_query(bq, query, policy=POLICY).rows())
    expected = sorted(r["row"] for r in rows if in_range(r))
    assert got == expected and expected
    ranges = cursor_range_query(ref, COLUMNS[cursor], partition_key=key, partitions=3, parts=[1])
    (summary,) = run_query(bq, ranges, policy=POLICY).rows()
    ones = [r for r in rows if partition_of([r["s"]], 3) == 1]
    assert summary["n"] == len(ones)
    counts = bucket_counts_query(
        ref, COLUMNS[cursor], [lo_v, hi_v], partition_key=key, partitions=3
    )
    assert sum(r["n"] for r in run_query(bq, counts, policy=POLICY).rows()) == len(expected)
