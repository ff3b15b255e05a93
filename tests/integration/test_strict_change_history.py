"""`APPENDS` and `CHANGES` in the strict local BigQuery, through the real client: commit times,
half-open ranges, the range rules, UPDATE visibility and billing (docs/strict-bigquery.md)."""

# ruff: noqa: S608 - test SQL over the tests' own tables

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core import exceptions
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery import SchemaField as F
from google.cloud.bigquery_storage_v1 import types
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
    BigQueryReadGrpcTransport,
)
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)

from harperbq.bigquery.read import StorageReader
from harperbq.bigquery.sql import TableRef
from harperbq.devstack.emulator import Emulator

MB = 1024 * 1024
MS = timedelta(milliseconds=1)
SCHEMA = [F("a", "INT64"), F("b", "STRING")]


@pytest.fixture
def dataset(bq: bigquery.Client) -> Iterator[str]:
    name = f"changes_{uuid.uuid4().hex[:8]}"
    bq.create_dataset(name)
    yield name
    bq.delete_dataset(name, delete_contents=True, not_found_ok=True)


def make_table(bq: bigquery.Client, dataset: str, name: str = "t") -> str:
    table_id = f"{bq.project}.{dataset}.{name}"
    bq.create_table(bigquery.Table(table_id, schema=SCHEMA))
    return table_id


def load(bq: bigquery.Client, table_id: str, first: int, count: int, text: str = "x") -> Any:
    """Load rows a = first..first+count-1 by a load job; returns the finished job."""
    data = pa.table(
        {"a": pa.array(range(first, first + count), pa.int64()), "b": pa.array([text] * count)}
    )
    buffer = io.BytesIO()
    pq.write_table(data, buffer)
    buffer.seek(0)
    config = bigquery.LoadJobConfig(source_format="PARQUET")
    job = bq.load_table_from_file(buffer, table_id, job_config=config, rewind=True)
    job.result()
    return bq.get_job(job.job_id)


def rows(bq: bigquery.Client, sql: str, **params: datetime | None) -> list[dict[str, Any]]:
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter(k, "TIMESTAMP", v) for k, v in params.items()
        ]
    )
    return [dict(r) for r in bq.query(sql, job_config=config).result()]


def query(bq: bigquery.Client, sql: str, **kwargs: Any) -> bigquery.QueryJob:
    job = bq.query(sql, job_config=bigquery.QueryJobConfig(**kwargs))
    if not kwargs.get("dry_run"):
        job.result()
    return job


def commit_times(found: list[dict[str, Any]]) -> dict[int, datetime]:
    return {r["a"]: r["_CHANGE_TIMESTAMP"] for r in found}


def test_load_and_streaming_rows_carry_their_commit_time(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    job = load(bq, table_id, 1, 2)
    before = datetime.now(UTC)
    assert bq.insert_rows_json(table_id, [{"a": 3, "b": "s"}]) == []
    after = datetime.now(UTC)

    found = rows(bq, f"SELECT * FROM APPENDS(TABLE `{table_id}`, NULL, NULL)")
    assert sorted(r["a"] for r in found) == [1, 2, 3]
    assert {r["_CHANGE_TYPE"] for r in found} == {"INSERT"}
    at = commit_times(found)
    assert at[1] == at[2]  # one load job, one commit
    assert job.started - MS <= at[1] <= job.ended + MS  # the job's times are in ms
    assert before <= at[3] <= after
    assert at[1] < at[3]


def test_ranges_are_half_open(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    load(bq, table_id, 1, 1)
    load(bq, table_id, 2, 1)
    load(bq, table_id, 3, 1)
    at = commit_times(rows(bq, f"SELECT * FROM APPENDS(TABLE `{table_id}`, NULL, NULL)"))
    sql = f"SELECT a FROM APPENDS(TABLE `{table_id}`, @lo, @hi) ORDER BY a"
    assert [r["a"] for r in rows(bq, sql, lo=at[1], hi=at[3])] == [1, 2]
    assert [r["a"] for r in rows(bq, sql, lo=at[2], hi=at[2])] == []
    assert [r["a"] for r in rows(bq, sql, lo=at[2], hi=None)] == [2, 3]
    assert [r["a"] for r in rows(bq, sql, lo=None, hi=at[2])] == [1]


def test_an_end_in_the_future_is_refused(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    with pytest.raises(exceptions.BadRequest, match="in the future"):
        query(
            bq,
            f"SELECT * FROM APPENDS(TABLE `{table_id}`, NULL, "
            "TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR))",
        )


def test_a_start_before_time_travel_is_refused(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    with pytest.raises(exceptions.BadRequest, match="time travel"):
        query(
            bq,
            f"SELECT * FROM APPENDS(TABLE `{table_id}`, "
            "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 8 DAY), NULL)",
        )
    inside = "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 6 DAY)"
    assert rows(bq, f"SELECT * FROM APPENDS(TABLE `{table_id}`, {inside}, NULL)") == []


def test_changes_needs_enable_change_history(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    load(bq, table_id, 1, 1)
    sql = f"SELECT a, _CHANGE_TYPE FROM CHANGES(TABLE `{table_id}`, NULL, NULL)"
    with pytest.raises(exceptions.BadRequest, match="enable_change_history"):
        query(bq, sql)
    query(bq, f"ALTER TABLE `{table_id}` SET OPTIONS (enable_change_history = TRUE)")
    assert rows(bq, sql) == [{"a": 1, "_CHANGE_TYPE": "INSERT"}]


def test_changes_over_more_than_a_day_is_refused(bq: bigquery.Client, dataset: str) -> None:
    query(bq, f"CREATE TABLE `{dataset}.t` (a INT64) OPTIONS (enable_change_history = TRUE)")
    with pytest.raises(exceptions.BadRequest, match="one day"):
        query(
            bq,
            f"SELECT * FROM CHANGES(TABLE `{dataset}.t`, "
            "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 25 HOUR), NULL)",
        )


def test_an_update_shows_in_changes_not_in_appends(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    query(bq, f"ALTER TABLE `{table_id}` SET OPTIONS (enable_change_history = TRUE)")
    load(bq, table_id, 1, 2)  # loaded, not streamed: DML may touch it at once
    query(bq, f"UPDATE `{table_id}` SET b = 'new' WHERE a = 1")
    query(bq, f"DELETE FROM `{table_id}` WHERE a = 2")

    order = "ORDER BY _CHANGE_TIMESTAMP, _CHANGE_TYPE = 'UPDATE', a"
    changed = rows(bq, f"SELECT a, b, _CHANGE_TYPE FROM CHANGES(TABLE `{table_id}`) {order}")
    assert changed == [
        {"a": 1, "b": "x", "_CHANGE_TYPE": "INSERT"},
        {"a": 2, "b": "x", "_CHANGE_TYPE": "INSERT"},
        {"a": 1, "b": "x", "_CHANGE_TYPE": "DELETE"},
        {"a": 1, "b": "new", "_CHANGE_TYPE": "UPDATE"},
        {"a": 2, "b": "x", "_CHANGE_TYPE": "DELETE"},
    ]
    appended = rows(bq, f"SELECT a, b, _CHANGE_TYPE FROM APPENDS(TABLE `{table_id}`) ORDER BY a")
    assert appended == [
        {"a": 1, "b": "x", "_CHANGE_TYPE": "INSERT"},
        {"a": 2, "b": "x", "_CHANGE_TYPE": "INSERT"},
    ]


def test_bytes_follow_the_rows_written_in_range_not_the_table(
    bq: bigquery.Client, dataset: str
) -> None:
    table_id = make_table(bq, dataset)
    big, text = 120_000, "y" * 98  # 100 bytes per STRING value: about 11.4 MB of `b`
    load(bq, table_id, 0, big, text)
    load(bq, table_id, big, 10, text)
    at = commit_times(rows(bq, f"SELECT a, _CHANGE_TIMESTAMP FROM APPENDS(TABLE `{table_id}`)"))
    small = f"SELECT b FROM APPENDS(TABLE `{table_id}`, TIMESTAMP '{at[big].isoformat()}')"
    whole = f"SELECT b FROM APPENDS(TABLE `{table_id}`)"

    job = query(bq, small)
    assert job.total_bytes_processed == 10 * 100
    assert job.total_bytes_billed == 10 * MB  # the floor
    assert query(bq, small, dry_run=True).total_bytes_processed == 10 * 100
    job = query(bq, whole)
    assert job.total_bytes_processed == (big + 10) * 100
    assert job.total_bytes_billed == 12 * MB
    with pytest.raises(exceptions.GoogleAPICallError, match="exceeded limit for bytes billed"):
        query(bq, whole, maximum_bytes_billed=11 * MB)


def test_the_datasets_time_travel_window_bounds_the_range(bq: bigquery.Client) -> None:
    name = f"changes_{uuid.uuid4().hex[:8]}"
    ds = bigquery.Dataset(f"{bq.project}.{name}")
    ds.max_time_travel_hours = 48
    bq.create_dataset(ds)
    try:
        table_id = make_table(bq, name)
        sql = f"SELECT * FROM APPENDS(TABLE `{table_id}`, @lo, NULL)"
        now = datetime.now(UTC)
        assert rows(bq, sql, lo=now - timedelta(hours=47)) == []
        with pytest.raises(exceptions.BadRequest, match="48 hours"):
            rows(bq, sql, lo=now - timedelta(hours=49))
        query(bq, f"ALTER SCHEMA `{bq.project}.{name}` SET OPTIONS (max_time_travel_hours = 96)")
        assert rows(bq, sql, lo=now - timedelta(hours=49)) == []
    finally:
        bq.delete_dataset(name, delete_contents=True, not_found_ok=True)


def test_rows_a_script_wrote_are_seen_late_not_lost(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    before = datetime.now(UTC)
    query(
        bq, f"INSERT INTO `{table_id}` VALUES (1, 'a'); INSERT INTO `{table_id}` VALUES (2, 'b');"
    )
    found = rows(bq, f"SELECT a, _CHANGE_TIMESTAMP FROM APPENDS(TABLE `{table_id}`) ORDER BY a")
    assert [r["a"] for r in found] == [1, 2]
    assert all(r["_CHANGE_TIMESTAMP"] >= before for r in found)  # never dated before the write


def test_a_recreated_table_starts_a_new_history(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    load(bq, table_id, 1, 1)
    query(bq, f"DROP TABLE `{table_id}`")
    query(bq, f"CREATE TABLE `{table_id}` (a INT64, b STRING)")
    load(bq, table_id, 2, 1)
    sql = f"SELECT a, b FROM APPENDS(TABLE `{table_id}`)"
    assert rows(bq, sql) == [{"a": 2, "b": "x"}]


def test_a_view_has_no_change_history(bq: bigquery.Client, dataset: str) -> None:
    table_id = make_table(bq, dataset)
    query(bq, f"CREATE VIEW `{dataset}.v` AS SELECT * FROM `{table_id}`")
    with pytest.raises(exceptions.BadRequest, match="regular BigQuery table"):
        query(bq, f"SELECT * FROM APPENDS(TABLE `{dataset}.v`)")


def test_truncate_and_merge_show_in_changes(bq: bigquery.Client, dataset: str) -> None:
    query(bq, f"CREATE TABLE `{dataset}.t` (a INT64) OPTIONS (enable_change_history = TRUE)")
    query(bq, f"INSERT INTO `{dataset}.t` VALUES (1), (2)")
    query(bq, f"TRUNCATE TABLE `{dataset}.t`")
    query(bq, f"INSERT INTO `{dataset}.t` VALUES (5)")
    query(
        bq,
        f"MERGE `{dataset}.t` T USING (SELECT 5 AS a UNION ALL SELECT 6) S ON T.a = S.a "
        "WHEN MATCHED THEN UPDATE SET a = 50 WHEN NOT MATCHED THEN INSERT (a) VALUES (S.a)",
    )
    order = "ORDER BY _CHANGE_TIMESTAMP, _CHANGE_TYPE = 'INSERT', _CHANGE_TYPE = 'UPDATE', a"
    found = rows(bq, f"SELECT a, _CHANGE_TYPE FROM CHANGES(TABLE `{dataset}.t`) {order}")
    assert [(r["a"], r["_CHANGE_TYPE"]) for r in found] == [
        (1, "INSERT"),
        (2, "INSERT"),
        (1, "DELETE"),
        (2, "DELETE"),
        (5, "INSERT"),
        (5, "DELETE"),
        (50, "UPDATE"),
        (6, "INSERT"),
    ]
    appended = rows(bq, f"SELECT a FROM APPENDS(TABLE `{dataset}.t`) ORDER BY a")
    assert [r["a"] for r in appended] == [1, 2, 5, 6]


def test_a_storage_write_append_carries_its_commit_time(
    bq: bigquery.Client, bq_emulator: Emulator, dataset: str
) -> None:
    table_id = make_table(bq, dataset)
    channel = grpc.insecure_channel(bq_emulator.grpc_endpoint)
    writer = bigquery_storage_v1.BigQueryWriteClient(
        transport=BigQueryWriteGrpcTransport(channel=channel)
    )
    batch = pa.record_batch({"a": pa.array([7, 8], pa.int64()), "b": pa.array(["w", "w"])})
    request = types.AppendRowsRequest(
        write_stream=f"projects/{bq.project}/datasets/{dataset}/tables/t/streams/_default",
        arrow_rows=types.AppendRowsRequest.ArrowData(
            writer_schema=types.ArrowSchema(
                serialized_schema=batch.schema.serialize().to_pybytes()
            ),
            rows=types.ArrowRecordBatch(serialized_record_batch=batch.serialize().to_pybytes()),
        ),
    )
    before = datetime.now(UTC)
    responses = list(writer.append_rows(iter([request])))
    after = datetime.now(UTC)
    channel.close()
    assert len(responses) == 1 and not responses[0].error.code
    found = rows(bq, f"SELECT a, _CHANGE_TIMESTAMP FROM APPENDS(TABLE `{table_id}`) ORDER BY a")
    assert [r["a"] for r in found] == [7, 8]
    at = {r["_CHANGE_TIMESTAMP"] for r in found}
    assert len(at) == 1  # one append, one commit
    assert before <= at.pop() <= after


def _read_as_of(bq_emulator: Emulator, table_id: str, at: datetime) -> list[int]:
    """Column `a` of the table as of `at`, through the Storage Read API (`snapshot_time`)."""
    channel = grpc.insecure_channel(bq_emulator.grpc_endpoint)
    try:
        client = bigquery_storage_v1.BigQueryReadClient(
            transport=BigQueryReadGrpcTransport(channel=channel)
        )
        project, dataset, table = table_id.split(".")
        reader = StorageReader(client, project)
        batches = list(reader.read(TableRef(project, dataset, table), ["a"], "", at))
    finally:
        channel.close()
    return sorted(v for b in batches for v in b.column(0).to_pylist())


def test_a_snapshot_time_reads_the_table_as_it_was(
    bq: bigquery.Client, bq_emulator: Emulator, dataset: str
) -> None:
    table_id = make_table(bq, dataset)
    first = load(bq, table_id, 0, 3)
    after_first = first.ended + MS
    query(bq, f"UPDATE `{table_id}` SET a = a + 100 WHERE a = 1")
    query(bq, f"DELETE FROM `{table_id}` WHERE a = 2")
    load(bq, table_id, 10, 2)
    now = datetime.now(UTC)
    assert _read_as_of(bq_emulator, table_id, after_first) == [0, 1, 2]
    assert _read_as_of(bq_emulator, table_id, now) == [0, 10, 11, 101]
    # Before the table existed, in the future, or before time travel: refused as BigQuery does.
    with pytest.raises(exceptions.InvalidArgument, match="cannot read before"):
        _read_as_of(bq_emulator, table_id, first.created - timedelta(days=1))
    with pytest.raises(exceptions.InvalidArgument, match="in the future"):
        _read_as_of(bq_emulator, table_id, now + timedelta(hours=1))


def test_a_job_id_is_used_once(bq: bigquery.Client, dataset: str) -> None:
    """BigQuery refuses a second job with an existing id (the change feed's shared window
    reads rely on it): 409, and the first job's result stays readable by id."""
    table_id = make_table(bq, dataset)
    load(bq, table_id, 0, 5)
    job_id = f"once_{uuid.uuid4().hex}"
    sql = f"SELECT COUNT(*) AS n FROM `{table_id}`"
    bq.query(sql, job_id=job_id, job_retry=None).result()
    with pytest.raises(exceptions.Conflict, match="Already Exists"):
        bq.query(sql, job_id=job_id, job_retry=None).result()
    again = bq.get_job(job_id)
    assert isinstance(again, bigquery.QueryJob)
    assert [dict(r) for r in again.result()] == [{"n": 5}]


def test_a_datasets_time_travel_set_by_ddl_is_in_its_resource(bq: bigquery.Client) -> None:
    name = f"travel_{uuid.uuid4().hex[:8]}"
    query(bq, f"CREATE SCHEMA `{bq.project}.{name}` OPTIONS (max_time_travel_hours = 72)")
    try:
        # The REST API encodes int64 as a string, and the client passes it on as is.
        assert int(bq.get_dataset(f"{bq.project}.{name}").max_time_travel_hours) == 72
    finally:
        bq.delete_dataset(name, delete_contents=True, not_found_ok=True)
