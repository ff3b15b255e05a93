"""Pre-flight checks of the configured source tables against BigQuery itself: the tables exist,
every selected and key column exists with a usable type, the window query is accepted (a dry
run, which also proves the permission to query) and what one window would bill, and a Storage
Read session can be opened (the permission the query path does not need)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from harperbq.bigquery import history
from harperbq.bigquery.read import StorageReader, run_query
from harperbq.bigquery.retry import PolicyRetry
from harperbq.bigquery.sql import (
    CURSOR_TYPES,
    PARTITION_KEY_TYPES,
    Column,
    SqlError,
    TableRef,
    change_query,
    columns_from_schema,
    window_query,
    window_restriction,
)
from harperbq.config import TableConfig
from harperbq.cost import Prices, human_bytes
from harperbq.retry import RetryPolicy


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


READ_SESSION_ROLE = "roles/bigquery.readSessionUser"
WINDOW_PROBE_S = 3600
"""The window the cost check prices: the last hour, the steady state's worst case per poll."""


def layout_text(remote: bigquery.Table, cursor: str) -> str:
    """How the table is partitioned and clustered, and what that means for a window query."""
    tp, rp = remote.time_partitioning, remote.range_partitioning
    if tp is not None:
        parts = f"partitioned by {tp.type_} on {tp.field or '_PARTITIONTIME (ingestion time)'}"
        if tp.expiration_ms:
            parts += f" (partitions expire after {tp.expiration_ms / 86_400_000:g} d)"
    elif rp is not None:
        parts = f"partitioned by integer range on {rp.field}"
    else:
        parts = "not partitioned"
    clustered = remote.clustering_fields or []
    text = parts + (f", clustered by {', '.join(clustered)}" if clustered else ", not clustered")
    pruned_by_cursor = tp is not None and tp.field == cursor
    if clustered and clustered[0] == cursor:
        return text + f"; window queries prune blocks on {cursor}"
    if pruned_by_cursor:
        return text + f"; window queries bill the whole {tp.type_.lower()} partition of {cursor}"
    return text + f"; window queries on {cursor} bill the selected columns of the WHOLE table"


def feed_check(
    client: bigquery.Client, table: TableConfig, ref: TableRef, policy: RetryPolicy
) -> tuple[Check, str]:
    """How the sync will read the table (`changeFeed`), found out as the sync does; and the
    mode (`none` when it cannot be found out)."""
    try:
        choice, _ = history.resolve(client, ref, table, policy)
    except history.FeedUnavailableError as exc:
        return Check(table.id, "change feed", False, str(exc)), "none"
    except Exception as exc:
        failed = f"{type(exc).__name__}: {_message(exc)}"
        return Check(table.id, "change feed", False, failed), "none"
    text = f"{choice.mode}: {choice.reason}"
    if choice.mode == "appends":
        text += "; UPDATE and DELETE statements are not seen (use changes for those)"
    if choice.mode != "none":
        hours = history.time_travel_hours(client, ref, policy)
        text += (
            f"; a sync away longer than the {hours} h time-travel window resumes through a snapshot"
        )
    return Check(table.id, "change feed", True, text), choice.mode


def _billed(processed: int) -> int:
    """BigQuery's on-demand rule: at least 10 MB, rounded up to the MB."""
    mb = 1024 * 1024
    return max(10 * mb, -(-processed // mb) * mb)


# Over the size caps on purpose: one check after another, each reporting its own problem: a list,
# not a tangle.
def check_table(  # noqa: C901, PLR0912, PLR0915
    client: bigquery.Client,
    table: TableConfig,
    policy: RetryPolicy,
    storage: StorageReader | None = None,
    prices: Prices | None = None,
    now_us: int | None = None,
) -> Iterator[Check]:
    """Every check of one configured table, in order; stops where later checks cannot run.
    With `storage`, also opens a Storage Read session over the same window (not read)."""
    tid = table.id
    try:
        ref = TableRef(table.project_id or client.project, table.dataset, table.table)
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
    yield Check(tid, "layout", True, layout_text(remote, table.cursor_column))
    feed, mode = feed_check(client, table, ref, policy)
    yield feed

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
    hi = now_us if now_us is not None else int(time.time() * 1_000_000)
    lo = hi - WINDOW_PROBE_S * 1_000_000
    if cursor.type == "INT64":  # an integer cursor's unit is unknown: price the whole range
        lo, hi = -(2**63), 2**63 - 1
    columns = columns_from_schema(remote.schema, wanted)
    try:
        key = [schema[n] for n in table.partition_key]
        if mode in ("appends", "changes"):  # what the sync runs: the last hour's commits
            now_us = hi if cursor.type != "INT64" else int(time.time() * 1_000_000)
            query = change_query(
                ref,
                columns,
                mode.upper(),
                now_us - WINDOW_PROBE_S * 1_000_000,
                now_us - 60 * 1_000_000,
                partition_key=key,
                partitions=table.partitions,
            )
        else:
            query = window_query(
                ref,
                columns,
                cursor,
                lo,
                hi,
                partition_key=key,
                partitions=table.partitions,
                parts=[0],
            )
        result = run_query(client, query, policy=policy, operation="preflight", dry_run=True)
    except Exception as exc:
        yield Check(tid, "window query accepted", False, f"{type(exc).__name__}: {_message(exc)}")
        return
    processed = result.stats.bytes_processed
    dollars = (prices or Prices()).dollars(_billed(processed))
    yield Check(
        tid,
        "window query accepted",
        True,
        f"dry run of the last hour{' of commits' if mode != 'none' else ''}: "
        f"{human_bytes(processed)} processed, {human_bytes(_billed(processed))} billed "
        f"(≈ ${dollars:.4f}) per query"
        + (
            ", one query per window for all workers"
            if mode != "none"
            else " and worker (an upper bound: a dry run does not prune clustered blocks)"
        ),
    )
    if storage is None:
        return
    restriction = window_restriction(cursor, lo, hi)
    try:
        scanned = storage.estimate(ref, [c.name for c in columns], restriction)
    except api_exceptions.PermissionDenied as exc:
        yield Check(
            tid,
            "Storage Read session",
            False,
            f"permission denied ({_message(exc)}): grant {READ_SESSION_ROLE} "
            "(bigquery.readsessions.create) on the billing project, or set readApi: query",
        )
        return
    except Exception as exc:
        yield Check(tid, "Storage Read session", False, f"{type(exc).__name__}: {_message(exc)}")
        return
    yield Check(
        tid,
        "Storage Read session",
        True,
        f"opened for the last hour: {human_bytes(scanned)} would be scanned "
        f"(≈ ${(prices or Prices()).dollars(0, scanned):.4f})",
    )
