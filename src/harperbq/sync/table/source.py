"""The BigQuery side of one table for the engine: schema, first cursor, converted window pages."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from harperbq import cost
from harperbq.bigquery import sql
from harperbq.bigquery.client import make_read_client
from harperbq.bigquery.read import StorageReader, run_query, run_shared_query
from harperbq.bigquery.retry import call_with_retry
from harperbq.bigquery.types import ConversionStats, ConvertOptions, records_from_batch
from harperbq.config import BigQueryConfig, TableConfig
from harperbq.harper.schema import ColumnSpec
from harperbq.profile import PROFILE
from harperbq.retry import RetryPolicy
from harperbq.sync.checks import digest
from harperbq.sync.checks.digest import Digest
from harperbq.sync.cluster.partitions import keep_partitions, partition_of
from harperbq.sync.table.engine import Page, RowProblem
from harperbq.sync.table.target import cursor_micros
from harperbq.sync.table.versions import NewestVersions
from harperbq.sync.table.windows import PARTITION_UNITS, Window

log = logging.getLogger("harperbq.sync.source")


def column_spec(column: sql.Column) -> ColumnSpec:
    """The neutral column description the Harper layer builds tables from."""
    return ColumnSpec(
        column.name, column.type, column.mode, tuple(column_spec(f) for f in column.fields)
    )


class BigQuerySource:
    """Reads one configured table: windows over the partitions a worker owns, converted."""

    def __init__(
        self,
        client: bigquery.Client,
        cfg: BigQueryConfig,
        table: TableConfig,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.table = table
        self.policy = policy or RetryPolicy()
        project = table.project_id or cfg.project_id or client.project
        self.ref = sql.TableRef(project, table.dataset, table.table)
        self.options = ConvertOptions(table.numeric_as, table.geography_as)
        self.stats = ConversionStats()
        self.bytes_billed = 0
        self.queries = 0
        self._columns: list[sql.Column] | None = None
        self._storage: StorageReader | None = None
        self._last_rows = 0
        self._storage_refused = False
        self._partition_unit: str | None = None

    # -- schema -----------------------------------------------------------------------------------

    def refresh_schema(self) -> list[sql.Column]:
        """Read the source schema (raises NotFound while the table does not exist)."""
        found = call_with_retry(
            # retry=None: our policy bounds the retries, not the library's 10-minute default.
            lambda: self.client.get_table(str(self.ref), retry=None),  # type: ignore[arg-type]
            self.policy,
            operation="get_table",
        )
        self._columns = sql.columns_from_schema(found.schema, self.table.columns)
        self._partition_unit = _window_partition_unit(found, self.table.cursor_column)
        return self._columns

    def partition_unit(self) -> str | None:
        """The time partitioning unit event-time windows are aligned to (`windows.
        align_to_partitions`): set when the table is partitioned by the cursor column and not
        clustered on it first, so a window cannot prune below whole partitions."""
        if self._columns is None:
            self.refresh_schema()
        return self._partition_unit

    @property
    def columns(self) -> list[sql.Column]:
        return self._columns if self._columns is not None else self.refresh_schema()

    def column_specs(self) -> list[ColumnSpec]:
        return [column_spec(c) for c in self.refresh_schema()]

    def _column(self, name: str) -> sql.Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def cursor(self) -> sql.Column:
        return self._column(self.table.cursor_column)

    @property
    def partition_key(self) -> list[sql.Column]:
        return [self._column(name) for name in self.table.partition_key]

    # -- reads ------------------------------------------------------------------------------------

    @property
    def storage_bytes_scanned(self) -> int:
        """Bytes the Storage Read sessions of this source were billed for."""
        return self._storage.bytes_scanned if self._storage is not None else 0

    def spent(self) -> dict[str, float | int]:
        """Bytes billed, Storage Read bytes and their estimated cost (`bigquery.cost`)."""
        return cost.spent(self.bytes_billed, self.storage_bytes_scanned, self.cfg.prices)

    def run(self, query: sql.Query, operation: str, page_size: int = 10_000) -> Any:
        result = run_query(
            self.client, query, policy=self.policy, page_size=page_size, operation=operation
        )
        self.queries += 1
        self.bytes_billed += result.stats.bytes_billed
        return result

    def run_shared(
        self, query: sql.Query, job_id: str, operation: str, page_size: int = 10_000
    ) -> Any:
        """`run`, once for every worker asking for the same job (`read.run_shared_query`)."""
        result = run_shared_query(
            self.client,
            query,
            job_id=job_id,
            policy=self.policy,
            page_size=page_size,
            operation=operation,
            table=str(self.ref),
        )
        self.queries += 1
        self.bytes_billed += result.stats.bytes_billed
        return result

    def first_cursor(self, parts: Sequence[int] | None, after: int | None = None) -> int | None:
        query = sql.cursor_range_query(
            self.ref,
            self.cursor,
            partition_key=self.partition_key,
            partitions=self.table.partitions,
            parts=parts,
            lo=after,
        )
        rows = self.run(query, "first_cursor").rows()
        value = rows[0]["lo_us"] if rows else None
        return int(value) if value is not None else None

    def count_buckets(
        self, edges: Sequence[int], parts: Sequence[int] | None, *, distinct_keys: bool = False
    ) -> dict[tuple[int, int], tuple[int, int]]:
        """Rows per (partition, 1-based bucket of `edges`) in ONE aggregate query (see
        `sql.bucket_counts_query`): `(rows, distinct primary keys)`; the second equals the
        first when there is no key or `distinct_keys` is False."""
        key = [self._column(name) for name in self.table.primary_key] if distinct_keys else []
        if key and any(c.type not in sql.PARTITION_KEY_TYPES or c.repeated for c in key):
            key = []  # no canonical text for such keys: count rows (duplicates then show)
        query = sql.bucket_counts_query(
            self.ref,
            self.cursor,
            edges,
            partition_key=self.partition_key,
            partitions=self.table.partitions,
            parts=parts,
            distinct_key=key or None,
        )
        out: dict[tuple[int, int], tuple[int, int]] = {}
        for row in self.run(query, "count_buckets").rows():
            n = int(row["n"])
            out[(int(row["p"]), int(row["b"]))] = (n, int(row["k"]) if key else n)
        return out

    def null_cursors(self) -> int:
        """Source rows whose cursor is NULL (never synced; see `sql.null_cursor_count_query`)."""
        rows = self.run(sql.null_cursor_count_query(self.ref, self.cursor), "null_cursors").rows()
        return int(rows[0]["n"]) if rows else 0

    def digest_buckets(
        self,
        edges: Sequence[int],
        columns: Sequence[sql.Column],
        *,
        newest_by_key: bool,
        as_of: int | None = None,
    ) -> dict[tuple[int, int], tuple[int, Digest]]:
        """Per (partition, 1-based bucket of `edges`), in ONE aggregate query (see
        `sql.bucket_digests_query`): `(rows, digest of the rows kept)`; with `newest_by_key`
        only each primary key's newest row is kept (when the key has a canonical text)."""
        key = [self._column(name) for name in self.table.primary_key] if newest_by_key else []
        if any(c.type not in sql.PARTITION_KEY_TYPES or c.repeated for c in key):
            key = []  # no canonical text for such keys: every row kept (duplicates then show)
        query = sql.bucket_digests_query(
            self.ref,
            self.cursor,
            edges,
            partition_key=self.partition_key,
            partitions=self.table.partitions,
            columns=columns,
            newest_by=key or None,
            as_of=as_of,
        )
        out: dict[tuple[int, int], tuple[int, Digest]] = {}
        for row in self.run(query, "digest_buckets").rows():
            digest = Digest(int(row["k"]), int(row["h"] or 0), int(row["l"] or 0))
            out[(int(row["p"]), int(row["b"]))] = (int(row["n"]), digest)
        return out

    def read(self, window: Window, parts: Sequence[int] | None, page_rows: int) -> Iterator[Page]:
        """The window's rows as pages; with a primary key, only each key's newest version
        (`sync.versions`: neither read path orders rows)."""
        batches = (
            self._storage_or_query(window, parts, page_rows)
            if self._use_storage()
            else self._query_batches(window, parts, page_rows)
        )
        versions = self.newest_versions()
        rows = 0
        for batch in batches:
            rows += batch.num_rows
            with PROFILE.timed("convert"):
                page = self.page(batch)
                if versions is not None:
                    page.records, page.partitions, page.superseded = versions.keep(
                        page.records, page.partitions
                    )
            yield page
            del page  # not held while the next page is converted
        self._last_rows = rows

    def newest_versions(self) -> NewestVersions | None:
        """The filter that keeps each key's newest version in one read (None without a key)."""
        if not self.table.primary_key:
            return None
        covered = sql.digest_columns(self.columns)
        return NewestVersions(
            self.table.primary_key,
            self.cursor.name,
            self.cursor_micros,
            partial(digest.row_fingerprint, columns=covered),
            hashed=[c.name for c in self.columns if c not in covered],
        )

    def storage(self) -> StorageReader:
        """This source's Storage Read API reader (one per source: its bytes add up)."""
        if self._storage is None:
            self._storage = StorageReader(
                make_read_client(self.cfg),
                self.client.project,
                policy=self.policy,
                max_streams=self.cfg.read_streams,
            )
        return self._storage

    def owned_rows(self, batches: Iterator[Any], parts: Sequence[int] | None) -> Iterator[Any]:
        """The rows of these batches in the partitions (all when None): the Storage Read API
        cannot filter on a partition, so readers keep theirs here."""
        wanted = None if parts is None or len(set(parts)) >= self.table.partitions else parts
        types = [c.type for c in self.partition_key]
        for batch in batches:
            if wanted is None:
                yield batch
            else:
                yield keep_partitions(
                    batch, self.table.partition_key, types, self.table.partitions, wanted
                )

    def storage_or(
        self, storage: Iterator[Any], fallback: Callable[[], Iterator[Any]]
    ) -> Iterator[Any]:
        """The Storage Read batches, or the fallback's when BigQuery refuses the session (then
        for good), which happens before any row was read, so nothing is read twice."""
        try:
            first = next(storage, None)
        except (api_exceptions.InvalidArgument, api_exceptions.BadRequest) as exc:
            self._storage_refused = True
            log.warning(
                "bigquery.storage_refused",
                extra={"table": str(self.ref), "error": str(exc), "fallback": "query"},
            )
            yield from fallback()
            return
        if first is not None:
            yield first
            yield from storage

    def cursor_micros(self, value: Any) -> int | None:
        """µs of a converted cursor value (the form Harper stores)."""
        return cursor_micros(self.cursor.type, value)

    def _use_storage(self) -> bool:
        if self._storage_refused:
            return False
        if self.cfg.read_api == "storage":
            return True
        return self.cfg.read_api == "auto" and self._last_rows >= self.cfg.storage_min_rows

    def _query_batches(
        self, window: Window, parts: Sequence[int] | None, page_rows: int
    ) -> Iterator[Any]:
        query = sql.window_query(
            self.ref,
            self.columns,
            self.cursor,
            window.lo,
            window.hi,
            partition_key=self.partition_key,
            partitions=self.table.partitions,
            parts=parts,
        )
        yield from self.run(query, "read_window", page_size=max(page_rows, 100)).batches()

    def _storage_batches(self, window: Window, parts: Sequence[int] | None) -> Iterator[Any]:
        # The cursor range only: real BigQuery refuses FARM_FINGERPRINT/MOD in a row restriction
        # as "too complex", so this worker's partitions are kept here (docs/strict-bigquery.md).
        restriction = sql.window_restriction(self.cursor, window.lo, window.hi)
        names = [c.name for c in self.columns]
        yield from self.owned_rows(self.storage().read(self.ref, names, restriction), parts)

    def _storage_or_query(
        self, window: Window, parts: Sequence[int] | None, page_rows: int
    ) -> Iterator[Any]:
        return self.storage_or(
            self._storage_batches(window, parts),
            lambda: self._query_batches(window, parts, page_rows),
        )

    def page(self, batch: Any, columns: Sequence[sql.Column] | None = None) -> Page:
        """One batch converted to Harper records (of `columns`, default the table's), with
        its row problems and partitions."""
        coerced_before = self.stats.nonfinite_floats
        records, errors = records_from_batch(
            batch, columns or self.columns, self.options, self.stats
        )
        problems = [
            RowProblem(e.reason, e.column, json.dumps({"row": e.index, "value": e.sample}))
            for e in errors
        ]
        records, null_keys = self._without_null_keys(records)
        problems.extend(null_keys)
        key = self.table.partition_key
        types = [c.type for c in self.partition_key]
        partitions = [
            partition_of([r.get(k) for k in key], self.table.partitions, types) for r in records
        ]
        coerced = self.stats.nonfinite_floats - coerced_before
        return Page(records, partitions, problems, coerced=coerced)

    def _without_null_keys(self, records: list[Any]) -> tuple[list[Any], list[RowProblem]]:
        """Rows with a NULL in any primary key column have no identity: skipped and reported
        (they would all merge into one record `%00`)."""
        key = self.table.primary_key
        if not key:
            return records, []
        kept, problems = [], []
        for record in records:
            nulls = [k for k in key if record.get(k) is None]
            if not nulls:
                kept.append(record)
                continue
            sample = json.dumps({k: record.get(k) for k in key}, default=str)
            problems.append(
                RowProblem(
                    f"NULL in primary key column(s) {', '.join(nulls)}",
                    nulls[0],
                    sample,
                    code="null_primary_key",
                )
            )
        return kept, problems


def _window_partition_unit(table: Any, cursor: str) -> str | None:
    tp = getattr(table, "time_partitioning", None)
    if tp is None or tp.field != cursor or tp.type_ not in PARTITION_UNITS:
        return None
    clustered = list(getattr(table, "clustering_fields", None) or [])
    return None if clustered and clustered[0] == cursor else str(tp.type_)
