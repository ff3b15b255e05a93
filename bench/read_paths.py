"""Read-path benchmark: query result pages vs the Storage Read API, on the local emulator.

Loads N rows of AIS-like positions with one Parquet load job, then reads them all through
`run_query(...).batches()` and through `StorageReader.read(...)`, and converts one pass to Harper
records. Prints one JSON object, then one summary line. Both services share the machine's cores:
compare the ratio, not the absolute rates.

    .venv/bin/python bench/read_paths.py [--rows 1000000] [--page-size 10000] [--streams 4]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from google.cloud.bigquery import client as bq_client_module

from harperbq.bigquery.client import make_client, make_read_client
from harperbq.bigquery.read import StorageReader, run_query
from harperbq.bigquery.sql import Query, TableRef, columns_from_schema, select_list
from harperbq.bigquery.types import records_from_batch
from harperbq.config import BigQueryConfig
from harperbq.devstack import emulator
from harperbq.retry import RetryPolicy

# Emulator bug (harness only, never product code): multipart uploads with content type */* fail.
bq_client_module._GENERIC_CONTENT_TYPE = "application/octet-stream"

SCHEMA = [
    F("timestamp", "TIMESTAMP"),
    F("mmsi", "INT64"),
    F("vessel_name", "STRING"),
    F("latitude", "FLOAT64"),
    F("longitude", "FLOAT64"),
    F("speed_knots", "FLOAT64"),
    F("heading", "INT64"),
    F("course", "FLOAT64"),
]


def positions(rows: int) -> pa.Table:
    rng = np.random.default_rng(42)
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    mmsi = rng.integers(200_000_000, 775_999_999, rows)
    return pa.table(
        {
            "timestamp": pa.array(start + np.arange(rows) * 86_400, pa.timestamp("us", tz="UTC")),
            "mmsi": pa.array(mmsi, pa.int64()),
            "vessel_name": pa.array([f"VESSEL {m % 100_000:05d}" for m in mmsi]),
            "latitude": pa.array(rng.uniform(-80, 80, rows)),
            "longitude": pa.array(rng.uniform(-180, 180, rows)),
            "speed_knots": pa.array(rng.uniform(0, 25, rows)),
            "heading": pa.array(rng.integers(0, 360, rows), pa.int64()),
            "course": pa.array(rng.uniform(0, 360, rows)),
        }
    )


def load(client: bigquery.Client, ref: TableRef, table: pa.Table) -> float:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    started = time.perf_counter()
    created = client.create_table(bigquery.Table(str(ref), schema=SCHEMA))
    config = bigquery.LoadJobConfig(source_format="PARQUET", schema=SCHEMA)
    client.load_table_from_file(buffer, created, job_config=config).result(timeout=600)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="harperbq-bench-") as tmp:
        emu = emulator.new_emulator(Path(tmp), project="bench")
        emulator.start(emu)
        try:
            result = run(emu, args.rows, args.page_size, args.streams)
        finally:
            emulator.stop(emu)
    print(json.dumps(result, indent=2))
    print(
        f"read_paths: {result['rows']:,} rows | query pages {result['query']['rows_per_s']:,.0f}"
        f" rows/s | storage read API {result['storage']['rows_per_s']:,.0f} rows/s"
        f" ({result['storage']['streams']} streams) | storage/query "
        f"{result['storage_over_query']:.1f}x | convert {result['convert_rows_per_s']:,.0f} rows/s"
    )
    return 0 if result["query"]["rows"] == result["storage"]["rows"] == args.rows else 1


def run(emu: emulator.Emulator, rows: int, page_size: int, streams: int) -> dict[str, Any]:
    cfg = BigQueryConfig.model_validate(
        {"projectId": emu.project, "endpoint": emu.endpoint, "storageEndpoint": emu.grpc_endpoint}
    )
    client = make_client(cfg)
    client.create_dataset("bench")
    ref = TableRef(emu.project, "bench", "positions")
    load_s = load(client, ref, positions(rows))
    columns = columns_from_schema(SCHEMA)
    policy = RetryPolicy(max_attempts=3, initial_delay_s=0.5)

    started = time.perf_counter()
    query = Query(f"SELECT {select_list(columns)} FROM {ref.sql}")  # noqa: S608
    read = run_query(client, query, policy=policy, page_size=page_size)
    query_rows = pages = largest = 0
    first_batch: pa.RecordBatch | None = None
    for batch in read.batches():
        query_rows += batch.num_rows
        pages += 1
        largest = max(largest, batch.num_rows)
        first_batch = first_batch or batch
    query_s = time.perf_counter() - started

    reader = StorageReader(make_read_client(cfg), emu.project, policy, max_streams=streams)
    started = time.perf_counter()
    storage_rows = 0
    converted = 0
    convert_s = 0.0
    for batch in reader.read(ref, [c.name for c in columns]):
        storage_rows += batch.num_rows
        tick = time.perf_counter()
        records, errors = records_from_batch(batch, columns)
        convert_s += time.perf_counter() - tick
        converted += len(records) + len(errors)
    storage_s = time.perf_counter() - started - convert_s

    query_rate = query_rows / query_s if query_s else 0.0
    storage_rate = storage_rows / storage_s if storage_s else 0.0
    return {
        "rows": rows,
        "columns": len(columns),
        "load_s": round(load_s, 2),
        "load_rows_per_s": round(rows / load_s),
        "query": {
            "rows": query_rows,
            "seconds": round(query_s, 2),
            "rows_per_s": round(query_rate),
            "pages": pages,
            "page_size": page_size,
            "largest_page_rows": largest,
            "bytes_billed": read.stats.bytes_billed,
        },
        "storage": {
            "rows": storage_rows,
            "seconds": round(storage_s, 2),
            "rows_per_s": round(storage_rate),
            "streams": reader.last.streams,
            "batches": reader.last.batches,
        },
        "storage_over_query": round(storage_rate / query_rate, 2) if query_rate else None,
        "convert_rows_per_s": round(converted / convert_s) if convert_s else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


if __name__ == "__main__":
    sys.exit(main())
