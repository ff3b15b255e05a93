"""The few queries harperbq issues, built safely: identifiers validated and backtick-quoted,
values only as named parameters, explicit column lists (never `SELECT *`).

Cursor bounds are integers: microseconds since the Unix epoch (UTC) for TIMESTAMP, DATETIME
(taken as UTC wall time) and DATE cursors, the raw value for INT64 cursors. Windows are
half-open `[lo, hi)`. The partition of a row is
`MOD(MOD(FARM_FINGERPRINT(<partition key as STRING>), @n) + @n, @n)` (no ABS: it overflows on
INT64 min); the key's STRING is canonical and type-aware, so `sync.partitions` computes the same
value in Python bit for bit (CAST(TIMESTAMP AS STRING) differs between engines: we never use it).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from google.cloud import bigquery

COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9.:\-]{0,127}$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_TABLE = re.compile(r"^[\w\-]{1,1024}$")

MICROS_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
_MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

CursorType = Literal["TIMESTAMP", "DATETIME", "DATE", "INT64"]
CURSOR_TYPES: tuple[str, ...] = ("TIMESTAMP", "DATETIME", "DATE", "INT64")

KEY_SEPARATOR = "\x1f"
"""Joins the components of a multi-column partition key (U+001F, the unit separator)."""
NULL_KEY_TEXT = ""
"""The text of a NULL key component (NULL and '' share a partition: harmless, never a loss)."""

_TYPE_ALIASES = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "RECORD": "STRUCT",
    "DECIMAL": "NUMERIC",
    "BIGDECIMAL": "BIGNUMERIC",
}


def normalize_type(type_name: str) -> str:
    """Standard SQL name of a BigQuery type (`INTEGER` -> `INT64`, `RANGE<DATE>` -> `RANGE`)."""
    upper = type_name.upper().split("<", 1)[0].strip()
    return _TYPE_ALIASES.get(upper, upper)


# Canonical STRING of one partition-key value, per type; `{c}` is the quoted column.
_KEY_TEXT_SQL = {
    "STRING": "{c}",
    "INT64": "CAST({c} AS STRING)",
    "BOOL": "CAST({c} AS STRING)",
    "TIMESTAMP": "CAST(UNIX_MICROS({c}) AS STRING)",
    "DATETIME": "CAST(UNIX_MICROS(TIMESTAMP({c})) AS STRING)",
    "DATE": "CAST(UNIX_DATE({c}) AS STRING)",
    "TIME": "CAST(TIME_DIFF({c}, TIME '00:00:00', MICROSECOND) AS STRING)",
    "BYTES": "TO_BASE64({c})",
}
PARTITION_KEY_TYPES: tuple[str, ...] = tuple(_KEY_TEXT_SQL)
"""Types a partition-key column may have (NUMERIC and FLOAT64 have no shared canonical text)."""


class SqlError(ValueError):
    """A query cannot be built safely (bad identifier, unsupported type, value out of range)."""


def quote(name: str) -> str:
    """A column name, validated and backtick-quoted."""
    if not COLUMN_NAME.match(name):
        raise SqlError(f"not a valid column name: {name!r}")
    return f"`{name}`"


@dataclass(frozen=True)
class TableRef:
    """A BigQuery table, validated at construction so it can always be quoted safely."""

    project: str
    dataset: str
    table: str

    def __post_init__(self) -> None:
        for what, value, pattern in (
            ("project", self.project, _PROJECT),
            ("dataset", self.dataset, _DATASET),
            ("table", self.table, _TABLE),
        ):
            if not pattern.match(value):
                raise SqlError(f"not a valid BigQuery {what} id: {value!r}")

    @property
    def sql(self) -> str:
        return f"`{self.project}`.`{self.dataset}`.`{self.table}`"

    @property
    def storage_path(self) -> str:
        """The Storage Read API's name for the table."""
        return f"projects/{self.project}/datasets/{self.dataset}/tables/{self.table}"

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


@dataclass(frozen=True)
class Column:
    """A column name with its BigQuery type (normalized), as the query builders need it."""

    name: str
    type: str
    mode: str = "NULLABLE"
    fields: tuple[Column, ...] = ()
    element_type: str | None = None
    """RANGE element type (DATE, DATETIME or TIMESTAMP)."""

    def __post_init__(self) -> None:
        quote(self.name)
        object.__setattr__(self, "type", normalize_type(self.type))

    @property
    def repeated(self) -> bool:
        return self.mode.upper() == "REPEATED"

    @classmethod
    def from_field(cls, f: bigquery.SchemaField) -> Column:
        element = f.range_element_type.element_type if f.range_element_type else None
        if element is None and "<" in (f.field_type or ""):
            element = (f.field_type or "").split("<", 1)[1].rstrip(">").strip()
        return cls(
            f.name,
            f.field_type or "STRING",
            f.mode or "NULLABLE",
            tuple(cls.from_field(sub) for sub in f.fields),
            normalize_type(element) if element else None,
        )


def columns_from_schema(
    schema: Sequence[bigquery.SchemaField], names: Sequence[str] | None = None
) -> list[Column]:
    """The named columns (all when names is None) with their types; KeyError names the missing."""
    by_name = {f.name: f for f in schema}
    if names is None:
        return [Column.from_field(f) for f in schema]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise KeyError(f"column(s) not in the table: {', '.join(missing)}")
    return [Column.from_field(by_name[n]) for n in names]


@dataclass(frozen=True)
class Query:
    """SQL text plus its named parameters; run it with `job_config()`."""

    sql: str
    params: tuple[bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter, ...] = field(
        default_factory=tuple
    )

    def job_config(self, **options: Any) -> bigquery.QueryJobConfig:
        return bigquery.QueryJobConfig(query_parameters=list(self.params), **options)

    def param(self, name: str) -> Any:
        for p in self.params:
            if p.name == name:
                return p.values if isinstance(p, bigquery.ArrayQueryParameter) else p.value
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Cursor values


def _cursor_type(column: Column) -> str:
    if column.type not in CURSOR_TYPES or column.repeated:
        raise SqlError(
            f"cursor column {column.name} has type {column.type}"
            f"{' (repeated)' if column.repeated else ''}; "
            "a cursor must be TIMESTAMP, DATETIME, DATE or INT64"
        )
    return column.type


def _check_us(value: int) -> int:
    if not _MIN_US <= value <= _MAX_US + 1:
        raise SqlError(f"{value} µs is outside BigQuery's timestamp range (years 1 to 9999)")
    return value


def from_micros(value: int) -> datetime:
    """Aware UTC datetime of µs since the epoch (exact)."""
    return _EPOCH + timedelta(microseconds=_check_us(value))


def _ceil_day(value: int) -> date:
    days = -(-_check_us(value) // MICROS_PER_DAY)
    return date(1970, 1, 1) + timedelta(days=days)


def cursor_param(name: str, column: Column, value: int) -> bigquery.ScalarQueryParameter:
    """The typed parameter for a bound: `cursor >= @lo` then means exactly `micros >= value`.

    DATE bounds round up to whole days, which keeps half-open windows exact.
    """
    kind = _cursor_type(column)
    if kind == "TIMESTAMP":
        return bigquery.ScalarQueryParameter(name, "TIMESTAMP", from_micros(value))
    if kind == "DATETIME":
        # As text: the client formats a datetime with strftime("%Y"), unpadded below year 1000.
        return bigquery.ScalarQueryParameter(name, "DATETIME", _civil_text(from_micros(value)))
    if kind == "DATE":
        return bigquery.ScalarQueryParameter(name, "DATE", _ceil_day(value))
    return bigquery.ScalarQueryParameter(name, "INT64", int(value))


def cursor_micros(column: Column) -> str:
    """SQL for the cursor as an INT64 (µs since the epoch; the raw value for INT64)."""
    c = quote(column.name)
    kind = _cursor_type(column)
    return {
        "TIMESTAMP": f"UNIX_MICROS({c})",
        "DATETIME": f"UNIX_MICROS(TIMESTAMP({c}))",
        "DATE": f"UNIX_DATE({c}) * {MICROS_PER_DAY}",
        "INT64": c,
    }[kind]


def _cursor_literal(column: Column, value: int) -> str:
    """A literal for the Storage API's row restriction (no parameters there), from an int."""
    kind = _cursor_type(column)
    if kind == "INT64":
        return str(int(value))
    if kind == "DATE":
        return f"DATE '{_ceil_day(value).isoformat()}'"
    if kind == "TIMESTAMP":
        return timestamp_literal(value)
    return f"DATETIME '{_civil_text(from_micros(int(value)))}'"


def _civil_text(moment: datetime) -> str:
    """`YYYY-MM-DD HH:MM:SS.ffffff` with a four-digit year (also below year 1000)."""
    return f"{moment.year:04d}-{moment:%m-%d %H:%M:%S}.{moment.microsecond:06d}"


# ---------------------------------------------------------------------------------------------
# Partitions


def partition_key_sql(key: Sequence[Column]) -> str:
    """The canonical STRING of a row's partition key, as a SQL expression."""
    if not key:
        raise SqlError("a partition key needs at least one column")
    parts = []
    for column in key:
        template = _KEY_TEXT_SQL.get(column.type)
        if template is None or column.repeated:
            raise SqlError(
                f"partition key column {column.name} has type {column.type}"
                f"{' (repeated)' if column.repeated else ''}, which has no canonical text shared "
                f"by BigQuery and Python; use columns of type {', '.join(PARTITION_KEY_TYPES)}"
            )
        parts.append(f"COALESCE({template.format(c=quote(column.name))}, '')")
    if len(parts) == 1:
        return parts[0]
    separator = f"CODE_POINTS_TO_STRING([{ord(KEY_SEPARATOR)}])"
    return f"CONCAT({f', {separator}, '.join(parts)})"


def partition_sql(key: Sequence[Column], n: str = "@n") -> str:
    """The partition of a row in [0, n): `n` is a parameter name (or an integer literal).

    Compound arguments are parenthesised: the emulator drops the implied parentheses of
    function arguments when it translates DIV/MOD (`DIV(a - b, c)` became `a - b // c`).
    """
    return f"MOD((MOD(FARM_FINGERPRINT({partition_key_sql(key)}), {n}) + {n}), {n})"


def _check_parts(parts: Sequence[int], partitions: int) -> list[int]:
    if partitions < 1:
        raise SqlError(f"partitions must be at least 1, got {partitions}")
    chosen = sorted({int(p) for p in parts})
    bad = [p for p in chosen if not 0 <= p < partitions]
    if bad:
        raise SqlError(f"partition(s) {bad} outside 0..{partitions - 1}")
    return chosen


def _partition_filter(
    key: Sequence[Column], partitions: int, parts: Sequence[int] | None
) -> tuple[str, list[Any]]:
    """`AND <partition> IN UNNEST(@parts)`, or nothing when all partitions are wanted."""
    if parts is None:
        return "", []
    chosen = _check_parts(parts, partitions)
    if len(chosen) == partitions:
        return "", []
    return f"\n  AND {partition_sql(key)} IN UNNEST(@parts)", [
        bigquery.ScalarQueryParameter("n", "INT64", partitions),
        bigquery.ArrayQueryParameter("parts", "INT64", chosen),
    ]


# ---------------------------------------------------------------------------------------------
# Queries


def select_item(column: Column) -> str:
    """One select-list item. GEOGRAPHY is selected as WKT (ST_ASTEXT), which every API returns
    the same way with the stored vertices; GeoJSON, when wanted, is made from it in Python
    (ST_ASGEOJSON adds vertices to approximate geodesic edges, so the read paths would differ).
    """
    c = quote(column.name)
    if column.type == "GEOGRAPHY" and not column.repeated:
        return f"ST_ASTEXT({c}) AS {c}"
    return c


def select_list(columns: Sequence[Column]) -> str:
    if not columns:
        raise SqlError("a query needs at least one column (never SELECT *)")
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SqlError(f"column(s) selected twice: {duplicates}")
    return ", ".join(select_item(c) for c in columns)


def window_query(
    table: TableRef,
    columns: Sequence[Column],
    cursor: Column,
    lo: int,
    hi: int,
    *,
    partition_key: Sequence[Column],
    partitions: int,
    parts: Sequence[int] | None = None,
) -> Query:
    """Every row with `lo <= cursor < hi` in the given partitions (all when parts is None), in
    one query for all of a worker's partitions."""
    if hi < lo:
        raise SqlError(f"empty window: hi {hi} < lo {lo}")
    items = select_list(columns)
    params: list[Any] = [cursor_param("lo", cursor, lo), cursor_param("hi", cursor, hi)]
    where, extra = _partition_filter(partition_key, partitions, parts)
    params += extra
    c = quote(cursor.name)
    sql = f"SELECT {items}\nFROM {table.sql}\nWHERE {c} >= @lo AND {c} < @hi{where}"
    return Query(sql, tuple(params))


CHANGE_FUNCTIONS = ("APPENDS", "CHANGES")
CHANGE_TS_COLUMN = "_hbq_change_ts"
"""The commit time of a change-history row (`_CHANGE_TIMESTAMP`), as a result column."""
CHANGE_TYPE_COLUMN = "_hbq_change_type"
"""`_CHANGE_TYPE` (`INSERT`, `UPDATE`, `DELETE`) as a result column."""


def change_query(
    table: TableRef,
    columns: Sequence[Column],
    function: str,
    lo: int,
    hi: int,
    *,
    partition_key: Sequence[Column],
    partitions: int,
    parts: Sequence[int] | None = None,
) -> Query:
    """The rows `function` (APPENDS or CHANGES) returns for commits in [lo, hi) µs, in the
    given partitions, with their commit time and change type. BigQuery bills the data written
    in the range, not the table (change-history pricing); the bounds are parameters, which
    BigQuery accepts as constant TIMESTAMP arguments."""
    if function not in CHANGE_FUNCTIONS:
        raise SqlError(f"not a change-history function: {function!r}")
    if hi < lo:
        raise SqlError(f"empty window: hi {hi} < lo {lo}")
    items = select_list(columns)
    params: list[Any] = [
        bigquery.ScalarQueryParameter("lo", "TIMESTAMP", from_micros(lo)),
        bigquery.ScalarQueryParameter("hi", "TIMESTAMP", from_micros(hi)),
    ]
    where, extra = _partition_filter(partition_key, partitions, parts)
    params += extra
    sql = (
        f"SELECT {items}, _CHANGE_TIMESTAMP AS `{CHANGE_TS_COLUMN}`, "
        f"_CHANGE_TYPE AS `{CHANGE_TYPE_COLUMN}`\n"
        f"FROM {function}(TABLE {table.sql}, @lo, @hi)\nWHERE TRUE{where}"
    )
    return Query(sql, tuple(params))


def snapshot_query(
    table: TableRef, columns: Sequence[Column], at: int, restriction: str = ""
) -> Query:
    """The whole table as of `at` µs (time travel): the snapshot's fallback when the Storage
    Read API is refused. Billed as a query over the selected columns of the table.
    `restriction`: a `window_restriction` (text built from integers only)."""
    where = f"\nWHERE {restriction}" if restriction else ""
    sql = (
        f"SELECT {select_list(columns)}\nFROM {table.sql} "
        f"FOR SYSTEM_TIME AS OF {timestamp_literal(at)}{where}"
    )
    return Query(sql)


def timestamp_literal(value: int) -> str:
    """`TIMESTAMP '...'` of µs: for the places a parameter is not taken everywhere (the local
    emulator's FOR SYSTEM_TIME AS OF); rendered from an integer, so it is always safe."""
    return f"TIMESTAMP '{_civil_text(from_micros(int(value)))}+00'"


def cursor_range_query(
    table: TableRef,
    cursor: Column,
    *,
    partition_key: Sequence[Column],
    partitions: int,
    parts: Sequence[int] | None = None,
    lo: int | None = None,
) -> Query:
    """Oldest and newest cursor (`lo_us`, `hi_us`, as µs or raw INT64) and the row count `n`,
    over the partitions, from `lo` on when given."""
    params: list[Any] = []
    conditions = [f"{quote(cursor.name)} IS NOT NULL"]
    if lo is not None:
        params.append(cursor_param("lo", cursor, lo))
        conditions.append(f"{quote(cursor.name)} >= @lo")
    where, extra = _partition_filter(partition_key, partitions, parts)
    params += extra
    micros = cursor_micros(cursor)
    sql = (
        f"SELECT MIN({micros}) AS lo_us, MAX({micros}) AS hi_us, COUNT(*) AS n\n"
        f"FROM {table.sql}\nWHERE {' AND '.join(conditions)}{where}"
    )
    return Query(sql, tuple(params))


def window_restriction(cursor: Column, lo: int, hi: int) -> str:
    """The cursor range of window_query, as a Storage Read API row restriction.

    The cursor range only: BigQuery refuses functions such as FARM_FINGERPRINT or MOD in a row
    restriction ("too complex to be processed in filtering"), so readers keep their partitions
    in Python (`sync.partitions.keep_partitions`). That API takes no parameters, so values are
    rendered as literals, but only from integers (never from text), which keeps them safe.
    """
    if hi < lo:
        raise SqlError(f"empty window: hi {hi} < lo {lo}")
    c = quote(cursor.name)
    return f"{c} >= {_cursor_literal(cursor, lo)} AND {c} < {_cursor_literal(cursor, hi)}"


def _bucket_grid_params(cursor: Column, edges: Sequence[int]) -> list[Any]:
    """`@lo`, `@hi` and `@edges` of a bucket grid (strictly increasing edges, at least two)."""
    bounds = [int(e) for e in edges]
    if len(bounds) < 2:
        raise SqlError("a bucket grid needs at least two edges")
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise SqlError("bucket edges must be strictly increasing")
    return [
        cursor_param("lo", cursor, bounds[0]),
        cursor_param("hi", cursor, bounds[-1]),
        bigquery.ArrayQueryParameter("edges", "INT64", bounds),
    ]


def bucket_counts_query(
    table: TableRef,
    cursor: Column,
    edges: Sequence[int],
    *,
    partition_key: Sequence[Column],
    partitions: int,
    parts: Sequence[int] | None = None,
    distinct_key: Sequence[Column] | None = None,
) -> Query:
    """`COUNT(*)` per (partition, bucket) over `[edges[0], edges[-1])`, for any window grid.

    Buckets are the consecutive half-open intervals between the strictly increasing `edges`
    (µs, or cursor units for INT64): result column `b` is `RANGE_BUCKET(cursor, @edges)`, so
    bucket `b` is `[edges[b-1], edges[b])`. Columns: `p` (partition), `b`, `n` (rows) and, with
    `distinct_key`, `k` (distinct canonical key texts: what a keyed Harper table can hold). Any
    set of variable-length windows, of any partitions, is a union of such buckets when every
    window bound is an edge: one query counts them all, scanning only cursor and key columns.
    """
    c = quote(cursor.name)
    params = _bucket_grid_params(cursor, edges)
    where, extra = _partition_filter(partition_key, partitions, parts)
    params += extra
    if not extra:
        params.append(bigquery.ScalarQueryParameter("n", "INT64", partitions))
    bucket = f"RANGE_BUCKET({cursor_micros(cursor)}, @edges)"
    items = f"{partition_sql(partition_key)} AS p, {bucket} AS b"
    counts = "COUNT(*) AS n"
    if distinct_key:
        items += f", {partition_key_sql(distinct_key)} AS key_text"
        counts += ", COUNT(DISTINCT key_text) AS k"
    # Grouped in an outer query: grouping by parameterised expressions trips the emulator.
    # Identifiers are validated and quoted; every value is a parameter.
    sql = (
        f"SELECT p, b, {counts} FROM (\n"  # noqa: S608
        f"  SELECT {items}\n  FROM {table.sql}\n  WHERE {c} >= @lo AND {c} < @hi{where}\n"
        ")\nGROUP BY p, b\nORDER BY p, b"
    )
    return Query(sql, tuple(params))


def null_cursor_count_query(table: TableRef, cursor: Column) -> Query:
    """`COUNT(*)` of the rows whose cursor is NULL: they belong to no window and are never
    synced. Scans the cursor column only; on a table partitioned by the cursor column only
    its `__NULL__` partition (one query per table and hour: `sync.reconcile`)."""
    c = quote(_checked_cursor(cursor).name)
    return Query(f"SELECT COUNT(*) AS n FROM {table.sql} WHERE {c} IS NULL")  # noqa: S608


def _checked_cursor(cursor: Column) -> Column:
    _cursor_type(cursor)
    return cursor


DIGEST_TYPES: tuple[str, ...] = PARTITION_KEY_TYPES
"""Types whose values enter the per-cell digest: the same canonical text as partition keys,
shared bit for bit by SQL and Python (`sync.digest`). FLOAT64, NUMERIC, GEOGRAPHY, JSON,
STRUCT, ARRAY and repeated columns have none; they are compared by the validation's sample."""
NULL_VALUE_TEXT = "N"
VALUE_PREFIX = "v"
"""A value's digest text is `v<canonical text>`, NULL is `N`: NULL and '' differ."""
_HALF = 4_294_967_295  # 2^32 - 1


def digest_columns(columns: Sequence[Column]) -> list[Column]:
    """The columns a row digest covers, in the given order."""
    return [c for c in columns if c.type in DIGEST_TYPES and not c.repeated]


def value_text_sql(columns: Sequence[Column]) -> str:
    """The digest text of a row over `columns` (see DIGEST_TYPES), as a SQL expression."""
    if not columns:
        raise SqlError("a row digest needs at least one column")
    parts = []
    for column in columns:
        template = _KEY_TEXT_SQL.get(column.type)
        if template is None or column.repeated:
            raise SqlError(f"column {column.name} of type {column.type} cannot enter a digest")
        c = quote(column.name)
        text = template.format(c=c)
        parts.append(f"IF({c} IS NULL, '{NULL_VALUE_TEXT}', CONCAT('{VALUE_PREFIX}', {text}))")
    if len(parts) == 1:
        return parts[0]
    separator = f"CODE_POINTS_TO_STRING([{ord(KEY_SEPARATOR)}])"
    return f"CONCAT({f', {separator}, '.join(parts)})"


def bucket_digests_query(
    table: TableRef,
    cursor: Column,
    edges: Sequence[int],
    *,
    partition_key: Sequence[Column],
    partitions: int,
    columns: Sequence[Column],
    newest_by: Sequence[Column] | None = None,
    as_of: int | None = None,
) -> Query:
    """Per (partition, bucket) over `[edges[0], edges[-1])`, as `bucket_counts_query`: `n`
    (rows), `k` (rows kept), `h` and `l` (sums of the high and low 32 bits of
    `FARM_FINGERPRINT(TO_HEX(MD5(<digest text of the row over columns>)))` over the rows kept).

    With `newest_by` (a keyed table's primary key), only the newest row of each key over the
    whole range is kept, in the bucket of its cursor (Harper holds one record per key, the
    newest; ties broken by the larger fingerprint, as `sync.digest` does). Sums, unlike XOR,
    keep identical rows of an unkeyed table from cancelling out; 32-bit halves summed over
    fewer than 2^31 rows cannot overflow INT64. Scans the cursor, key and `columns` only.
    With `as_of` (µs), the table as it was then (time travel): what a change feed had read
    when its checkpoint stood there.
    """
    c = quote(cursor.name)
    params = [
        *_bucket_grid_params(cursor, edges),
        bigquery.ScalarQueryParameter("n", "INT64", partitions),
    ]
    micros = cursor_micros(cursor)
    fp = f"FARM_FINGERPRINT(TO_HEX(MD5({value_text_sql(columns)})))"  # see sync.digest
    kept = "TRUE"
    if newest_by:
        kept = (
            f"ROW_NUMBER() OVER (PARTITION BY {partition_key_sql(newest_by)} "
            f"ORDER BY {micros} DESC, {fp} DESC) = 1"
        )
    items = (
        f"{partition_sql(partition_key)} AS p, RANGE_BUCKET({micros}, @edges) AS b, "
        f"{fp} AS f, {kept} AS kept"
    )
    travel = f" FOR SYSTEM_TIME AS OF {timestamp_literal(as_of)}" if as_of is not None else ""
    # Grouped in an outer query, as in bucket_counts_query. Identifiers are validated and
    # quoted; every value is a parameter or an integer literal.
    sql = (
        "SELECT p, b, COUNT(*) AS n, COUNTIF(kept) AS k,\n"  # noqa: S608
        f"  SUM(IF(kept, (f >> 32) & {_HALF}, 0)) AS h, SUM(IF(kept, f & {_HALF}, 0)) AS l\n"
        f"FROM (\n  SELECT {items}\n  FROM {table.sql}{travel}\n  WHERE {c} >= @lo AND {c} < @hi\n"
        ")\nGROUP BY p, b\nORDER BY p, b"
    )
    return Query(sql, tuple(params))
