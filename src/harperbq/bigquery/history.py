"""What BigQuery's change history offers for one table, and the read mode chosen from it.

Why here: these are facts about BigQuery (regular tables have `APPENDS`; `CHANGES` needs
`enable_change_history`; views and external tables have neither; ranges must start inside the
dataset's time-travel window), found out with free dry runs, and the same answer must reach the
sync (`sync.feed_source`) and `config check`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from harperbq.bigquery import server_clock
from harperbq.bigquery.retry import call_with_retry
from harperbq.bigquery.sql import TableRef
from harperbq.config import TableConfig
from harperbq.retry import RetryPolicy

log = logging.getLogger("harperbq.bigquery.history")

Mode = Literal["appends", "changes", "none"]
Requested = Literal["auto", "appends", "changes", "none"]
DEFAULT_TIME_TRAVEL_HOURS = 7 * 24


@dataclass(frozen=True)
class HistorySupport:
    """What the table accepts: `APPENDS` (a regular table), `CHANGES` (with the option)."""

    appends: bool
    changes: bool
    table_type: str
    created: datetime | None = None


def support(client: bigquery.Client, ref: TableRef, policy: RetryPolicy) -> HistorySupport:
    """Ask BigQuery: the table's type, then a dry run (free) of each function over a
    one-minute range that ended a minute ago."""
    found = call_with_retry(
        lambda: client.get_table(str(ref), retry=None),  # type: ignore[arg-type]
        policy,
        operation="get_table",
    )
    kind = found.table_type or "TABLE"
    appends = kind == "TABLE" and _accepts(client, ref, "APPENDS")
    changes = appends and _accepts(client, ref, "CHANGES")
    return HistorySupport(appends, changes, kind, found.created)


class ProbeRefusedError(Exception):
    """BigQuery refused a probe for a reason other than the table lacking change history (a
    range out of bounds, a permission, a typo): an error to fix, never taken for a mode."""


_UNSUPPORTED = {
    # What BigQuery says when the table itself cannot have the function: only these make
    # a refusal mean "no change history" (anything else is `ProbeRefusedError`).
    "APPENDS": ("regular", "view", "external", "not supported", "materialized"),
    "CHANGES": ("enable_change_history", "change history"),
}


def refusal_means_unsupported(function: str, message: str) -> bool:
    text = message.lower()
    return any(marker in text for marker in _UNSUPPORTED[function])


def _accepts(client: bigquery.Client, ref: TableRef, function: str) -> bool:
    # BigQuery's now, not ours: a range ending in its future is refused (`server_clock`).
    now = datetime.fromtimestamp(server_clock.for_client(client).now(), UTC).replace(microsecond=0)
    config = bigquery.QueryJobConfig(
        dry_run=True,
        use_query_cache=False,
        query_parameters=[
            bigquery.ScalarQueryParameter("lo", "TIMESTAMP", now - timedelta(minutes=2)),
            bigquery.ScalarQueryParameter("hi", "TIMESTAMP", now - timedelta(minutes=1)),
        ],
    )
    sql = f"SELECT 1 FROM {function}(TABLE {ref.sql}, @lo, @hi)"  # noqa: S608 - a quoted ref
    try:
        client.query(sql, job_config=config)
    except (api_exceptions.BadRequest, api_exceptions.InvalidArgument) as exc:
        if not refusal_means_unsupported(function, str(exc)):
            raise ProbeRefusedError(
                f"BigQuery refused the {function} probe of {ref} for a reason other than a "
                f"missing change history: {exc}; fix the cause, or set changeFeed: none"
            ) from exc
        log.info("%s refused on %s: %s", function, ref, exc)
        return False
    return True


def time_travel_hours(client: bigquery.Client, ref: TableRef, policy: RetryPolicy) -> int:
    """The dataset's `max_time_travel_hours` (7 days when unset)."""
    found: Any = call_with_retry(
        lambda: client.get_dataset(f"{ref.project}.{ref.dataset}", retry=None),  # type: ignore[arg-type]
        policy,
        operation="get_dataset",
    )
    hours = getattr(found, "max_time_travel_hours", None)
    return int(hours) if hours else DEFAULT_TIME_TRAVEL_HOURS


class FeedUnavailableError(Exception):
    """The configured `changeFeed` cannot read this table: the configuration must change."""

    permanent = True


@dataclass(frozen=True)
class FeedChoice:
    mode: Mode
    reason: str


def choose(
    requested: Requested,
    *,
    table: str,
    appends_ok: bool,
    changes_ok: bool,
    keyed: bool,
    mirror_deletes: bool,
) -> FeedChoice:
    """The mode for a table, from what was configured and what BigQuery accepts for it
    (`appends_ok`: a regular table; `changes_ok`: with `enable_change_history`). Raises
    `FeedUnavailableError` naming the fix when an explicit choice cannot work."""
    if requested == "none":
        return FeedChoice("none", "changeFeed: none (event-time windows, by choice)")
    if requested == "appends" and not appends_ok:
        raise FeedUnavailableError(
            f"changeFeed: appends cannot read {table}: BigQuery's APPENDS works on regular "
            "tables only (not views, external or wildcard tables); set changeFeed: none"
        )
    if requested == "changes" and not changes_ok:
        raise FeedUnavailableError(
            f"changeFeed: changes cannot read {table}: CHANGES needs the table option "
            f"enable_change_history (ALTER TABLE `{table}` SET OPTIONS "
            "(enable_change_history = TRUE)); or set changeFeed: appends"
        )
    if requested in ("appends", "changes"):
        return FeedChoice(requested, f"changeFeed: {requested} (configured)")
    if not appends_ok:
        return FeedChoice("none", "no change history (a view or external table): event-time")
    if changes_ok and keyed:
        return FeedChoice("changes", "enable_change_history is set and the table has a key")
    if mirror_deletes:
        return FeedChoice(
            "none",
            "deletes: mirror and no enable_change_history: APPENDS cannot see deletes, so "
            "event-time windows with reconciliation (set the option to use changes)",
        )
    return FeedChoice("appends", "a regular table: inserts by commit time")


def resolve(
    client: bigquery.Client, ref: TableRef, table: TableConfig, policy: RetryPolicy
) -> tuple[FeedChoice, datetime | None]:
    """The mode the sync reads `table` by (`config check` shows the same answer), and when
    the table was created (a snapshot cannot be older)."""
    if table.change_feed == "none":
        return FeedChoice("none", "changeFeed: none (event-time windows, by choice)"), None
    found = support(client, ref, policy)
    choice = choose(
        table.change_feed,
        table=str(ref),
        appends_ok=found.appends,
        changes_ok=found.changes,
        keyed=bool(table.primary_key),
        mirror_deletes=table.deletes == "mirror",
    )
    return choice, found.created
