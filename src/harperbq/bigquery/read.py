"""Readers yielding `pyarrow.RecordBatch`es with bounded memory.

- `run_query`: runs a parameterised query under the retry policy, reports bytes billed, then
  streams its result pages (one page in memory at a time).
- `StorageReader`: the Storage Read API over a table (with a row restriction), reading every
  stream of the session in parallel through a bounded queue; for large windows.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
import warnings
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pyarrow as pa
from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery_storage_v1 import types as storage_types

from harperbq.bigquery.retry import PolicyRetry, call_with_retry, is_transient
from harperbq.bigquery.sql import Query, TableRef
from harperbq.retry import RetryPolicy

log = logging.getLogger("harperbq.bigquery.read")


@dataclass(frozen=True)
class QueryStats:
    """What a query cost and did; `bytes_billed` is 0 where the API reports none (emulator)."""

    job_id: str | None
    bytes_processed: int
    bytes_billed: int
    cache_hit: bool
    total_rows: int | None
    duration_s: float

    @classmethod
    def of(cls, job: bigquery.QueryJob, rows: Any, started: float) -> QueryStats:
        total = getattr(rows, "total_rows", None)
        return cls(
            job_id=job.job_id,
            bytes_processed=int(job.total_bytes_processed or 0),
            bytes_billed=int(job.total_bytes_billed or 0),
            cache_hit=bool(job.cache_hit),
            total_rows=int(total) if total is not None else None,
            duration_s=round(time.monotonic() - started, 3),
        )


class QueryResult:
    """A finished query: its stats now, its rows as Arrow pages on demand (iterate once)."""

    def __init__(self, job: bigquery.QueryJob, rows: Any, stats: QueryStats) -> None:
        self.job = job
        self._rows = rows
        self.stats = stats

    @property
    def schema(self) -> list[bigquery.SchemaField]:
        return list(self._rows.schema or [])

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Result pages as record batches, one page in memory at a time."""
        pages = iter(self._rows.to_arrow_iterable())
        with warnings.catch_warnings():
            # INTERVAL has no declared Arrow type in google-cloud-bigquery: the library warns,
            # then Arrow infers month_day_nano, which types.py converts exactly.
            warnings.filterwarnings("ignore", message="Unable to determine Arrow type")
            first = next(pages, None)
        if first is not None:
            yield first
            yield from pages

    def rows(self) -> list[dict[str, Any]]:
        """All rows as dicts of Python values: for small results such as aggregates."""
        return [dict(row.items()) for row in self._rows]


def run_query(
    client: bigquery.Client,
    query: Query,
    *,
    policy: RetryPolicy,
    page_size: int = 10_000,
    operation: str = "query",
    dry_run: bool = False,
) -> QueryResult:
    """Run a query, retrying transient failures per the policy; logs bytes processed/billed."""
    retry = PolicyRetry(policy, operation)
    started = time.monotonic()
    config = query.job_config(dry_run=dry_run, use_query_cache=not dry_run)
    config.labels = operation_labels(client, operation)
    # job_retry=None here: with one set, the library wraps the insert in its own 10-minute
    # default retry. Insert requests follow `retry`; failed jobs are re-run by `result()`.
    job = client.query(query.sql, job_config=config, retry=retry, job_retry=None)
    rows = job.result(page_size=page_size, retry=retry, job_retry=None if dry_run else retry)
    stats = QueryStats.of(job, rows, started)
    extra: dict[str, Any] = {
        "operation": operation,
        "job_id": stats.job_id,
        "bytes_processed": stats.bytes_processed,
        "bytes_billed": stats.bytes_billed,
        "rows": stats.total_rows,
        "duration_s": stats.duration_s,
        "dry_run": dry_run,
    }
    if log.isEnabledFor(logging.DEBUG):  # --debug: the query itself, with its parameters
        extra["sql"] = " ".join(query.sql.split())
        extra["params"] = query_params(query)
    log.info("bigquery.query", extra=extra)
    return QueryResult(job, rows, stats)


SHARED_ATTEMPTS = 5


def run_shared_query(
    client: bigquery.Client,
    query: Query,
    *,
    job_id: str,
    policy: RetryPolicy,
    page_size: int = 10_000,
    operation: str = "query",
    table: str | None = None,
) -> QueryResult:
    """Run `query` once for every caller that asks with the same `job_id`: BigQuery refuses a
    second job of one id (409), so later callers read the first one's result (kept a day,
    free to read). Bytes billed are reported by the caller that ran it, 0 by the others.

    A job that failed transiently is run again under the next attempt's id (`_1`, ...); one
    that failed for good raises its error to every caller."""
    retry = PolicyRetry(policy, operation)
    last: BaseException | None = None
    for attempt in range(SHARED_ATTEMPTS):
        name = f"{job_id}_{attempt}"
        started = time.monotonic()
        config = query.job_config(use_query_cache=True)
        config.labels = operation_labels(client, operation)
        ran = True
        try:
            job = client.query(
                query.sql, job_config=config, job_id=name, retry=retry, job_retry=None
            )
        except api_exceptions.Conflict:
            found = client.get_job(name, location=client.location, retry=retry)
            if not isinstance(found, bigquery.QueryJob):
                raise
            job, ran = found, False
        try:
            rows = job.result(page_size=page_size, retry=retry)
        except api_exceptions.GoogleAPICallError as exc:
            if not is_transient(exc) and not isinstance(exc, api_exceptions.NotFound):
                raise
            last = exc  # run again under a new id (NotFound: the result expired)
            continue
        stats = QueryStats.of(job, rows, started)
        if not ran:
            stats = replace(stats, bytes_billed=0, bytes_processed=0)
        log.info(
            "bigquery.query",
            extra={
                "operation": operation,
                "table": table,
                "job_id": stats.job_id,
                "shared": not ran,
                "bytes_processed": stats.bytes_processed,
                "bytes_billed": stats.bytes_billed,
                "rows": stats.total_rows,
                "duration_s": stats.duration_s,
            },
        )
        return QueryResult(job, rows, stats)
    assert last is not None
    raise last


OPERATION_LABEL = "harperbq-operation"
"""Every query job carries what it was for (`read_window`, `count_buckets`, ...), so BigQuery's
billing export and INFORMATION_SCHEMA.JOBS attribute the cost (`labels` in JOBS_BY_PROJECT)."""


def operation_labels(client: bigquery.Client, operation: str) -> dict[str, str]:
    """The client's default job labels plus the operation (a job's labels replace the default
    ones, they are not merged by the library)."""
    default = client.default_query_job_config
    labels = dict(default.labels or {}) if default is not None else {}
    value = re.sub(r"[^a-z0-9_-]", "-", operation.lower())[:63]
    return {**labels, OPERATION_LABEL: value}


def query_params(query: Query) -> dict[str, Any]:
    """A query's named parameters as plain values, for the debug log."""
    out: dict[str, Any] = {}
    for p in query.params:
        value = p.values if isinstance(p, bigquery.ArrayQueryParameter) else p.value
        out[str(p.name)] = [_plain(v) for v in value] if isinstance(value, list) else _plain(value)
    return out


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, int | float | str) else str(value)


@dataclass
class SessionStats:
    streams: int = 0
    estimated_bytes: int = 0
    rows: int = 0
    batches: int = 0
    duration_s: float = 0.0


@dataclass
class _Failure:
    error: BaseException


def even_batches(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The same rows in the same order as batches of exactly `rows` rows (the last may be
    shorter). Why: each page becomes one upsert of `harper` chunk size, and the streams' own
    batch sizes (8 880 rows, say) left a short request after every full one. A batch longer
    than `rows` is sliced (zero-copy); only the rows carried across batches are copied."""
    carry: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        offset = 0
        if carry:
            need = rows - held
            carry.append(batch.slice(0, need))
            held += min(need, batch.num_rows)
            offset = need
            if held < rows:
                continue
            yield pa.concat_batches(carry)
            carry, held = [], 0
        while batch.num_rows - offset >= rows:
            yield batch.slice(offset, rows)
            offset += rows
        if offset < batch.num_rows:
            carry, held = [batch.slice(offset)], batch.num_rows - offset
    if held:
        yield pa.concat_batches(carry)


@dataclass
class _StreamDone:
    name: str


@dataclass
class StorageReader:
    """Reads a table through the Storage Read API, every stream of the session in parallel.

    Memory is bounded by `queue_batches` record batches. Use `window_restriction` from
    `bigquery.sql` for the window; `columns` come back in the order asked for.
    """

    read_client: bigquery_storage_v1.BigQueryReadClient
    billing_project: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_streams: int = 4
    queue_batches: int = 4
    max_batch_rows: int = 5_000
    """Larger server batches are sliced (zero-copy) so consumers see bounded pages."""
    last: SessionStats = field(default_factory=SessionStats)
    bytes_scanned: int = 0
    """Sum of the sessions' `estimated_total_bytes_scanned`: what the Storage Read API bills
    (after partition pruning; rows a restriction drops are still billed)."""

    def read(
        self,
        table: TableRef,
        columns: Sequence[str],
        row_restriction: str = "",
        snapshot_at: datetime | None = None,
    ) -> Generator[pa.RecordBatch, None, None]:
        """`snapshot_at`: read the table as of that instant (within its time-travel window),
        else as of the session's creation."""
        if not columns:
            raise ValueError("name the columns to read (never all by default)")
        started = time.monotonic()
        session = call_with_retry(
            lambda: self._session(table, columns, row_restriction, snapshot_at),
            self.policy,
            operation="storage.create_read_session",
        )
        self.last = SessionStats(
            streams=len(session.streams), estimated_bytes=int(session.estimated_total_bytes_scanned)
        )
        self.bytes_scanned += self.last.estimated_bytes
        try:
            yield from even_batches(
                (
                    self._counted(batch).select(list(columns))
                    for batch in self._read_streams(session)
                ),
                self.max_batch_rows,
            )
        finally:
            self.last.duration_s = round(time.monotonic() - started, 3)
            log.info(
                "bigquery.storage_read",
                extra={
                    "table": str(table),
                    "streams": self.last.streams,
                    "rows": self.last.rows,
                    "estimated_bytes": self.last.estimated_bytes,
                    "duration_s": self.last.duration_s,
                    **(
                        {"row_restriction": row_restriction}
                        if log.isEnabledFor(logging.DEBUG)
                        else {}
                    ),
                },
            )

    def _counted(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.last.rows += batch.num_rows
        self.last.batches += 1
        return batch

    def estimate(self, table: TableRef, columns: Sequence[str], row_restriction: str = "") -> int:
        """Open a session without reading it: the bytes a read would be billed for (after
        partition pruning). Raises what session creation raises (permission, restriction)."""
        session = self._session(table, columns, row_restriction)
        return int(session.estimated_total_bytes_scanned)

    def _session(
        self,
        table: TableRef,
        columns: Sequence[str],
        row_restriction: str,
        snapshot_at: datetime | None = None,
    ) -> storage_types.ReadSession:
        options = storage_types.ReadSession.TableReadOptions(
            selected_fields=list(columns), row_restriction=row_restriction
        )
        request = storage_types.ReadSession(
            table=table.storage_path,
            data_format=storage_types.DataFormat.ARROW,
            read_options=options,
        )
        if snapshot_at is not None:
            request.table_modifiers = storage_types.ReadSession.TableModifiers(
                snapshot_time=snapshot_at
            )
        return self.read_client.create_read_session(
            parent=f"projects/{self.billing_project}",
            read_session=request,
            max_stream_count=self.max_streams,
        )

    def _stream_batches(
        self, session: storage_types.ReadSession, name: str
    ) -> Iterator[pa.RecordBatch]:
        schema = pa.ipc.read_schema(pa.py_buffer(session.arrow_schema.serialized_schema))
        # The stream reader resumes at its offset after transient errors.
        for response in self.read_client.read_rows(name):  # type: ignore[no-untyped-call]
            if response.row_count:
                data = pa.py_buffer(response.arrow_record_batch.serialized_record_batch)
                yield pa.ipc.read_record_batch(data, schema)

    def _read_streams(self, session: storage_types.ReadSession) -> Iterator[pa.RecordBatch]:
        names = [s.name for s in session.streams]
        if len(names) <= 1:
            for name in names:
                yield from self._stream_batches(session, name)
            return
        out: queue.Queue[pa.RecordBatch | _Failure | _StreamDone] = queue.Queue(self.queue_batches)
        stop = threading.Event()

        def put(item: pa.RecordBatch | _Failure | _StreamDone) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work(name: str) -> None:
            try:
                for batch in self._stream_batches(session, name):
                    if not put(batch):
                        return
            except BaseException as exc:  # handed to the consumer, which raises it
                put(_Failure(exc))
                return
            put(_StreamDone(name))

        threads = [
            threading.Thread(target=work, args=(n,), name=f"storage-read-{i}", daemon=True)
            for i, n in enumerate(names)
        ]
        for thread in threads:
            thread.start()
        done = 0
        try:
            while done < len(names):
                item = out.get()
                if isinstance(item, _StreamDone):
                    done += 1
                elif isinstance(item, _Failure):
                    raise item.error
                else:
                    yield item
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=5)
