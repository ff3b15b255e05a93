"""Writing rows to BigQuery: tables, Parquet load jobs (default) and streaming inserts.

Quota: BigQuery allows about 1 500 table operations (load jobs included) per table per day. Live
generation flushes one load job per table at most every `LOAD_FLUSH_MIN_S` (<= 720 a day) and a
history fill spreads its rows over at most `MAX_JOBS_PER_FILL` jobs per table, so a day with a
restart and a backfill stays below 1 000 jobs per table whatever the configured rate.
"""

import contextlib
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from harperbq.bigquery.retry import call_with_retry
from harperbq.retry import RetryPolicy
from harperbq.synth.params import SynthParams
from harperbq.synth.tables import SPECS, TableSpec, arrow_schema

LOAD_FLUSH_MIN_S = 120.0
MAX_JOBS_PER_FILL = 200
STREAM_CHUNK_ROWS = 500
LABEL_PREFIX = "harperbq-synth-"
MODEL_VERSION = "1"


class GenerationMismatchError(RuntimeError):
    """The tables hold rows generated with other parameters than the ones given."""


def table_ids(client: bigquery.Client, params: SynthParams) -> dict[str, str]:
    """kind -> fully qualified table id."""
    names = dict(zip(("positions", "events", "metadata"), params.tables, strict=True))
    return {kind: f"{client.project}.{params.dataset}.{name}" for kind, name in names.items()}


def generation_labels(params: SynthParams) -> dict[str, str]:
    """What decides the rows, as BigQuery labels (lowercase, digits, dashes only)."""
    return {
        f"{LABEL_PREFIX}model": MODEL_VERSION,
        f"{LABEL_PREFIX}seed": str(params.seed),
        f"{LABEL_PREFIX}vessels": str(params.total_vessels),
        f"{LABEL_PREFIX}sampling-ms": str(round(params.sampling_interval_s * 1000)),
        f"{LABEL_PREFIX}late-ppm": str(round(params.late_fraction * 1e6)),
        f"{LABEL_PREFIX}late-max-s": str(round(params.late_max_s)),
        f"{LABEL_PREFIX}dup-ppm": str(round(params.duplicate_fraction * 1e6)),
    }


def _new_table(table_id: str, spec: TableSpec, params: SynthParams) -> bigquery.Table:
    table = bigquery.Table(table_id, schema=spec.schema)
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY,
        field=spec.time_column,
        expiration_ms=params.retention_days * 86_400_000,
    )
    table.clustering_fields = [spec.mmsi_column]
    table.labels = generation_labels(params)
    table.description = (
        "Synthetic AIS data written by harperbq synth "
        f"(seed {params.seed}, {params.total_vessels} vessels)."
    )
    return table


def ensure_tables(client: bigquery.Client, params: SynthParams) -> None:
    """Create the dataset and the three tables if missing; refuse tables of another generation."""
    dataset = bigquery.Dataset(f"{client.project}.{params.dataset}")
    if params.location:
        dataset.location = params.location
    client.create_dataset(dataset, exists_ok=True)
    check_generation(client, params)
    ids = table_ids(client, params)
    for spec in SPECS:
        client.create_table(_new_table(ids[spec.kind], spec, params), exists_ok=True)


def check_generation(client: bigquery.Client, params: SynthParams) -> None:
    expected = generation_labels(params)
    for kind, table_id in table_ids(client, params).items():
        try:
            labels = client.get_table(table_id).labels or {}
        except NotFound:
            continue
        recorded = {k: v for k, v in labels.items() if k.startswith(LABEL_PREFIX)}
        if recorded and recorded != expected:
            diff = ", ".join(
                f"{k.removeprefix(LABEL_PREFIX)}: table {recorded.get(k)} vs config {v}"
                for k, v in expected.items()
                if recorded.get(k) != v
            )
            raise GenerationMismatchError(
                f"{table_id} ({kind}) holds rows generated with other parameters ({diff}). "
                "Adding rows would mix two fleets: run `harperbq synth reset DAYS` to regenerate, "
                "or set the config back to the table's values."
            )


def existing_tables(client: bigquery.Client, params: SynthParams) -> dict[str, bigquery.Table]:
    out = {}
    for kind, table_id in table_ids(client, params).items():
        with contextlib.suppress(NotFound):
            out[kind] = client.get_table(table_id)
    return out


def recreate_empty(client: bigquery.Client, table: bigquery.Table) -> int:
    """Drop `table` and create it again with the same definition; the rows it held.

    Why not `DELETE ... WHERE TRUE`: BigQuery refuses DML over rows streamed in the last 30
    minutes, and a DELETE bills the whole table. Dropping is free and always allowed. Caveat on
    real BigQuery: streaming inserts into a just-recreated table can be dropped for a few
    minutes (https://cloud.google.com/bigquery/docs/streaming-data-into-bigquery#metadata),
    which is why the synthesizer writes with load jobs unless told otherwise.
    """
    buffered = table.streaming_buffer.estimated_rows if table.streaming_buffer else 0
    rows = int(table.num_rows or 0) + int(buffered or 0)
    fresh = bigquery.Table(table.reference, schema=table.schema)
    fresh.time_partitioning = table.time_partitioning
    fresh.range_partitioning = table.range_partitioning
    fresh.clustering_fields = table.clustering_fields
    fresh.require_partition_filter = table.require_partition_filter
    fresh.labels = dict(table.labels or {})
    fresh.description = table.description
    client.delete_table(table.reference, not_found_ok=True)
    client.create_table(fresh)
    return rows


def _load_file(client: bigquery.Client, table_id: str, stream: Any) -> None:
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
    )
    # size=None: a resumable upload, which also works where multipart uploads of small bodies
    # are refused (the local emulator).
    # A failed load job wrote nothing (loads are atomic), so a transient failure is retried whole.
    call_with_retry(
        lambda: client.load_table_from_file(
            stream, table_id, job_config=config, size=None, rewind=True
        ).result(),
        RetryPolicy(),
        operation="synth.load",
    )


def load_arrow(client: bigquery.Client, table_id: str, table: pa.Table) -> int:
    """One Parquet load job for an in-memory Arrow table; returns rows loaded."""
    if table.num_rows == 0:
        return 0
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    buffer.seek(0)
    _load_file(client, table_id, buffer)
    return int(table.num_rows)


class ParquetSpool:
    """Arrow batches appended to a temporary Parquet file, loaded as one job (bounded memory)."""

    def __init__(self, spec: TableSpec, directory: str | None = None) -> None:
        self.spec = spec
        self.rows = 0
        handle, name = tempfile.mkstemp(
            prefix=f"harperbq-{spec.kind}-", suffix=".parquet", dir=directory
        )
        os.close(handle)
        self.path = Path(name)
        self._writer: pq.ParquetWriter | None = None

    def append(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.path, arrow_schema(self.spec.schema), compression="zstd"
            )
        self._writer.write_table(table)
        self.rows += table.num_rows

    def load(self, client: bigquery.Client, table_id: str) -> int:
        """Load what was spooled (one job) and start empty again."""
        if self._writer is None:
            return 0
        self._writer.close()
        self._writer = None
        with self.path.open("rb") as stream:
            _load_file(client, table_id, stream)
        loaded, self.rows = self.rows, 0
        return loaded

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.path.unlink(missing_ok=True)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def insert_ids(spec: TableSpec, table: pa.Table) -> list[str]:
    """Deterministic insert ids: a retried insert is deduplicated, an intended duplicate is not."""
    mmsi = table[spec.mmsi_column].to_pylist()
    when = table[spec.time_column].cast(pa.int64()).to_numpy()
    ids: list[str] = []
    previous = None
    copy = 0
    for m, t in zip(mmsi, when, strict=True):
        key = f"{spec.kind}-{m}-{int(t)}"
        copy = copy + 1 if key == previous else 0
        previous = key
        ids.append(f"{key}-{copy}")
    return ids


def stream_arrow(client: bigquery.Client, table_id: str, spec: TableSpec, table: pa.Table) -> int:
    """Streaming inserts (insertAll) in chunks, with insert ids; raises on any row error."""
    if table.num_rows == 0:
        return 0
    ids = insert_ids(spec, table)
    rows = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
    for start in range(0, len(rows), STREAM_CHUNK_ROWS):
        chunk = slice(start, start + STREAM_CHUNK_ROWS)

        # Insert ids make a repeated chunk a no-op: BigQuery drops rows whose id it has seen.
        def insert(part: slice = chunk) -> Sequence[dict[str, Any]]:
            return client.insert_rows_json(table_id, rows[part], row_ids=ids[part])

        errors = call_with_retry(insert, RetryPolicy(), operation="synth.insert")
        if errors:
            raise RuntimeError(
                f"streaming insert into {table_id} failed for {len(errors)} rows: {errors[:3]}"
            )
    return len(rows)


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    parts = [t for t in tables if t.num_rows]
    return pa.concat_tables(parts) if parts else pa.table({})
