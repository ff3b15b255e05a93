"""On-demand bytes of a query, computed by BigQuery's documented rules over the emulator's data.

Rules (each cites its page):
- Bytes = BigQuery's data size of the columns the query references, per type; NULL is 0 bytes.
  https://cloud.google.com/bigquery/pricing#data_size_calculation
- Only the partitions that survive pruning are billed; pruning needs a filter on the
  partitioning column compared with a constant expression or a query parameter (a function on
  the column, a subquery or anything else prunes nothing).
  https://cloud.google.com/bigquery/docs/querying-partitioned-tables#use_a_constant_filter_expression
- A filter on the leading clustering column prunes storage blocks; "only the scanned blocks are
  used to calculate the bytes". Blocks are modelled as runs of `block_bytes` (of all columns)
  in clustering order within each partition. A dry run does not prune blocks (upper bound).
  https://cloud.google.com/bigquery/docs/clustered-tables#block-pruning
- At least 10 MB per table referenced and per query; billed bytes are rounded up to 1 MB.
  https://cloud.google.com/bigquery/pricing#on_demand_pricing
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

MB = 1024 * 1024
MIN_BILLED_BYTES = 10 * MB
DEFAULT_BLOCK_BYTES = 64 * MB
"""The modelled storage block size (BigQuery does not publish one; stated, configurable)."""

_FIXED_SIZES = {
    "INT64": 8,
    "INTEGER": 8,
    "FLOAT64": 8,
    "FLOAT": 8,
    "NUMERIC": 16,
    "DECIMAL": 16,
    "BIGNUMERIC": 32,
    "BIGDECIMAL": 32,
    "BOOL": 1,
    "BOOLEAN": 1,
    "DATE": 8,
    "DATETIME": 8,
    "TIME": 8,
    "TIMESTAMP": 8,
    "INTERVAL": 16,
    "RANGE": 16,
}

_PARTITION_US = {"HOUR": 3_600_000_000, "DAY": 86_400_000_000}

_DUCK_TYPES = {
    "TIMESTAMP": "TIMESTAMPTZ",
    "DATETIME": "TIMESTAMP",
    "DATE": "DATE",
    "INT64": "BIGINT",
    "INTEGER": "BIGINT",
    "STRING": "VARCHAR",
    "FLOAT64": "DOUBLE",
    "FLOAT": "DOUBLE",
    "BOOL": "BOOLEAN",
    "BOOLEAN": "BOOLEAN",
    "NUMERIC": "DECIMAL(38, 9)",
}


class BillingError(ValueError):
    """The statement cannot be costed (the layer then bills the minimum)."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    mode: str = "NULLABLE"
    fields: tuple[Field, ...] = ()


@dataclass(frozen=True)
class Layout:
    """What billing needs to know about one table."""

    relation: str
    """The table's quoted DuckDB name."""
    fields: tuple[Field, ...]
    partition_field: str | None = None
    partition_type: str = "DAY"
    clustering: tuple[str, ...] = ()

    def field_named(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name.lower() == name.lower()), None)


@dataclass
class TableBytes:
    table: str
    columns: list[str]
    upper_bound: int
    scanned: int


@dataclass
class Estimate:
    """Bytes of one statement: `processed` after block pruning, `upper_bound` without it."""

    tables: list[TableBytes] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return sum(t.scanned for t in self.tables)

    @property
    def upper_bound(self) -> int:
        return sum(t.upper_bound for t in self.tables)

    def billed(self, *, dry_run: bool = False) -> int:
        return billed_bytes([t.upper_bound if dry_run else t.scanned for t in self.tables])


def billed_bytes(per_table: Sequence[int]) -> int:
    """10 MB minimum per referenced table and per query, rounded up to the MB (pricing page)."""
    if not per_table:
        return 0
    total = max(MIN_BILLED_BYTES, sum(max(MIN_BILLED_BYTES, b) for b in per_table))
    return math.ceil(total / MB) * MB


# -- data size --------------------------------------------------------------------------------


def size_sql(expr: str, f: Field, *, element: bool = False) -> str:
    """A DuckDB expression for BigQuery's logical size of `expr` (a value of field `f`)."""
    if f.mode == "REPEATED" and not element:
        inner = size_sql("x", f, element=True)
        return f"COALESCE(list_sum(list_transform({expr}, x -> {inner})), 0)"
    kind = f.type.upper()
    if kind in ("RECORD", "STRUCT"):
        parts = [size_sql(f"struct_extract({expr}, '{c.name}')", c) for c in f.fields]
        return f"(CASE WHEN {expr} IS NULL THEN 0 ELSE {' + '.join(parts) or '0'} END)"
    if kind in ("STRING", "JSON"):
        return (
            f"COALESCE(2 + strlen(CAST({expr} AS VARCHAR)), 0)"
            if kind == "STRING"
            else (f"COALESCE(strlen(CAST({expr} AS VARCHAR)), 0)")
        )
    if kind == "BYTES":
        return f"COALESCE(2 + octet_length({expr}), 0)"
    if kind == "GEOGRAPHY":
        return f"COALESCE(16 + 24 * ST_NPoints({expr}), 0)"
    size = _FIXED_SIZES.get(kind, 8)
    return f"(CASE WHEN {expr} IS NULL THEN 0 ELSE {size} END)"


def _row_size_sql(fields: Iterable[Field]) -> str:
    parts = [size_sql(f'"{f.name}"', f) for f in fields]
    return " + ".join(parts) if parts else "0"


# -- statement analysis -----------------------------------------------------------------------


@dataclass
class _Scan:
    """One table reference of a statement: its columns and the filters that may prune it."""

    name: tuple[str, str, str]
    alias: str
    columns: set[str] | None
    """None: every column."""
    where: exp.Expr | None


def table_key(t: exp.Table, default_project: str) -> tuple[str, str, str]:
    return (t.catalog or default_project, t.db, t.name)


def scans(statement: exp.Expr, default_project: str) -> list[_Scan]:
    """The base-table references of a statement with the columns each needs."""
    out: list[_Scan] = []
    ctes = {c.alias_or_name.lower() for c in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        if not table.db and table.name.lower() in ctes:
            continue
        if not table.name:
            continue
        select = table.find_ancestor(exp.Select, exp.Delete, exp.Update, exp.Merge)
        scope = select if select is not None else statement
        where = scope.args.get("where") if select is not None else None
        out.append(
            _Scan(
                table_key(table, default_project),
                table.alias_or_name,
                _columns_of(scope, statement),
                where.this if isinstance(where, exp.Where) else None,
            )
        )
    return out


def _columns_of(scope: exp.Expr, statement: exp.Expr) -> set[str] | None:
    """Column names referenced in `scope` (None for `SELECT *`). Over-approximate by design:
    a name that exists in the table is billed once wherever it appears in the statement."""
    # `COUNT(*)` references no column (a `SELECT COUNT(*)` with no filter bills 0 bytes).
    if any(not isinstance(s.parent, exp.Count) for s in scope.find_all(exp.Star)):
        return None
    return {c.name.lower() for c in statement.find_all(exp.Column) if c.name}


# -- filters to predicates over partitions and blocks -----------------------------------------


class _Params:
    def __init__(self, params: Mapping[str, tuple[str, Any]]) -> None:
        self._params = {k.lower(): v for k, v in params.items()}
        self.values: list[Any] = []

    def constant(self, node: exp.Expr, duck_type: str) -> str | None:
        """DuckDB SQL for a constant expression cast to `duck_type`, or None if not constant:
        a literal, a typed literal (`TIMESTAMP '...'`), a query parameter, or a CAST of one."""
        if isinstance(node, exp.Paren):
            return self.constant(node.this, duck_type)
        if isinstance(node, exp.Parameter | exp.Placeholder):
            found = self._params.get(str(node.name).lower())
            if found is None or isinstance(found[1], list):
                return None
            self.values.append(found[1])
            return f"CAST(? AS {duck_type})"
        if isinstance(node, exp.Cast):
            if isinstance(node.this, exp.Parameter):
                return self.constant(node.this, duck_type)
            if not isinstance(node.this, exp.Literal):
                return None
            return f"CAST({node.sql(dialect='duckdb')} AS {duck_type})"
        if isinstance(node, exp.Literal | exp.Neg) and node.find(exp.Column) is None:
            return f"CAST({node.sql(dialect='duckdb')} AS {duck_type})"
        return None


_FLIP: dict[type[exp.Expr], type[exp.Expr]] = {
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
    exp.EQ: exp.EQ,
}


def _is_column(node: exp.Expr, name: str, alias: str) -> bool:
    return (
        isinstance(node, exp.Column)
        and node.name.lower() == name.lower()
        and (not node.table or node.table.lower() == alias.lower())
    )


# Over the size caps on purpose: one case per SQL comparison shape BigQuery prunes on, as its docs
# list them.
def range_predicate(  # noqa: C901
    node: exp.Expr | None,
    column: str,
    alias: str,
    duck_type: str,
    lo: str,
    hi: str,
    params: _Params,
    *,
    hi_inclusive: bool,
    convert: Callable[[str], str] = lambda v: v,
) -> str:
    """SQL that is FALSE only when no value in [lo, hi] (or [lo, hi)) can satisfy `node`.

    Only comparisons of the bare column with constants, combined by AND/OR/IN/BETWEEN, narrow;
    anything else is TRUE (scanned), which is BigQuery's rule for pruning.
    """

    def go(n: exp.Expr | None) -> str:
        if n is None:
            return "TRUE"
        if isinstance(n, exp.Paren):
            return go(n.this)
        if isinstance(n, exp.And):
            return f"(({go(n.left)}) AND ({go(n.right)}))"
        if isinstance(n, exp.Or):
            return f"(({go(n.left)}) OR ({go(n.right)}))"
        if isinstance(n, exp.Between) and _is_column(n.this, column, alias):
            a = value(n.args["low"])
            b = value(n.args["high"])
            if a is None or b is None:
                return "TRUE"
            return f"({_cmp(exp.GTE, a)} AND {_cmp(exp.LTE, b)})"
        if isinstance(n, exp.In) and _is_column(n.this, column, alias) and n.expressions:
            values = [value(v) for v in n.expressions]
            if any(v is None for v in values):
                return "TRUE"
            return "(" + " OR ".join(_cmp(exp.EQ, v) for v in values if v) + ")"
        kind: type[exp.Expr] = type(n)
        if isinstance(n, exp.Binary) and kind in _FLIP:
            left, right = n.left, n.right
            if _is_column(right, column, alias) and not _is_column(left, column, alias):
                left, right, kind = right, left, _FLIP[kind]
            if _is_column(left, column, alias):
                v = value(right)
                if v is not None:
                    return _cmp(kind, v)
        return "TRUE"

    def value(n: exp.Expr) -> str | None:
        found = params.constant(n, duck_type)
        return convert(found) if found is not None else None

    def _cmp(kind: type[exp.Expr], v: str) -> str:
        upper = f"{hi} >= {v}" if hi_inclusive else f"{hi} > {v}"
        if kind is exp.GTE:
            return f"({upper})"
        if kind is exp.GT:
            return f"({hi} > {v})"
        if kind is exp.LT:
            return f"({lo} < {v})"
        if kind is exp.LTE:
            return f"({lo} <= {v})"
        return f"({lo} <= {v} AND {upper})"

    return go(node)


# -- the estimate -----------------------------------------------------------------------------


def _partition_start_sql(layout: Layout) -> tuple[str, str]:
    """(start µs of a row's partition, end µs) as DuckDB SQL, for time-unit partitioning."""
    assert layout.partition_field is not None
    f = layout.field_named(layout.partition_field)
    col = f'"{layout.partition_field}"'
    ts = f"CAST({col} AS TIMESTAMP)" if f is not None and f.type == "DATE" else col
    kind = layout.partition_type.upper()
    if kind in _PARTITION_US:
        step = _PARTITION_US[kind]
        start = f"(epoch_us({ts}) // {step}) * {step}"
        return start, f"({start} + {step})"
    unit = "month" if kind == "MONTH" else "year"
    start = f"epoch_us(date_trunc('{unit}', CAST({ts} AS TIMESTAMP)))"
    end = f"epoch_us(date_trunc('{unit}', CAST({ts} AS TIMESTAMP)) + INTERVAL 1 {unit})"
    return start, end


def _partition_value_type(layout: Layout) -> str:
    f = layout.field_named(layout.partition_field or "")
    return "TIMESTAMP" if f is not None and f.type == "DATETIME" else "TIMESTAMPTZ"


def scan_bytes(
    con: Any,
    layout: Layout,
    columns: set[str] | None,
    where: exp.Expr | None,
    alias: str,
    params: Mapping[str, tuple[str, Any]],
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    all_columns: bool = False,
) -> tuple[int, int]:
    """(bytes after partition pruning, bytes after block pruning too) of one table scan."""
    chosen = [
        f for f in layout.fields if all_columns or columns is None or f.name.lower() in columns
    ]
    p_part, p_block = _Params(params), _Params(params)
    part_start, part_end = ("0", "1")
    part_pred = "TRUE"
    if layout.partition_field:
        part_start, part_end = _partition_start_sql(layout)
        vtype = _partition_value_type(layout)
        part_pred = range_predicate(
            where,
            layout.partition_field,
            alias,
            vtype,
            "_p",
            "_pe",
            p_part,
            hi_inclusive=False,
            convert=lambda v: f"epoch_us({v})",
        )
    block_pred = "TRUE"
    lead = layout.field_named(layout.clustering[0]) if layout.clustering else None
    if lead is not None:
        duck = _DUCK_TYPES.get(lead.type.upper(), "VARCHAR")
        block_pred = range_predicate(
            where, lead.name, alias, duck, "_kmin", "_kmax", p_block, hi_inclusive=True
        )
    key = f'"{lead.name}"' if lead is not None else "NULL"
    sql = f"""
        WITH r AS (
            SELECT {part_start} AS _p, {part_end} AS _pe, {key} AS _k,
                   ({_row_size_sql(chosen)}) AS _sel, ({_row_size_sql(layout.fields)}) AS _all
            FROM {layout.relation}
        ), o AS (
            SELECT *, SUM(_all) OVER (
                PARTITION BY _p ORDER BY _k ROWS UNBOUNDED PRECEDING) AS _cum FROM r
        ), b AS (
            SELECT _p, _pe, CAST((_cum - 1) // {int(block_bytes)} AS BIGINT) AS _blk,
                   MIN(_k) AS _kmin, MAX(_k) AS _kmax, SUM(_sel) AS _sel
            FROM o GROUP BY _p, _pe, _blk
        )
        SELECT COALESCE(SUM(_sel), 0),
               COALESCE(SUM(CASE WHEN ({block_pred}) IS NOT FALSE THEN _sel ELSE 0 END), 0)
        FROM b WHERE ({part_pred}) IS NOT FALSE
    """  # noqa: S608 - identifiers come from the catalog, values are bound parameters
    # The block predicate comes first in the SQL text, then the partition predicate.
    row = con.execute(sql, p_block.values + p_part.values).fetchone()
    return int(row[0]), int(row[1])


def parse(sql: str) -> exp.Expr:
    try:
        statement = sqlglot.parse_one(sql, read="bigquery")
    except sqlglot.errors.ParseError as exc:
        raise BillingError(f"cannot parse: {exc}") from exc
    if statement is None:
        raise BillingError("empty statement")
    return statement


DML = (exp.Update, exp.Delete, exp.Merge)


def dml_target(statement: exp.Expr, default_project: str) -> tuple[str, str, str] | None:
    if isinstance(statement, DML):
        target = statement.this
        if isinstance(target, exp.Table):
            return table_key(target, default_project)
    return None


def estimate(
    con: Any,
    statement: exp.Expr,
    layouts: Mapping[tuple[str, str, str], Layout],
    params: Mapping[str, tuple[str, Any]],
    default_project: str,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Estimate:
    """The bytes a statement processes, table reference by table reference."""
    result = Estimate()
    if isinstance(statement, exp.Create | exp.Drop | exp.Alter | exp.Insert) and not (
        isinstance(statement, exp.Insert | exp.Create) and statement.find(exp.Select)
    ):
        return result
    target = dml_target(statement, default_project)
    for scan in scans(statement, default_project):
        layout = layouts.get(scan.name)
        if layout is None:
            continue
        upper, scanned = scan_bytes(
            con,
            layout,
            scan.columns,
            scan.where,
            scan.alias,
            params,
            block_bytes=block_bytes,
            # DML: "the sum of bytes for all columns in the table being updated" (pricing, DML).
            all_columns=scan.name == target,
        )
        result.tables.append(
            TableBytes(".".join(scan.name), sorted(scan.columns or []), upper, scanned)
        )
    return result


def rest_params(query_params: Sequence[Mapping[str, Any]] | None) -> dict[str, tuple[str, Any]]:
    """REST `queryParameters` as name -> (type, value); arrays as lists."""
    out: dict[str, tuple[str, Any]] = {}
    for p in query_params or []:
        name = p.get("name")
        ptype = p.get("parameterType", {})
        pvalue = p.get("parameterValue", {})
        if not name:
            continue
        if ptype.get("type") == "ARRAY":
            out[name] = ("ARRAY", [v.get("value") for v in pvalue.get("arrayValues", [])])
        else:
            out[name] = (str(ptype.get("type", "STRING")), pvalue.get("value"))
    return out
