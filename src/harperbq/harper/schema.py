"""Create and evolve Harper tables from a neutral column description, choosing few indexes.

Why declared attributes: a schemaless Harper table indexes every attribute; declaring attributes
with types and indexing only the primary key, the cursor column and the configured `indexes` is
measured ~2.5-3x faster to write (see bench/harper_upsert.py).

Type mapping (BigQuery type -> Harper attribute type), chosen so that Harper accepts EVERY value
harperbq's converter writes and keeps it exactly (each choice is tested against a real Harper in
tests/integration/test_harper_types.py):

    STRING, BYTES (base64), DATE, DATETIME, TIME, TIMESTAMP, INTERVAL, GEOGRAPHY (WKT) -> String
    NUMERIC, BIGNUMERIC (exact decimal strings)                -> String (Float if numeric_as_float)
    FLOAT64                                                    -> Float (NaN/Inf arrive as null)
    BOOL                                                       -> Boolean
    INT64 (number, or decimal string beyond +-2^53)            -> Any (untyped)
    JSON, STRUCT/RECORD, RANGE, any REPEATED column, unknown   -> Any (untyped)
    GEOGRAPHY with geography_as_geojson                        -> Any

Rejected alternatives, with Harper 4.7.29's behaviour: for INT64, `Long`/`Int` refuse the decimal
strings (400) and `BigInt` loses the value 0 (it reads back as missing); `Date` truncates TIMESTAMP
to milliseconds and turns DATE/DATETIME into instants; `Bytes` stores the UTF-8 of the base64
text; `Float` refuses NUMERIC's decimal strings. Cost of untyped INT64: Harper's search casts a
numeric-looking search value to a number, so an INT64 beyond +-2^53 (stored as a string) cannot
be found by `equals`; and in an index strings sort after all numbers.

Harper cannot change an attribute's type, and `create_attribute` ignores types: columns added to
the source later become UNTYPED attributes. A column the existing table lacks, or a type change
that Harper would reject, follows `on_schema_change`: "fail" (default) raises
`SchemaConflictError` naming table, column and types; "evolve" adds the attribute, or drops the
attribute's declaration and re-adds it untyped (values are kept).

In a cluster `drop_attribute` does not replicate: the caller passes `untype` that evolves the
attribute on every node (`harperbq.sync.cluster.nodes.KnownNodes`); a node that refuses raises
`PeerSchemaError` after every other node was evolved, naming the requests to run there.

Race safety: every step tolerates another worker doing the same step at the same time
(`AlreadyExistsError` and `NotFound` on create/drop are expected outcomes, not errors).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from harperbq.harper.client import PRIMARY_KEY, HarperClient
from harperbq.harper.errors import (
    AlreadyExistsError,
    NotFound,
    PeerSchemaError,
    SchemaConflictError,
)
from harperbq.harper.models import Attribute, TableInfo

log = logging.getLogger("harperbq.harper.schema")

OnSchemaChange = Literal["fail", "evolve"]
UntypeAttribute = Callable[[str, str, str, bool], None]
"""(database, table, attribute, indexed) -> None: drop the declaration, re-add it untyped."""

_STRING_TYPES = frozenset(
    {"STRING", "BYTES", "DATE", "DATETIME", "TIME", "TIMESTAMP", "INTERVAL", "GEOGRAPHY"}
)
_NUMERIC_TYPES = frozenset({"NUMERIC", "DECIMAL", "BIGNUMERIC", "BIGDECIMAL"})
_FLOAT_TYPES = frozenset({"FLOAT64", "FLOAT"})
_BOOL_TYPES = frozenset({"BOOL", "BOOLEAN"})
_INT_TYPES = frozenset({"INT64", "INTEGER", "INT", "SMALLINT", "BIGINT", "TINYINT", "BYTEINT"})
_ANY_TYPES = frozenset(
    {
        "JSON",
        "STRUCT",
        "RECORD",
        "RANGE",
        "ARRAY",
    }
)


@dataclass(frozen=True)
class ColumnSpec:
    """A source column, described with plain strings (no BigQuery library types).

    `bq_type` is the BigQuery type name as the API reports it ("INT64" or legacy "INTEGER", may
    carry parameters like "NUMERIC(10, 2)"); `mode` is NULLABLE, REQUIRED or REPEATED; `fields`
    the sub-columns of a STRUCT/RECORD.
    """

    name: str
    bq_type: str
    mode: str = "NULLABLE"
    fields: tuple[ColumnSpec, ...] = ()

    @property
    def base_type(self) -> str:
        return self.bq_type.split("(", 1)[0].split("<", 1)[0].strip().upper()


@dataclass(frozen=True)
class TypeOptions:
    """Converter options that change the JSON shape of a value (and so the Harper type)."""

    numeric_as_float: bool = False
    geography_as_geojson: bool = False


def harper_type(column: ColumnSpec, options: TypeOptions | None = None) -> str:
    """The Harper attribute type for a source column (see the module docstring for why)."""
    options = options or TypeOptions()
    base = column.base_type
    if column.mode.upper() == "REPEATED":
        return "Any"
    if base == "GEOGRAPHY" and options.geography_as_geojson:
        return "Any"
    if base in _STRING_TYPES:
        return "String"
    if base in _NUMERIC_TYPES:
        return "Float" if options.numeric_as_float else "String"
    if base in _FLOAT_TYPES:
        return "Float"
    if base in _BOOL_TYPES:
        return "Boolean"
    if base in _INT_TYPES:
        return "Any"
    if base not in _ANY_TYPES:
        log.warning(
            "unknown source type %r for column %r: stored untyped", column.bq_type, column.name
        )
    return "Any"


def target_attributes(
    columns: Sequence[ColumnSpec],
    *,
    cursor_column: str | None,
    indexes: Sequence[str] = (),
    options: TypeOptions | None = None,
    primary_key: str = PRIMARY_KEY,
) -> list[Attribute]:
    """Declared attributes for a target table: typed, indexed only where asked.

    Indexed: the primary key, `cursor_column` (window counts scan it) and `indexes`. A source
    column named like the primary key is not declared again: the engine's record id fills it.
    """
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate column names: {', '.join(duplicates)}")
    wanted = set(indexes) | ({cursor_column} if cursor_column else set())
    unknown = sorted(wanted - set(names))
    if unknown:
        raise ValueError(
            f"index/cursor column(s) {', '.join(unknown)} are not among the selected columns "
            f"({', '.join(names)})"
        )
    out = [Attribute(primary_key, "String", is_primary_key=True)]
    for column in columns:
        if column.name == primary_key:
            continue
        out.append(Attribute(column.name, harper_type(column, options), column.name in wanted))
    return out


@dataclass(frozen=True)
class TableReport:
    """What `ensure_table` found and did."""

    database: str
    table: str
    created: bool
    schema_defined: bool
    added: tuple[str, ...] = ()
    evolved: tuple[str, ...] = ()
    missing_indexes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def ensure_target_table(
    client: HarperClient,
    database: str,
    table: str,
    columns: Sequence[ColumnSpec],
    *,
    cursor_column: str | None,
    indexes: Sequence[str] = (),
    on_schema_change: OnSchemaChange = "fail",
    options: TypeOptions | None = None,
    untype: UntypeAttribute | None = None,
) -> TableReport:
    """Make `database.table` ready to take the converted rows of `columns` (see module doc)."""
    attributes = target_attributes(
        columns, cursor_column=cursor_column, indexes=indexes, options=options
    )
    sources = {
        c.name: f"{c.mode.upper()} {c.bq_type}" if c.mode.upper() == "REPEATED" else c.bq_type
        for c in columns
    }
    return ensure_table(
        client,
        database,
        table,
        attributes,
        on_schema_change=on_schema_change,
        sources=sources,
        untype=untype,
    )


def ensure_table(
    client: HarperClient,
    database: str,
    table: str,
    attributes: Sequence[Attribute],
    *,
    on_schema_change: OnSchemaChange = "fail",
    primary_key: str = PRIMARY_KEY,
    sources: Mapping[str, str] | None = None,
    appear_timeout_s: float = 30.0,
    untype: UntypeAttribute | None = None,
) -> TableReport:
    """Create the table with `attributes` if missing, else add missing attributes and check types.

    Idempotent and safe to run concurrently from several workers or nodes.
    """
    if on_schema_change not in ("fail", "evolve"):
        raise ValueError("on_schema_change must be 'fail' or 'evolve'")
    created = False
    try:
        info = client.describe_table(database, table)
    except NotFound:
        try:
            client.create_table(database, table, primary_key=primary_key, attributes=attributes)
            created = True
        except AlreadyExistsError:
            pass  # another worker won the race; its definition is checked below like any other
        info = _wait_for_table(client, database, table, appear_timeout_s)
    if info.primary_key != primary_key:
        raise SchemaConflictError(
            f"Harper table {database}.{table} has primary key '{info.primary_key}', harperbq "
            f"writes '{primary_key}'; drop the table or choose another target table",
            operation="describe_table",
            url=client.url,
        )
    if not info.schema_defined:
        warning = (
            f"Harper table {database}.{table} is schemaless: Harper indexes every attribute, "
            "which makes writes about 3x slower; drop it and let harperbq create it to fix"
        )
        log.warning(warning)
        return TableReport(database, table, created, False, warnings=(warning,))
    untype = untype or functools.partial(_untype, client)
    return _reconcile(client, info, attributes, on_schema_change, sources or {}, created, untype)


def _wait_for_table(client: HarperClient, database: str, table: str, timeout_s: float) -> TableInfo:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return client.describe_table(database, table)
        except NotFound:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _reconcile(
    client: HarperClient,
    info: TableInfo,
    attributes: Sequence[Attribute],
    on_schema_change: OnSchemaChange,
    sources: Mapping[str, str],
    created: bool,
    untype: UntypeAttribute,
) -> TableReport:
    database, table = info.database, info.name
    conflicts: list[tuple[Attribute, Attribute]] = []
    missing: list[Attribute] = []
    missing_indexes: list[str] = []
    for want in attributes:
        if want.name == info.primary_key:
            continue
        have = info.attribute(want.name)
        if have is None:
            missing.append(want)
            continue
        if not have.untyped and have.type != want.type:
            conflicts.append((have, want))
        if want.indexed and not (have.indexed or have.is_primary_key):
            missing_indexes.append(want.name)
    if (conflicts or (missing and not created)) and on_schema_change == "fail":
        details = "; ".join(
            [
                f"column '{want.name}': Harper attribute type {have.type}, source type now "
                f"{sources.get(want.name, '?')} (needs {want.type or 'untyped'})"
                for have, want in conflicts
            ]
            + [
                f"new column '{want.name}' ({sources.get(want.name, '?')}) has no attribute"
                for want in missing
            ]
        )
        raise SchemaConflictError(
            f"schema change in Harper table {database}.{table}: {details}. Set "
            "onSchemaChange: evolve to make these attributes untyped (existing values are kept), "
            "or migrate the table by hand.",
            operation="ensure_table",
            url=client.url,
        )
    evolved: list[str] = []
    refused: list[PeerSchemaError] = []
    for have, want in conflicts:
        log.warning(
            "evolving %s.%s.%s: typed %s -> untyped (source type now %s)",
            database,
            table,
            want.name,
            have.type,
            sources.get(want.name, "?"),
        )
        try:
            untype(database, table, want.name, have.indexed or want.indexed)
        except PeerSchemaError as exc:  # done here and on the others: report the node(s)
            refused.append(exc)
        evolved.append(want.name)
    if refused:
        raise refused[0]
    for want in missing:
        _add_attribute(client, database, table, want.name, want.indexed)
    warnings = []
    if missing_indexes:
        warnings.append(
            f"attributes {', '.join(missing_indexes)} of {database}.{table} should be indexed but "
            "are not (the table predates the setting); counts over them scan the table"
        )
        log.warning(warnings[-1])
    return TableReport(
        database,
        table,
        created,
        True,
        added=tuple(a.name for a in missing),
        evolved=tuple(evolved),
        missing_indexes=tuple(missing_indexes),
        warnings=tuple(warnings),
    )


def _untype(client: HarperClient, database: str, table: str, name: str, indexed: bool) -> None:
    """On one node: drop the declaration and re-add the attribute untyped (values are kept)."""
    with contextlib.suppress(NotFound):  # another worker evolved it already
        client.drop_attribute(database, table, name)
    _add_attribute(client, database, table, name, indexed)


def _add_attribute(
    client: HarperClient, database: str, table: str, name: str, indexed: bool
) -> None:
    with contextlib.suppress(AlreadyExistsError):  # added concurrently by another worker
        client.create_attribute(database, table, name, indexed=indexed)
