"""Pre-flight checks of the configured source tables against BigQuery itself: the tables exist,
every selected and key column exists with a usable type, and the window query is accepted
(a dry run, which also proves the permission to query)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from harperbq.bigquery.read import run_query
from harperbq.bigquery.retry import PolicyRetry, RetryPolicy
from harperbq.bigquery.sql import (
    CURSOR_TYPES,
    PARTITION_KEY_TYPES,
    Column,
    SqlError,
    TableRef,
    columns_from_schema,
    window_query,
)
from harperbq.config import TableConfig


@dataclass(frozen=True)
class Check:
    table: str
    check: str
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"table": self.table, "check": self.check, "ok": self.ok, "detail": self.detail}


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return str(message).splitlines()[0][:300]


def check_table(
    client: bigquery.Client, table: TableConfig, policy: RetryPolicy
) -> Iterator[Check]:
    """Every check of one configured table, in order; stops where later checks cannot run."""
    tid = table.id
    try:
        ref = TableRef(table.project or client.project, table.dataset, table.table)
    except SqlError as exc:
        yield Check(tid, "table name", False, str(exc))
        return
    try:
        remote = client.get_table(str(ref), retry=PolicyRetry(policy, "get_table"))
    except api_exceptions.NotFound:
        yield Check(tid, "table exists", False, f"{ref} not found")
        return
    except Exception as exc:
        yield Check(tid, "table exists", False, f"{ref}: {type(exc).__name__}: {_message(exc)}")
        return
    yield Check(tid, "table exists", True, str(ref))

    schema = {f.name: Column.from_field(f) for f in remote.schema}
    wanted = table.columns if table.columns is not None else list(schema)
    missing = [c for c in wanted if c not in schema]
    yield Check(
        tid,
        "selected columns exist",
        not missing,
        f"missing: {', '.join(missing)}" if missing else f"{len(wanted)} column(s)",
    )
    keys = {
        "cursor": [table.cursor_column],
        "timestamp": [table.timestamp_column],
        "primary key": table.primary_key,
        "partition key": table.partition_key,
        "indexes": table.indexes,
    }
    for what, names in keys.items():
        if not names:
            continue
        absent = [n for n in names if n not in schema]
        if absent:
            yield Check(tid, f"{what} column(s) exist", False, f"missing: {', '.join(absent)}")
    cursor = schema.get(table.cursor_column)
    usable = False
    if cursor is not None:
        usable = cursor.type in CURSOR_TYPES and not cursor.repeated
        yield Check(
            tid,
            "cursor column type",
            usable,
            f"{cursor.name} is {cursor.type}"
            + ("" if usable else f"; use a column of type {', '.join(CURSOR_TYPES)}"),
        )
    bad_keys = [
        f"{schema[n].name} ({schema[n].type})"
        for n in table.partition_key
        if n in schema and (schema[n].type not in PARTITION_KEY_TYPES or schema[n].repeated)
    ]
    if bad_keys:
        yield Check(
            tid,
            "partition key types",
            False,
            f"{', '.join(bad_keys)}: use {', '.join(PARTITION_KEY_TYPES)} columns",
        )
    if missing or not usable or bad_keys or any(n not in schema for n in table.key_columns):
        return  # the dry run would only repeat the problems above
    assert cursor is not None
    try:
        columns = columns_from_schema(remote.schema, wanted)
        key = [schema[n] for n in table.partition_key]
        query = window_query(
            ref, columns, cursor, 0, 1, partition_key=key, partitions=table.partitions, parts=[0]
        )
        run_query(client, query, policy=policy, operation="preflight", dry_run=True)
    except Exception as exc:
        yield Check(tid, "window query accepted", False, f"{type(exc).__name__}: {_message(exc)}")
        return
    yield Check(tid, "window query accepted", True, "dry run")
