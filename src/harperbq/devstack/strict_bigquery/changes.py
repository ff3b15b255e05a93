"""Change history (`APPENDS`, `CHANGES`) for the strict local BigQuery.

The emulator has no change history, so the layer keeps one per table in the emulator's DuckDB:
after every commit (the emulator's `record_change` seam: load, insertAll, Storage Write, DML,
copy) the table is diffed against its last recorded state, (DuckDB `rowid`, stable across UPDATE;
row hash) matched by content, and the difference is appended to a hidden log with the commit
time. `APPENDS(TABLE t,
a, b)` and `CHANGES(...)` are rewritten to a subquery over that log before the emulator runs the
statement. An UPDATE is logged as a DELETE of the old image and an UPDATE of the new one.

Rules (each cites its page):
- `start` NULL means the table's creation; a `start` before the time-travel window (7 days by
  default), or a NULL `start` on a table created before it, is an error; `end` is exclusive,
  NULL means now, in the future is an error.
  https://cloud.google.com/bigquery/docs/reference/standard-sql/time-series-functions#appends
- `CHANGES` needs the table option `enable_change_history = TRUE` and a range of at most one
  day.
  https://cloud.google.com/bigquery/docs/reference/standard-sql/time-series-functions#changes
- Both bill the data written in the range (all writes, appends and mutations), not the table.
  https://cloud.google.com/bigquery/docs/change-history#pricing_and_costs
"""

# ruff: noqa: S608 - the SQL built here names catalog identifiers and our own tables only

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.bigquery import BigQuery

KINDS = ("APPENDS", "CHANGES")
DEFAULT_TIME_TRAVEL_HOURS = 7 * 24
MAX_CHANGES_RANGE = timedelta(days=1)
LOG_SCHEMA = "_bqemulator_snapshots"
"""The emulator passes tables of this (its own snapshot) schema through unqualified."""
RID, TYPE, TS, SEQ, HASH = "_hbq_rid", "_hbq_change_type", "_hbq_change_ts", "_hbq_seq", "_hbq_h"
HIDDEN = (RID, TYPE, TS, SEQ, HASH)


class ChangeHistoryError(ValueError):
    """A change-history call BigQuery refuses (the layer reports it as an invalid query)."""


Key = tuple[str, str, str]


def norm(key: Key) -> Key:
    return (key[0], key[1].lower(), key[2].lower())


# -- SQL: find and rewrite the calls ------------------------------------------------------------


def prepare_sql(sql: str) -> str:
    """Drop the `TABLE` keyword of `APPENDS(TABLE t, ...)` so sqlglot can parse the call."""
    if not any(k in sql.upper() for k in KINDS):
        return sql
    try:
        tokens = BigQuery().tokenize(sql)
    except Exception:  # leave unparseable SQL to the emulator's own error
        return sql
    cuts: list[tuple[int, int]] = []
    for i in range(len(tokens) - 2):
        name, paren, table = tokens[i], tokens[i + 1], tokens[i + 2]
        if (
            name.text.upper() in KINDS
            and paren.token_type == TokenType.L_PAREN
            and table.token_type == TokenType.TABLE
        ):
            cuts.append((table.start, table.end + 1))
    for start, end in reversed(cuts):
        sql = sql[:start] + sql[end:]
    return sql


@dataclass
class Call:
    """One `APPENDS`/`CHANGES` call of a statement."""

    node: exp.Table
    kind: str
    key: Key
    start: exp.Expr
    end: exp.Expr


def calls(statement: exp.Expr, default_project: str) -> list[Call]:
    out: list[Call] = []
    for table in statement.find_all(exp.Table):
        fn = table.this
        if not isinstance(fn, exp.Anonymous) or str(fn.this).upper() not in KINDS:
            continue
        args = list(fn.expressions)
        kind = str(fn.this).upper()
        if not args or not isinstance(args[0], exp.Column | exp.Dot | exp.Table):
            raise ChangeHistoryError(
                f"The first argument of {kind} must be a table, preceded by the word TABLE"
            )
        parts = [p.name for p in args[0].parts] if hasattr(args[0], "parts") else []
        if len(parts) == 2:
            parts.insert(0, default_project)
        if len(parts) != 3:
            raise ChangeHistoryError(f"{kind} needs a dataset-qualified table name")
        if len(args) > 3:
            raise ChangeHistoryError(f"Too many arguments to {kind}")
        rest = args[1:] + [exp.Null()] * (3 - len(args))
        out.append(Call(table, kind, (parts[0], parts[1], parts[2]), rest[0], rest[1]))
    return out


def _ts_literal(at: datetime) -> exp.Expr:
    return exp.cast(
        exp.Literal.string(at.astimezone(UTC).isoformat()), exp.DataType.Type.TIMESTAMPTZ
    )


def log_subquery(
    call: Call, relation: tuple[str, str], columns: list[str], lo: datetime, hi: datetime
) -> exp.Expr:
    """The log rows of the call's range as a subquery with BigQuery's output columns."""
    schema, table = relation
    lo_us, hi_us = _micros(lo), _micros(hi)
    where = f"UNIX_MICROS({TS}) >= {lo_us} AND UNIX_MICROS({TS}) < {hi_us}"
    if call.kind == "APPENDS":
        where += f" AND {TYPE} = 'INSERT'"
    cols = ", ".join(f"`{c}`" for c in columns)
    sql = (
        f"SELECT {cols}{', ' if cols else ''}{TYPE} AS _CHANGE_TYPE, {TS} AS _CHANGE_TIMESTAMP "
        f"FROM `{schema}`.`{table}` WHERE {where} ORDER BY {SEQ}"
    )
    select = sqlglot.parse_one(sql, read="bigquery")
    alias = call.node.args.get("alias")
    name = alias.name if alias is not None else call.key[2]
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(name)))


def range_relation(schema: str, table: str, lo: datetime, hi: datetime) -> str:
    """DuckDB SQL for every write of [lo, hi): APPENDS too "require processing all data
    written to the table within the specified time range" (change-history, pricing)."""
    return (
        f'(SELECT * FROM "{schema}"."{table}" WHERE epoch_us({TS}) >= {_micros(lo)} '
        f"AND epoch_us({TS}) < {_micros(hi)})"
    )


def as_of_relation(schema: str, table: str, at: datetime) -> str:
    """DuckDB SQL for the table as of `at`: each row's last logged image at or before `at`,
    unless that was its DELETE (an UPDATE logs the DELETE of the old image, then the new)."""
    return (
        f"(SELECT * EXCLUDE (_hbq_rn) FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {RID} "
        f'ORDER BY {SEQ} DESC) AS _hbq_rn FROM "{schema}"."{table}" '
        f"WHERE epoch_us({TS}) <= {_micros(at)}) WHERE _hbq_rn = 1 AND {TYPE} <> 'DELETE')"
    )


def _micros(at: datetime) -> int:
    delta = at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# -- the range rules --------------------------------------------------------------------------


_EVAL_LOCK = threading.Lock()
_EVAL: duckdb.DuckDBPyConnection | None = None


def evaluate(
    node: exp.Expr, params: Mapping[str, tuple[str, Any]], now: datetime
) -> datetime | None:
    """A constant TIMESTAMP argument's value (None for NULL); anything else is an error."""
    global _EVAL
    if isinstance(node, exp.Null):
        return None
    lowered = {k.lower(): v for k, v in params.items()}

    def bind(n: exp.Expr) -> exp.Expr:
        if isinstance(n, exp.Parameter | exp.Placeholder):
            found = lowered.get(str(n.name).lower())
            if found is None:
                raise ChangeHistoryError(f"Query parameter '{n.name}' not found")
            return exp.Null() if found[1] is None else exp.Literal.string(str(found[1]))
        if isinstance(n, exp.CurrentTimestamp):
            return _ts_literal(now)
        return n

    node = node.transform(bind)
    if node.find(exp.Column, exp.Select) is not None:
        raise ChangeHistoryError("The time range arguments must be constant TIMESTAMP values")
    sql = f"SELECT epoch_us(CAST(({node.sql(dialect='duckdb')}) AS TIMESTAMPTZ))"
    with _EVAL_LOCK:
        if _EVAL is None:
            _EVAL = duckdb.connect()
            _EVAL.execute("SET TimeZone = 'UTC'")
        try:
            row = _EVAL.execute(sql).fetchone()
        except duckdb.Error as exc:
            raise ChangeHistoryError(f"Invalid TIMESTAMP argument: {exc}") from None
    if row is None or row[0] is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(row[0]))


@dataclass(frozen=True)
class TableHistory:
    """What the rules need to know about one table."""

    created: datetime
    enable_change_history: bool = False
    time_travel_hours: int = DEFAULT_TIME_TRAVEL_HOURS


def check_range(
    kind: str,
    table: str,
    history: TableHistory,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """The effective [start, end) of a call, or ChangeHistoryError with BigQuery's rule."""
    window_start = now - timedelta(hours=history.time_travel_hours)
    if kind == "CHANGES" and not history.enable_change_history:
        # https://cloud.google.com/bigquery/docs/reference/standard-sql/time-series-functions#changes
        raise ChangeHistoryError(
            f"CHANGES cannot be used on table {table}: the table option "
            "enable_change_history must be set to TRUE"
        )
    if end is not None and end > now:
        # https://cloud.google.com/bigquery/docs/reference/standard-sql/time-series-functions#appends
        raise ChangeHistoryError(
            f"Invalid end_timestamp {end.isoformat()} for {kind}: it is in the future "
            f"(current time {now.isoformat()})"
        )
    if start is not None and start < window_start:
        # https://cloud.google.com/bigquery/docs/reference/standard-sql/time-series-functions#appends
        raise ChangeHistoryError(
            f"Invalid start_timestamp {start.isoformat()} for {kind}: it is earlier than "
            f"allowed by time travel ({history.time_travel_hours} hours, from "
            f"{window_start.isoformat()})"
        )
    if start is None and history.created < window_start:
        raise ChangeHistoryError(
            f"start_timestamp of {kind} is NULL but table {table} was created at "
            f"{history.created.isoformat()}, earlier than allowed by time travel "
            f"({history.time_travel_hours} hours)"
        )
    lo = max(start, history.created) if start is not None else history.created
    hi = end if end is not None else now
    # The span is measured from the start given (the creation time when NULL): strict on
    # purpose, so a query that passes here passes in BigQuery whatever it clamps.
    span = hi - (start if start is not None else history.created)
    if kind == "CHANGES" and span > MAX_CHANGES_RANGE:
        # https://cloud.google.com/bigquery/docs/reference/standard-sql/time-series-functions#changes
        raise ChangeHistoryError(
            f"The time range of CHANGES on table {table} is {span}, more than the maximum "
            "of one day: reduce the range between start_timestamp and end_timestamp"
        )
    return lo, hi


# -- table options from DDL -------------------------------------------------------------------


def ddl_options(statement: exp.Expr, default_project: str) -> tuple[Key, dict[str, Any]] | None:
    """`enable_change_history` set by CREATE TABLE or ALTER TABLE (a table option)."""
    target: exp.Expr | None = None
    props: list[exp.Expr] = []
    if isinstance(statement, exp.Create) and str(statement.args.get("kind", "")).upper() == "TABLE":
        target = statement.this.this if isinstance(statement.this, exp.Schema) else statement.this
        properties = statement.args.get("properties")
        props = list(properties.expressions) if properties is not None else []
    elif isinstance(statement, exp.Alter):
        target = statement.this
        for action in statement.args.get("actions") or []:
            if isinstance(action, exp.AlterSet):
                for e in action.expressions:
                    props.extend(e.expressions if isinstance(e, exp.Properties) else [e])
    if not isinstance(target, exp.Table):
        return None
    found: dict[str, Any] = {}
    for prop in props:
        if not isinstance(prop, exp.Property):
            continue
        name = prop.name.lower()
        value = prop.args.get("value")
        if name == "enable_change_history" and value is not None:
            found[name] = value.sql().upper() == "TRUE"
    key = (target.catalog or default_project, target.db, target.name)
    return key, found


ALTER_SCHEMA = re.compile(
    r"^\s*ALTER\s+SCHEMA\s+(?:IF\s+EXISTS\s+)?`?([\w.-]+)`?\s+SET\s+OPTIONS\s*\((.*)\)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_HOURS = re.compile(r"max_time_travel_hours\s*=\s*(\d+)", re.IGNORECASE)


def dataset_time_travel(sql: str, default_project: str) -> tuple[tuple[str, str], int] | None:
    """`max_time_travel_hours` set by CREATE SCHEMA or ALTER SCHEMA: a dataset option.
    https://cloud.google.com/bigquery/docs/time-travel#configure_the_time_travel_window"""
    match = ALTER_SCHEMA.match(sql)
    if match is not None:
        name, options = match.group(1), match.group(2)
    else:
        try:
            statement = sqlglot.parse_one(sql, read="bigquery")
        except sqlglot.errors.ParseError:
            return None
        if not isinstance(statement, exp.Create) or str(statement.args.get("kind")) != "SCHEMA":
            return None
        target = statement.this
        name = ".".join(p for p in (target.catalog, target.db, target.name) if p)
        properties = statement.args.get("properties")
        options = properties.sql(dialect="bigquery") if properties is not None else ""
    hours = _HOURS.search(options)
    if hours is None:
        return None
    parts = name.split(".")
    project, dataset = (parts[0], parts[1]) if len(parts) == 2 else (default_project, parts[-1])
    return (project, dataset), int(hours.group(1))


# -- the log ----------------------------------------------------------------------------------


@dataclass
class _TableLog:
    created: datetime
    log: str
    state: str
    last: datetime | None = None
    columns: list[str] = field(default_factory=list)


def log_names(key: Key, created: datetime) -> tuple[str, str]:
    digest = hashlib.sha1(  # noqa: S324 - a name, not a secret
        f"{key[0]}.{key[1]}.{key[2]}@{created.isoformat()}".encode()
    ).hexdigest()[:16]
    return f"hbq_changes_{digest}", f"hbq_state_{digest}"


class ChangeLog:
    """Per-table change logs in the emulator's DuckDB (thread safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[Key, _TableLog] = {}
        self.options: dict[Key, dict[str, Any]] = {}
        self.time_travel_hours: dict[tuple[str, str], int] = {}

    def set_time_travel(self, dataset: tuple[str, str], hours: int | None) -> None:
        """A dataset's `max_time_travel_hours` (None: the default, 7 days)."""
        with self._lock:
            if hours is None:
                self.time_travel_hours.pop((dataset[0], dataset[1].lower()), None)
            else:
                self.time_travel_hours[(dataset[0], dataset[1].lower())] = hours

    def set_options(self, key: Key, found: Mapping[str, Any], *, reset: bool) -> None:
        with self._lock:
            current = {} if reset else dict(self.options.get(norm(key), {}))
            current.update(found)
            self.options[norm(key)] = current

    def forget(self, key: Key, con: Any = None) -> None:
        """A dropped table takes its options and (given a connection) its log with it."""
        self.forget_where(lambda k: k == norm(key), con)

    def forget_dataset(self, project: str, dataset: str, con: Any = None) -> None:
        self.forget_where(lambda k: k[:2] == (project, dataset.lower()), con)

    def forget_where(self, match: Callable[[Key], bool], con: Any = None) -> None:
        with self._lock:
            for key in [k for k in self.options if match(k)]:
                del self.options[key]
            gone = [k for k in self._tables if match(k)]
            entries = [self._tables.pop(k) for k in gone]
            if con is not None:
                for entry in entries:
                    _drop(con, entry)

    def history(self, key: Key, created: datetime) -> TableHistory:
        opts = self.options.get(norm(key), {})
        return TableHistory(
            created=created,
            enable_change_history=bool(opts.get("enable_change_history", False)),
            time_travel_hours=self.time_travel_hours.get(
                (key[0], key[1].lower()), DEFAULT_TIME_TRAVEL_HOURS
            ),
        )

    def relation(self, key: Key, created: datetime) -> tuple[str, str]:
        return LOG_SCHEMA, log_names(key, created)[0]

    def record(
        self,
        con: Any,
        key: Key,
        source: str,
        created: datetime,
        now: Callable[[], datetime],
    ) -> datetime:
        """Append the difference between `source` and its last recorded state to the log;
        returns the commit time given to it (strictly increasing per table)."""
        with self._lock:
            entry = self._tables.get(norm(key))
            if entry is None or entry.created != created:
                if entry is not None:  # the table was dropped and created again
                    _drop(con, entry)
                log_name, state_name = log_names(key, created)
                entry = _TableLog(created, log_name, state_name)
                self._create(con, entry, source)
                self._tables[norm(key)] = entry
            at = now()
            if entry.last is not None and at <= entry.last:
                at = entry.last + timedelta(microseconds=1)
            entry.last = at
            self._diff(con, entry, source, at)
            return at

    def _create(self, con: Any, entry: _TableLog, source: str) -> None:
        """The log (row images) and the state: (rowid, row hash) as of the last commit."""
        con.execute(
            f"CREATE OR REPLACE TABLE {_ref(entry.log)} AS SELECT CAST(0 AS BIGINT) AS {RID}, "
            f"CAST(NULL AS VARCHAR) AS {TYPE}, CAST(NULL AS TIMESTAMPTZ) AS {TS}, "
            f"CAST(0 AS BIGINT) AS {SEQ}, CAST(0 AS UBIGINT) AS {HASH}, * "
            f"FROM {source} WHERE FALSE"
        )
        con.execute(f"CREATE OR REPLACE TABLE {_ref(entry.state)} ({RID} BIGINT, _h UBIGINT)")

    def _columns(self, con: Any, schema: str, table: str) -> dict[str, str]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def _diff(self, con: Any, entry: _TableLog, source: str, at: datetime) -> None:
        """The table as a multiset of row hashes against the last commit's: what came is an
        INSERT, what went a DELETE, and a row that went and came back at the same rowid an
        UPDATE. Rows with the same (rowid, hash) are set aside first (cheap); the rest are
        matched by contents, which keeps rows DuckDB merely renumbered (a checkpoint compacts
        deleted rows away) out of the log. Old images come from the log by hash."""
        log_ref, state_ref = _ref(entry.log), _ref(entry.state)
        src_cols = _source_columns(con, source)
        have = self._columns(con, LOG_SCHEMA, entry.log)
        for col, kind in src_cols.items():
            if col not in have:
                con.execute(f'ALTER TABLE {log_ref} ADD COLUMN "{col}" {kind}')
        cols = list(src_cols)
        entry.columns = cols
        now_state = f"_hbq_now_{entry.log}"
        diff = f"_hbq_diff_{entry.log}"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {now_state} AS "
            f"SELECT rowid AS {RID}, {_row_hash(cols)} AS _h FROM {source}"
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {diff} AS
            WITH came0 AS (
                SELECT * FROM {now_state} s WHERE NOT EXISTS (
                    SELECT 1 FROM {state_ref} o WHERE o.{RID} = s.{RID} AND o._h = s._h)
            ), gone0 AS (
                SELECT * FROM {state_ref} o WHERE NOT EXISTS (
                    SELECT 1 FROM {now_state} s WHERE s.{RID} = o.{RID} AND s._h = o._h)
            ), sk AS (
                SELECT {RID}, _h, row_number() OVER (PARTITION BY _h ORDER BY {RID}) AS _k
                FROM came0
            ), ok AS (
                SELECT {RID}, _h, row_number() OVER (PARTITION BY _h ORDER BY {RID}) AS _k
                FROM gone0
            ), came AS (
                SELECT * FROM sk
                WHERE NOT EXISTS (SELECT 1 FROM ok WHERE ok._h = sk._h AND ok._k = sk._k)
            ), gone AS (
                SELECT * FROM ok
                WHERE NOT EXISTS (SELECT 1 FROM sk WHERE sk._h = ok._h AND sk._k = ok._k)
            )
            SELECT c.{RID}, c._h, g._h AS old_h,
                   CASE WHEN g.{RID} IS NULL THEN 'INSERT' ELSE 'UPDATE' END AS kind
            FROM came c LEFT JOIN gone g ON g.{RID} = c.{RID}
            UNION ALL
            SELECT g.{RID}, NULL, g._h, 'DELETE' FROM gone g
            WHERE NOT EXISTS (SELECT 1 FROM came c WHERE c.{RID} = g.{RID})"""
        )
        try:
            self._append(con, entry, source, diff, cols, at)
            con.execute(f"DELETE FROM {state_ref}")
            con.execute(f"INSERT INTO {state_ref} SELECT {RID}, _h FROM {now_state}")
        finally:
            con.execute(f"DROP TABLE IF EXISTS {diff}")
            con.execute(f"DROP TABLE IF EXISTS {now_state}")

    def _append(
        self, con: Any, entry: _TableLog, source: str, diff: str, cols: list[str], at: datetime
    ) -> None:
        """Log the old image (DELETE) of each updated or deleted row, then the new image
        (UPDATE or INSERT) of each updated or inserted row, in that order."""
        log_ref = _ref(entry.log)
        seq_row = con.execute(f"SELECT COALESCE(MAX({SEQ}), 0) FROM {log_ref}").fetchone()
        seq = int(seq_row[0]) if seq_row is not None else 0
        quoted = ", ".join(f'"{c}"' for c in cols)
        sep = ", " if cols else ""
        l_cols = ", ".join(f'l."{c}"' for c in cols)
        n_cols = ", ".join(f'n."{c}"' for c in cols)
        con.execute(
            f"""INSERT INTO {log_ref} ({RID}, {TYPE}, {TS}, {SEQ}, {HASH}{sep}{quoted})
            WITH old AS (
                SELECT * FROM {log_ref}
                WHERE {HASH} IN (SELECT old_h FROM {diff} WHERE kind <> 'INSERT')
                  AND {TYPE} <> 'DELETE'
                QUALIFY row_number() OVER (PARTITION BY {HASH} ORDER BY {SEQ} DESC) = 1
            ), n AS (
                SELECT rowid AS {RID}{sep}{quoted} FROM {source}
                WHERE rowid IN (SELECT {RID} FROM {diff} WHERE kind <> 'DELETE')
            ), d AS (
                SELECT x.{RID} AS _hbq_r, 'DELETE' AS _hbq_t, x.old_h AS _hbq_hh,
                       CASE WHEN x.kind = 'DELETE' THEN 0 ELSE 1 END AS _hbq_ord{sep}{l_cols}
                FROM {diff} x JOIN old l ON l.{HASH} = x.old_h WHERE x.kind <> 'INSERT'
                UNION ALL
                SELECT x.{RID}, x.kind, x._h, CASE WHEN x.kind = 'UPDATE' THEN 2 ELSE 3 END
                       {sep}{n_cols}
                FROM {diff} x JOIN n ON n.{RID} = x.{RID} WHERE x.kind <> 'DELETE'
            )
            SELECT _hbq_r, _hbq_t, ?::TIMESTAMPTZ,
                   ? + row_number() OVER (ORDER BY _hbq_ord, _hbq_r), _hbq_hh{sep}{quoted}
            FROM d""",
            [at, seq],
        )


def _row_hash(cols: list[str]) -> str:
    """A row's hash as DuckDB SQL: the XOR of its non-NULL columns' (name, value) hashes, so a
    column added (NULL in the old rows) leaves the old rows' hashes as they were."""
    out = "CAST(0 AS UBIGINT)"
    for c in cols:
        name = c.replace("'", "''")
        value = f'CASE WHEN "{c}" IS NULL THEN CAST(0 AS UBIGINT) ELSE hash(\'{name}\', "{c}") END'
        out = f"xor({out}, {value})"
    return out


def _ref(table: str) -> str:
    return f'"{LOG_SCHEMA}"."{table}"'


def _drop(con: Any, entry: _TableLog) -> None:
    for name in (entry.log, entry.state):
        con.execute(f"DROP TABLE IF EXISTS {_ref(name)}")


def _source_columns(con: Any, source: str) -> dict[str, str]:
    con.execute(f"DESCRIBE SELECT * FROM {source}")
    return {str(r[0]): str(r[1]) for r in con.fetchall()}
