"""The strict local BigQuery through the real clients: billing, byte limits, Storage Read
restrictions and estimates, and the streaming-buffer DML rule (docs/strict-bigquery.md)."""

import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core import exceptions
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from google.cloud.bigquery_storage_v1 import types as storage_types

from harperbq.bigquery import server_clock
from harperbq.bigquery.client import make_read_client
from harperbq.config import BigQueryConfig
from harperbq.devstack.emulator import Emulator

MB = 1024 * 1024
DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 3 * 1440
SCHEMA = [F("ts", "TIMESTAMP"), F("mmsi", "INT64"), F("name", "STRING")]
ROW_BYTES = {"ts": 8, "mmsi": 8, "name": 2 + 6}


@pytest.fixture
def dataset(bq: bigquery.Client) -> Iterator[str]:
    name = f"strict_{uuid.uuid4().hex[:8]}"
    bq.create_dataset(name)
    yield name
    bq.delete_dataset(name, delete_contents=True, not_found_ok=True)


def make_table(bq: bigquery.Client, dataset: str, name: str = "positions") -> str:
    table_id = f"{bq.project}.{dataset}.{name}"
    table = bigquery.Table(table_id, schema=SCHEMA)
    table.time_partitioning = bigquery.TimePartitioning(field="ts")
    table.clustering_fields = ["mmsi"]
    bq.create_table(table)
    return table_id


def load_rows(bq: bigquery.Client, table_id: str) -> None:
    data = pa.table(
        {
            "ts": pa.array(
                [DAY0 + timedelta(minutes=i) for i in range(ROWS)], pa.timestamp("us", "UTC")
            ),
            "mmsi": pa.array([i % 50 for i in range(ROWS)], pa.int64()),
            "name": pa.array(["vessel"] * ROWS),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(data, buffer)
    buffer.seek(0)
    config = bigquery.LoadJobConfig(source_format="PARQUET")
    bq.load_table_from_file(buffer, table_id, job_config=config, size=None, rewind=True).result()


def window(table_id: str) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
    sql = f"SELECT ts, name FROM `{table_id}` WHERE ts >= @lo AND ts < @hi"  # noqa: S608
    lo = DAY0 + timedelta(days=1, hours=3)
    return sql, [
        bigquery.ScalarQueryParameter("lo", "TIMESTAMP", lo),
        bigquery.ScalarQueryParameter("hi", "TIMESTAMP", lo + timedelta(minutes=10)),
    ]


def test_emulator_runs_strict_by_default(bq_emulator: Emulator) -> None:
    assert bq_emulator.strict


def test_query_jobs_report_bytes_of_the_pruned_partitions(
    bq: bigquery.Client, dataset: str
) -> None:
    table_id = make_table(bq, dataset)
    load_rows(bq, table_id)
    sql, params = window(table_id)
    job = bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params))
    rows = list(job.result())
    assert len(rows) == 10
    # ten minutes selected, one day partition billed: the documented behaviour
    assert job.total_bytes_processed == 1440 * (ROW_BYTES["ts"] + ROW_BYTES["name"])
    assert job.total_bytes_billed == 10 * MB  # the minimum

    again = bq.get_job(job.job_id)
    assert isinstance(again, bigquery.QueryJob)
    assert again.total_bytes_billed == 10 * MB


def test_dry_run_reports_the_upper_bound_and_bills_nothing(
    bq: bigquery.Client, dataset: str
) -> None:
    table_id = make_table(bq, dataset)
    load_rows(bq, table_id)
    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
    job = bq.query(f"SELECT name FROM `{table_id}` WHERE mmsi = 3", job_config=config)  # noqa: S608
    assert job.total_bytes_processed == ROWS * (ROW_BYTES["name"] + ROW_BYTES["mmsi"])


def test_maximum_bytes_billed_fails_the_query_with_bigquerys_error(
    bq: bigquery.Client, dataset: str
) -> None:
    table_id = make_table(bq, dataset)
    load_rows(bq, table_id)
    config = bigquery.QueryJobConfig(maximum_bytes_billed=5 * MB)
    job = bq.query(f"SELECT name FROM `{table_id}`", job_config=config)  # noqa: S608
    with pytest.raises(exceptions.GoogleAPICallError) as caught:
        job.result()
    assert job.error_result is not None
    assert job.error_result["reason"] == "bytesBilledLimitExceeded"
    assert "Query exceeded limit for bytes billed: 5242880. 10485760 or higher required." in str(
        caught.value
    )
    ok = bq.query(
        f"SELECT name FROM `{table_id}`",  # noqa: S608
        job_config=bigquery.QueryJobConfig(maximum_bytes_billed=10 * MB),
    )
    assert len(list(ok.result())) == ROWS


def read_config(emu: Emulator) -> BigQueryConfig:
    return BigQueryConfig.model_validate(
        {"projectId": emu.project, "endpoint": emu.endpoint, "storageEndpoint": emu.grpc_endpoint}
    )


def session(emu: Emulator, table_id: str, restriction: str) -> storage_types.ReadSession:
    project, dataset, table = table_id.split(".")
    client = make_read_client(read_config(emu))
    request = storage_types.ReadSession(
        table=f"projects/{project}/datasets/{dataset}/tables/{table}",
        data_format=storage_types.DataFormat.ARROW,
        read_options=storage_types.ReadSession.TableReadOptions(
            selected_fields=["ts", "name"], row_restriction=restriction
        ),
    )
    return client.create_read_session(
        parent=f"projects/{project}", read_session=request, max_stream_count=1
    )


def test_storage_read_refuses_a_complex_row_restriction(
    bq: bigquery.Client, bq_emulator: Emulator, dataset: str
) -> None:
    table_id = make_table(bq, dataset)
    load_rows(bq, table_id)
    with pytest.raises(exceptions.InvalidArgument, match="too complex to be processed"):
        session(bq_emulator, table_id, "MOD(FARM_FINGERPRINT(name), 4) IN (0, 1)")


def test_storage_read_estimates_bytes_after_partition_pruning(
    bq: bigquery.Client, bq_emulator: Emulator, dataset: str
) -> None:
    table_id = make_table(bq, dataset)
    load_rows(bq, table_id)
    restriction = (
        "ts >= TIMESTAMP '2026-11-02 03:00:00+00' AND ts < TIMESTAMP '2026-11-02 03:10:00+00'"
    )
    found = session(bq_emulator, table_id, restriction)
    assert found.estimated_total_bytes_scanned == 1440 * (ROW_BYTES["ts"] + ROW_BYTES["name"])
    whole = session(bq_emulator, table_id, "")
    assert whole.estimated_total_bytes_scanned == ROWS * (ROW_BYTES["ts"] + ROW_BYTES["name"])


def test_dml_on_recently_streamed_rows_fails_as_bigquery_does(
    bq: bigquery.Client, dataset: str
) -> None:
    loaded = make_table(bq, dataset, "loaded")
    load_rows(bq, loaded)
    bq.query(f"DELETE FROM `{loaded}` WHERE TRUE").result()  # noqa: S608 - load jobs are fine

    streamed = make_table(bq, dataset, "streamed")
    errors = bq.insert_rows_json(streamed, [{"ts": DAY0.isoformat(), "mmsi": 1, "name": "vessel"}])
    assert errors == []
    job = bq.query(f"DELETE FROM `{streamed}` WHERE TRUE")  # noqa: S608
    with pytest.raises(exceptions.BadRequest, match="would affect rows in the streaming buffer"):
        job.result()
    count = list(bq.query(f"SELECT COUNT(*) AS n FROM `{streamed}`").result())  # noqa: S608
    assert count[0]["n"] == 1

    # drop and recreate: the new table has no streaming buffer
    bq.delete_table(streamed)
    make_table(bq, dataset, "streamed")
    bq.query(f"DELETE FROM `{streamed}` WHERE TRUE").result()  # noqa: S608


def test_bigquery_clock_is_read_for_free(bq: bigquery.Client) -> None:
    """`SELECT CURRENT_TIMESTAMP()` references no table: BigQuery bills it 0 bytes (no 10 MB
    minimum), so the feed's server clock (`bigquery.server_clock`) costs nothing."""
    job = bq.query(server_clock.QUERY)
    (now,) = next(iter(job.result()))
    assert isinstance(now, datetime)
    assert abs(now.timestamp() - time.time()) < 30  # the emulator runs on this machine's clock
    assert job.total_bytes_billed == 0
    assert abs(server_clock.ask_bigquery(bq) - time.time()) < 30
