"""Both readers against the emulator: every row exactly once, in bounded pages, lazily."""

import io
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from google.api_core import exceptions
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from requests.adapters import HTTPAdapter

from harperbq.bigquery.client import make_client, make_read_client
from harperbq.bigquery.read import OPERATION_LABEL, StorageReader, run_query
from harperbq.bigquery.retry import PolicyRetry
from harperbq.bigquery.sql import Column, Query, TableRef, window_query
from harperbq.config import BigQueryConfig
from harperbq.devstack.emulator import Emulator
from harperbq.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=2, initial_delay_s=0.1, total_timeout_s=30)
RETRY = PolicyRetry(POLICY)
ROWS = 2500
WIDE_ROWS = 12_000
START = datetime(2024, 1, 1, tzinfo=UTC)
SCHEMA = [F("id", "INT64"), F("ts", "TIMESTAMP"), F("name", "STRING")]


class CountingAdapter(HTTPAdapter):
    """Counts the requests that reach the emulator."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(f"{request.method} {request.url}")
        return super().send(request, *args, **kwargs)

    def count(self, fragment: str) -> int:
        return sum(fragment in s for s in self.seen)


def emulator_config(emu: Emulator, **extra: Any) -> BigQueryConfig:
    return BigQueryConfig.model_validate(
        {
            "projectId": emu.project,
            "endpoint": emu.endpoint,
            "storageEndpoint": emu.grpc_endpoint,
            **extra,
        }
    )


def load(bq: bigquery.Client, ref: TableRef, data: pa.Table, schema: list[F]) -> None:
    created = bq.create_table(bigquery.Table(str(ref), schema=schema), retry=RETRY)
    buffer = io.BytesIO()
    pq.write_table(data, buffer)
    buffer.seek(0)
    config = bigquery.LoadJobConfig(source_format="PARQUET", schema=schema)
    bq.load_table_from_file(buffer, created, job_config=config).result(timeout=60, retry=RETRY)


@pytest.fixture(scope="module")
def dataset(bq: bigquery.Client) -> Iterator[str]:
    name = f"read_{uuid.uuid4().hex[:8]}"
    bq.create_dataset(name, retry=RETRY)
    yield name
    bq.delete_dataset(name, delete_contents=True, not_found_ok=True, retry=RETRY)


@pytest.fixture(scope="module")
def table(bq: bigquery.Client, dataset: str) -> TableRef:
    ref = TableRef(bq.project, dataset, "positions")
    data = pa.table(
        {
            "id": pa.array(range(ROWS), pa.int64()),
            "ts": pa.array(
                [START + timedelta(seconds=n // 5) for n in range(ROWS)],
                pa.timestamp("us", tz="UTC"),
            ),
            "name": pa.array([f"vessel {n}" for n in range(ROWS)]),
        }
    )
    load(bq, ref, data, SCHEMA)
    return ref


@pytest.fixture(scope="module")
def wide(bq: bigquery.Client, dataset: str) -> TableRef:
    """Over 1 MB: the emulator (like BigQuery) only splits such tables into several streams."""
    ref = TableRef(bq.project, dataset, "wide")
    data = pa.table(
        {
            "id": pa.array(range(WIDE_ROWS), pa.int64()),
            "payload": pa.array([f"{n:08d}" + "x" * 120 for n in range(WIDE_ROWS)]),
        }
    )
    load(bq, ref, data, [F("id", "INT64"), F("payload", "STRING")])
    return ref


def select_all(ref: TableRef) -> Query:
    return Query(f"SELECT `id`, `ts`, `name` FROM {ref.sql}")  # noqa: S608


def test_query_pages_are_bounded_and_fetched_lazily(bq_emulator: Emulator, table: TableRef) -> None:
    adapter = CountingAdapter()
    session = requests.Session()
    session.mount("http://", adapter)
    client = make_client(emulator_config(bq_emulator), http=session)
    result = run_query(client, select_all(table), policy=POLICY, page_size=400)
    assert result.stats.job_id and result.stats.total_rows == ROWS
    assert result.stats.bytes_billed == 10 * 1024 * 1024  # BigQuery's 10 MB minimum per query
    pages = result.batches()
    first = next(pages)
    fetched_after_first = adapter.count("/queries/")
    sizes = [first.num_rows] + [b.num_rows for b in pages]
    assert max(sizes) <= 400 and sum(sizes) == ROWS and len(sizes) >= ROWS // 400
    assert adapter.count("/queries/") >= fetched_after_first + len(sizes) - 2  # page by page


def test_query_rows_for_small_results(bq: bigquery.Client, table: TableRef) -> None:
    query = Query(f"SELECT COUNT(*) AS n, MAX(`id`) AS top FROM {table.sql}")  # noqa: S608
    assert run_query(bq, query, policy=POLICY).rows() == [{"n": ROWS, "top": ROWS - 1}]


def test_storage_reader_reads_every_stream_once(bq_emulator: Emulator, wide: TableRef) -> None:
    reader = StorageReader(
        make_read_client(emulator_config(bq_emulator)), bq_emulator.project, POLICY, max_streams=4
    )
    reader.max_batch_rows = 1000
    batches = list(reader.read(wide, ["payload", "id"]))
    assert all(b.schema.names == ["payload", "id"] for b in batches)  # the order asked for
    # every page full but the last: one upsert of Harper's chunk size each, no short ones
    assert [b.num_rows for b in batches[:-1]] == [1000] * (len(batches) - 1)
    assert 0 < batches[-1].num_rows <= 1000 and len(batches) == -(-WIDE_ROWS // 1000)
    ids = [i for b in batches for i in b.column("id").to_pylist()]
    assert sorted(ids) == list(range(WIDE_ROWS))
    assert reader.last.streams == 4 and reader.last.rows == WIDE_ROWS


def test_storage_reader_stops_its_threads_when_the_consumer_stops(
    bq_emulator: Emulator, wide: TableRef
) -> None:
    before = threading.active_count()
    reader = StorageReader(
        make_read_client(emulator_config(bq_emulator)),
        bq_emulator.project,
        POLICY,
        max_streams=4,
        queue_batches=1,
    )
    stream = reader.read(wide, ["id", "payload"])
    next(stream)
    assert any(t.name.startswith("storage-read-") for t in threading.enumerate())
    stream.close()
    assert not any(t.name.startswith("storage-read-") for t in threading.enumerate())
    assert threading.active_count() <= before + 1  # the gRPC channel may keep one thread


def test_storage_reader_fails_at_once_on_a_missing_table(bq_emulator: Emulator) -> None:
    reader = StorageReader(
        make_read_client(emulator_config(bq_emulator)), bq_emulator.project, POLICY
    )
    missing = TableRef(bq_emulator.project, "nowhere", "nothing")
    with pytest.raises(exceptions.GoogleAPICallError) as caught:
        list(reader.read(missing, ["id"]))
    assert "nothing" in str(caught.value)


def test_client_from_config_labels_jobs_and_sets_the_bytes_guard(
    bq_emulator: Emulator, table: TableRef
) -> None:
    cfg = emulator_config(
        bq_emulator, jobLabels={"team": "maritime"}, maximumBytesBilled=10**12, location="EU"
    )
    client = make_client(cfg)
    assert client.location == "EU"
    ts = Column("ts", "TIMESTAMP")
    query = window_query(
        table, [Column("id", "INT64"), ts], ts, 0, 2**50, partition_key=[ts], partitions=1
    )
    job = run_query(client, query, policy=POLICY, operation="read_window").job
    assert job.labels == {"app": "harperbq", "team": "maritime", OPERATION_LABEL: "read_window"}
    assert job.maximum_bytes_billed == 10**12
    dry = run_query(client, query, policy=POLICY, dry_run=True)
    assert dry.stats.bytes_billed == 0 and sum(b.num_rows for b in dry.batches()) == 0
