"""Per-table checks and resolution: the global `sync` defaults merged in, then numbers,
identity (ids, names, targets) and columns checked, each problem at the key that set it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ValidationError,
)

from harperbq.config.models import GlobalSync, SyncSettings, TableModel
from harperbq.config.problems import Checker
from harperbq.config.resolved import TableConfig
from harperbq.config.values import (
    COLUMN_NAME,
    DATASET_NAME,
    DAY,
    HARPER_NAME,
    PROJECT_NAME,
    TABLE_ID,
    TABLE_NAME,
)

_LEGACY_KEYS = ("dataset", "table", "timestampColumn", "columns", "targetTable")


def _raw_tables(raw: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(path, raw table mapping) of every configured table, legacy form included."""
    bq = raw.get("bigquery")
    if not isinstance(bq, dict):
        return
    tables = bq.get("tables")
    if isinstance(tables, list):
        for i, table in enumerate(tables):
            yield f"bigquery.tables[{i}]", table
    if tables is None and any(k in bq for k in ("dataset", "table", "timestampColumn")):
        yield "bigquery", {"id": "default", **{k: bq[k] for k in _LEGACY_KEYS if k in bq}}


def settings_of(model: SyncSettings) -> dict[str, Any]:
    return {name: getattr(model, name) for name in SyncSettings.model_fields}


def _merged(path: str, table: TableModel, defaults: GlobalSync, check: Checker) -> dict[str, Any]:
    """Each sync setting from where it was written: the table, its `sync` block, the global
    block; else the global block's value is the built-in default."""
    values: dict[str, Any] = {}
    for name, info in SyncSettings.model_fields.items():
        source = _setter(name, table, defaults)
        if (
            name in table.model_fields_set
            and table.sync is not None
            and name in table.sync.model_fields_set
            and getattr(table, name) != getattr(table.sync, name)
        ):
            check.add(
                f"{path}.sync.{info.alias}",
                f"also set as {path}.{info.alias} with a different value",
                getattr(table.sync, name),
                "set it in one place only",
            )
        values[name] = getattr(source, name)
    return values


def _setter(name: str, table: TableModel, defaults: GlobalSync) -> SyncSettings:
    """The block whose value of a sync setting applies to the table."""
    if name in table.model_fields_set:
        return table
    if table.sync is not None and name in table.sync.model_fields_set:
        return table.sync
    return defaults


MAX_BATCH_SIZE = 1_000_000
"""Rows per window: far above any useful size (the defaults are 10 000 / 1 000 / 500), and low
enough that a window fits in memory and every stored number stays an exact Harper `Long`."""

# (key, field, upper bound in seconds) of the sync durations with a bound below 100 years.
_SYNC_DURATION_LIMITS: tuple[tuple[str, str, float], ...] = (
    ("pollInterval", "poll_interval_s", DAY),
    ("settle", "settle_s", 7 * DAY),
    ("reconcileInterval", "reconcile_interval_s", 7 * DAY),
    ("lateness", "lateness_s", 366 * DAY),
    ("catchupThreshold", "catchup_threshold_s", 366 * DAY),
    ("steadyThreshold", "steady_threshold_s", 366 * DAY),
)


def check_numbers(values: Mapping[str, Any], where: Callable[[str], str], check: Checker) -> bool:
    """Nonsensical sync numbers; `where` gives the path a key was set at. True when fine."""
    before = len(check.problems)
    for key, name in (
        ("initialBatchSize", "initial_batch_size"),
        ("catchupBatchSize", "catchup_batch_size"),
        ("steadyBatchSize", "steady_batch_size"),
    ):
        if values[name] <= 0:
            check.add(where(key), "must be at least 1", values[name], "use a batch size >= 1")
        elif values[name] > MAX_BATCH_SIZE:
            check.add(
                where(key),
                f"must be at most {MAX_BATCH_SIZE:,} rows (one window is held in memory)",
                values[name],
                f"use a batch size between 1 and {MAX_BATCH_SIZE:,}",
            )
    for key, name, limit in _SYNC_DURATION_LIMITS:
        check.at_most(where(key), values[name], limit)
    steady, catchup = values["steady_threshold_s"], values["catchup_threshold_s"]
    if steady > catchup:
        check.add(
            where("steadyThreshold"),
            f"steadyThreshold ({steady:g} s) is above catchupThreshold ({catchup:g} s)",
            steady,
            "steadyThreshold must be at most catchupThreshold (defaults 300 and 3600 s)",
        )
    if not 1 <= values["partitions"] <= 4096:
        check.add(
            where("partitions"),
            "must be between 1 and 4096",
            values["partitions"],
            "use a partition count such as 16",
        )
    for key, name, fix in (
        ("pollInterval", "poll_interval_s", "use e.g. 30000 (ms)"),
        ("reconcileInterval", "reconcile_interval_s", 'use e.g. "5m"'),
    ):
        if values[name] <= 0:
            check.add(where(key), "must be above 0", values[name], fix)
    retention, lateness = values["retention_s"], values["lateness_s"]
    if retention is not None and retention <= lateness:
        check.add(
            where("retention"),
            f"retention ({retention:g} s) is not longer than lateness ({lateness:g} s): "
            "late rows would be expired as soon as they are synced",
            retention,
            "make retention longer than lateness",
        )
    return len(check.problems) == before


def _check_identity(path: str, table: TableModel, check: Checker) -> bool:
    ok = True
    for name, pattern, what in (
        ("id", TABLE_ID, "letters, digits, '_' or '-'"),
        ("dataset", DATASET_NAME, "letters, digits or '_'"),
        ("table", TABLE_NAME, "letters, digits, '_' or '-'"),
    ):
        value = getattr(table, name)
        if not pattern.match(value):
            check.add(f"{path}.{name}", f"not a valid {name}", value, f"use {what}")
            ok = False
    if table.project_id is not None and not PROJECT_NAME.match(table.project_id):
        check.add(f"{path}.projectId", "not a valid project id", table.project_id)
        ok = False
    target = table.target_table or table.table
    if not HARPER_NAME.match(target):
        check.add(
            f"{path}.targetTable",
            "not a valid Harper table name",
            target,
            "use letters, digits and '_' (not starting with a digit), e.g. VesselPositions",
        )
        ok = False
    return ok


def _check_columns(
    path: str,
    columns: list[str] | None,
    named: Mapping[str, list[str]],
    where: Callable[[str], str],
    check: Checker,
) -> bool:
    """Column names valid, listed once, and every key column among the selected columns."""
    before = len(check.problems)
    for key, names in [("columns", columns or []), *named.items()]:
        for i, name in enumerate(names):
            if not COLUMN_NAME.match(name):
                at = f"{path}.columns" if key == "columns" else where(key)
                if key in ("columns", "indexes", "primaryKey", "partitionKey"):
                    at += f"[{i}]"
                check.add(
                    at,
                    "not a valid BigQuery column name",
                    name,
                    "use letters, digits and '_', not starting with a digit",
                )
    for key in ("primaryKey", "partitionKey", "indexes"):
        names = named.get(key, [])
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            check.add(where(key), "lists a column twice", duplicates, "list each column once")
    if columns is None:
        return len(check.problems) == before
    if not columns:
        check.add(
            f"{path}.columns",
            "empty column list",
            [],
            "list the columns to sync, or write '*' for all of them",
        )
        return False
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        check.add(f"{path}.columns", "lists a column twice", duplicates, "list each once")
    selected = set(columns)
    for key, names in named.items():
        missing = [n for n in names if n not in selected]
        if missing:
            check.add(
                where(key),
                f"{key} column(s) {', '.join(missing)} not among the selected columns",
                missing if len(missing) > 1 else missing[0],
                f"add {', '.join(missing)} to {path}.columns",
            )
    return len(check.problems) == before


def _resolve_table(
    path: str, table: TableModel, defaults: GlobalSync, check: Checker
) -> TableConfig | None:
    values = _merged(path, table, defaults, check)

    def where(key: str) -> str:
        return f"{path}.{key}" if key == "timestampColumn" else _where(path, key, table, defaults)

    ok = _check_identity(path, table, check)
    ok = check_numbers(values, where, check) and ok
    timestamp = table.timestamp_column
    cursor = values["cursor_column"] or timestamp
    if cursor is None:
        check.add(
            f"{path}.timestampColumn",
            "no cursor column: neither timestampColumn nor cursorColumn is set",
            None,
            "set timestampColumn to the table's event-time column",
        )
        return None
    timestamp = timestamp or cursor
    primary_key = list(values["primary_key"])
    partition_key = list(values["partition_key"] or primary_key or [cursor])
    named: dict[str, list[str]] = {"timestampColumn": [timestamp]}
    if cursor != timestamp:
        named["cursorColumn"] = [cursor]
    named["primaryKey"] = primary_key
    if values["partition_key"] is not None:
        named["partitionKey"] = partition_key
    named["indexes"] = list(values["indexes"])
    ok = _check_columns(path, table.columns, named, where, check) and ok
    if values["change_feed"] == "changes" and not primary_key:
        check.add(
            where("changeFeed"),
            "changes needs a primary key: updates and deletes are applied to the record of "
            "their key",
            "changes",
            "set primaryKey, or use changeFeed: appends",
        )
        ok = False
    if not ok:
        return None
    resolved = {name: getattr(table, name) for name in TableModel.model_fields}
    resolved.update(
        values,
        timestamp_column=timestamp,
        cursor_column=cursor,
        primary_key=primary_key,
        partition_key=partition_key,
        indexes=list(values["indexes"]),  # the global block's own list, shared otherwise
        target_table=table.target_table or table.table,
        sync=None,  # merged in
    )
    # Every value was validated by TableModel: validating again would re-read them as the
    # file's units (pollInterval's milliseconds).
    return TableConfig.model_construct(table.model_fields_set, **resolved)


def _where(path: str, key: str, table: TableModel, defaults: GlobalSync) -> str:
    """Where a sync key's effective value was set: the table, its `sync` block, or global `sync`
    (the table's own key when none of them set it)."""
    source = _setter(_FIELD_OF[key], table, defaults)
    if source is table.sync:
        return f"{path}.sync.{key}"
    if source is defaults and _FIELD_OF[key] in defaults.model_fields_set:
        return f"sync.{key}"
    return f"{path}.{key}"


_FIELD_OF = {f.alias: name for name, f in SyncSettings.model_fields.items() if f.alias}


_M = TypeVar("_M", bound=BaseModel)


def lenient(model: type[_M], data: Any) -> _M | None:
    """The model without the keys that fail validation (already reported by the whole-file
    validation), so the checks of the rest can still run; None when that is impossible."""
    if not isinstance(data, dict):
        return None
    data = dict(data)
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            bad = {e["loc"][0] for e in exc.errors() if e["loc"] and e["type"] != "missing"}
            if not bad & set(data) or any(e["type"] == "missing" for e in exc.errors()):
                return None
            data = {k: v for k, v in data.items() if k not in bad}
    return None


def validate_tables(
    raw: Mapping[str, Any], defaults: GlobalSync, check: Checker
) -> list[TableConfig]:
    """Validate each table on its own so one bad table cannot hide another's problems."""
    tables: list[TableConfig] = []
    ids: dict[str, str] = {}
    targets: dict[str, str] = {}
    for path, data in _raw_tables(raw):
        model = lenient(TableModel, data)
        if model is None:
            continue  # structural problems are reported by the whole-file validation
        resolved = _resolve_table(path, model, defaults, check)
        if model.id in ids:
            check.add(
                f"{path}.id",
                f"duplicate table id (also used by {ids[model.id]})",
                model.id,
                "give every table a unique id",
            )
        ids.setdefault(model.id, path)
        target = model.target_table or model.table
        if target in targets:
            check.add(
                f"{path}.targetTable",
                f"two tables sync into Harper table {target!r} (also {targets[target]})",
                target,
                "give every table its own targetTable",
            )
        targets.setdefault(target, path)
        if resolved is not None:
            tables.append(resolved)
    return tables
