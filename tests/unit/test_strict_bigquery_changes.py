"""The pure parts of the strict change history: parsing the calls, the range rules, DDL
options, and the log's diff over a plain DuckDB (docs/strict-bigquery.md, Change history)."""

# ruff: noqa: S608 - test SQL over the tests' own tables

from datetime import UTC, datetime, timedelta

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from harperbq.devstack.strict_bigquery import changes

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(hours=2)
HISTORY = changes.TableHistory(created=CREATED, enable_change_history=True)


def parse(sql: str) -> exp.Expr:
    return sqlglot.parse_one(changes.prepare_sql(sql), read="bigquery")


def test_prepare_sql_drops_only_the_table_keyword_of_the_calls() -> None:
    sql = "SELECT * FROM APPENDS(TABLE ds.t, NULL, NULL) JOIN ds.table_x USING (a)"
    assert changes.prepare_sql(sql) == (
        "SELECT * FROM APPENDS( ds.t, NULL, NULL) JOIN ds.table_x USING (a)"
    )
    assert changes.prepare_sql("SELECT 1") == "SELECT 1"


def test_calls_resolve_the_table_and_default_the_arguments() -> None:
    found = changes.calls(
        parse("SELECT a FROM changes(TABLE `p.ds.t`, TIMESTAMP '2026-12-01') AS c"), "dflt"
    )
    assert [(c.kind, c.key) for c in found] == [("CHANGES", ("p", "ds", "t"))]
    assert isinstance(found[0].end, exp.Null)
    two_part = changes.calls(parse("SELECT * FROM APPENDS(TABLE ds.t)"), "dflt")
    assert two_part[0].key == ("dflt", "ds", "t")
    assert isinstance(two_part[0].start, exp.Null)


def value(sql: str) -> exp.Expr:
    """The expression of `SELECT <expr>`."""
    statement = parse(sql)
    assert isinstance(statement, exp.Select)
    return statement.selects[0]


def test_evaluate_constant_timestamps_parameters_and_now() -> None:
    literal = value("SELECT TIMESTAMP '2026-11-30 10:00:00'")
    assert changes.evaluate(literal, {}, NOW) == datetime(2026, 11, 30, 10, tzinfo=UTC)
    relative = value("SELECT TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR)")
    assert changes.evaluate(relative, {}, NOW) == NOW - timedelta(hours=1)
    param = value("SELECT @since")
    params = {"since": ("TIMESTAMP", "2026-11-30 09:00:00+00")}
    assert changes.evaluate(param, params, NOW) == datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert changes.evaluate(exp.Null(), {}, NOW) is None
    with pytest.raises(changes.ChangeHistoryError):
        changes.evaluate(value("SELECT a"), {}, NOW)


def test_null_bounds_mean_creation_and_now() -> None:
    assert changes.check_range("APPENDS", "p.ds.t", HISTORY, None, None, NOW) == (CREATED, NOW)
    early = CREATED - timedelta(hours=1)
    lo, _ = changes.check_range("APPENDS", "p.ds.t", HISTORY, early, None, NOW)
    assert lo == CREATED


def test_end_in_the_future_is_refused() -> None:
    with pytest.raises(changes.ChangeHistoryError, match="in the future"):
        changes.check_range("APPENDS", "p.ds.t", HISTORY, None, NOW + timedelta(seconds=1), NOW)


def test_start_before_time_travel_is_refused() -> None:
    with pytest.raises(changes.ChangeHistoryError, match="time travel"):
        changes.check_range("APPENDS", "p.ds.t", HISTORY, NOW - timedelta(days=8), None, NOW)
    old = changes.TableHistory(created=NOW - timedelta(days=10))
    with pytest.raises(changes.ChangeHistoryError, match="time travel"):
        changes.check_range("APPENDS", "p.ds.t", old, None, None, NOW)
    short = changes.TableHistory(created=CREATED, time_travel_hours=1)
    with pytest.raises(changes.ChangeHistoryError, match="1 hours"):
        changes.check_range(
            "APPENDS", "p.ds.t", short, NOW - timedelta(hours=1, seconds=1), None, NOW
        )


def test_changes_needs_the_option_and_at_most_one_day() -> None:
    off = changes.TableHistory(created=CREATED)
    with pytest.raises(changes.ChangeHistoryError, match="enable_change_history"):
        changes.check_range("CHANGES", "p.ds.t", off, None, None, NOW)
    assert changes.check_range("APPENDS", "p.ds.t", off, None, None, NOW) == (CREATED, NOW)
    with pytest.raises(changes.ChangeHistoryError, match="one day"):
        changes.check_range("CHANGES", "p.ds.t", HISTORY, NOW - timedelta(days=2), None, NOW)
    day = NOW - timedelta(days=1)
    assert changes.check_range("CHANGES", "p.ds.t", HISTORY, day, None, NOW)[1] == NOW


def test_ddl_options_of_create_and_alter() -> None:
    create = parse("CREATE TABLE ds.t (a INT64) OPTIONS (enable_change_history = TRUE)")
    assert changes.ddl_options(create, "p") == (("p", "ds", "t"), {"enable_change_history": True})
    alter = parse("ALTER TABLE `p.ds.t` SET OPTIONS (enable_change_history = false)")
    assert changes.ddl_options(alter, "x") == (("p", "ds", "t"), {"enable_change_history": False})
    assert changes.ddl_options(parse("SELECT 1"), "p") is None


def _ticks() -> list[datetime]:
    return [NOW + timedelta(seconds=i) for i in range(10)]


def _log_rows(con: duckdb.DuckDBPyConnection, log: changes.ChangeLog) -> list[tuple[object, ...]]:
    schema, table = log.relation(("p", "ds", "t"), CREATED)
    return con.execute(
        f'SELECT a, b, {changes.TYPE}, {changes.TS} FROM "{schema}"."{table}" '
        f"ORDER BY {changes.SEQ}"
    ).fetchall()


def test_log_records_inserts_updates_as_delete_and_update_and_deletes() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f'CREATE SCHEMA "{changes.LOG_SCHEMA}"')
    con.execute("CREATE TABLE t (a BIGINT, b VARCHAR)")
    log = changes.ChangeLog()
    ticks = iter(_ticks())
    key = ("p", "ds", "t")

    con.execute("INSERT INTO t VALUES (1, 'x'), (2, 'y')")
    first = log.record(con, key, "t", CREATED, lambda: next(ticks))
    con.execute("UPDATE t SET b = 'q' WHERE a = 1")
    second = log.record(con, key, "t", CREATED, lambda: next(ticks))
    con.execute("DELETE FROM t WHERE a = 2")
    third = log.record(con, key, "t", CREATED, lambda: next(ticks))
    assert first < second < third
    assert _log_rows(con, log) == [
        (1, "x", "INSERT", first),
        (2, "y", "INSERT", first),
        (1, "x", "DELETE", second),
        (1, "q", "UPDATE", second),
        (2, "y", "DELETE", third),
    ]


def test_commit_times_strictly_increase_even_on_a_stuck_clock() -> None:
    con = duckdb.connect()
    con.execute(f'CREATE SCHEMA "{changes.LOG_SCHEMA}"')
    con.execute("CREATE TABLE t (a BIGINT, b VARCHAR)")
    log = changes.ChangeLog()
    key = ("p", "ds", "t")
    con.execute("INSERT INTO t VALUES (1, 'x')")
    a = log.record(con, key, "t", CREATED, lambda: NOW)
    con.execute("INSERT INTO t VALUES (2, 'y')")
    b = log.record(con, key, "t", CREATED, lambda: NOW)
    assert b == a + timedelta(microseconds=1)


def test_a_new_column_joins_the_log() -> None:
    con = duckdb.connect()
    con.execute(f'CREATE SCHEMA "{changes.LOG_SCHEMA}"')
    con.execute("CREATE TABLE t (a BIGINT, b VARCHAR)")
    log = changes.ChangeLog()
    key = ("p", "ds", "t")
    ticks = iter(_ticks())
    log.record(con, key, "t", CREATED, lambda: next(ticks))
    con.execute("ALTER TABLE t ADD COLUMN c BIGINT")
    con.execute("INSERT INTO t VALUES (1, 'x', 7)")
    log.record(con, key, "t", CREATED, lambda: next(ticks))
    schema, table = log.relation(key, CREATED)
    assert con.execute(f'SELECT c FROM "{schema}"."{table}"').fetchall() == [(7,)]


def test_range_relation_keeps_every_write_of_the_range() -> None:
    lo, hi = NOW, NOW + timedelta(seconds=2)
    relation = changes.range_relation("s", "t", lo, hi)
    con = duckdb.connect()
    con.execute('CREATE SCHEMA "s"')
    con.execute(f'CREATE TABLE "s"."t" ({changes.TS} TIMESTAMPTZ, {changes.TYPE} VARCHAR)')
    for i, kind in enumerate(("INSERT", "DELETE", "UPDATE")):
        con.execute('INSERT INTO "s"."t" VALUES (?, ?)', [NOW + timedelta(seconds=i), kind])
    rows = con.execute(f"SELECT {changes.TYPE} FROM {relation} ORDER BY 1").fetchall()
    assert rows == [("DELETE",), ("INSERT",)]  # half-open: the write at `hi` is out


def test_dataset_time_travel_of_create_and_alter_schema() -> None:
    create = "CREATE SCHEMA `p.ds` OPTIONS (max_time_travel_hours = 72)"
    assert changes.dataset_time_travel(create, "x") == (("p", "ds"), 72)
    alter = "ALTER SCHEMA ds SET OPTIONS (description = 'd', max_time_travel_hours = 48)"
    assert changes.dataset_time_travel(alter, "x") == (("x", "ds"), 48)
    assert changes.dataset_time_travel("CREATE SCHEMA ds", "x") is None
    assert changes.dataset_time_travel("SELECT 1", "x") is None


def test_the_dataset_window_bounds_the_start() -> None:
    log = changes.ChangeLog()
    log.set_time_travel(("p", "DS"), 48)
    history = log.history(("p", "ds", "t"), NOW - timedelta(days=1))
    assert history.time_travel_hours == 48
    with pytest.raises(changes.ChangeHistoryError, match="48 hours"):
        changes.check_range("APPENDS", "p.ds.t", history, NOW - timedelta(hours=49), None, NOW)
    log.set_time_travel(("p", "ds"), None)
    assert log.history(("p", "ds", "t"), NOW).time_travel_hours == 7 * 24


def test_forgetting_a_table_or_dataset_drops_its_log() -> None:
    con = duckdb.connect()
    con.execute(f'CREATE SCHEMA "{changes.LOG_SCHEMA}"')
    con.execute("CREATE TABLE t (a BIGINT)")
    log = changes.ChangeLog()
    for name in ("t1", "t2"):
        log.record(con, ("p", "ds", name), "t", CREATED, lambda: NOW)
    log.set_options(("p", "ds", "t1"), {"enable_change_history": True}, reset=True)

    def tables() -> int:
        query = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?"
        row = con.execute(query, [changes.LOG_SCHEMA]).fetchone()
        assert row is not None
        return int(row[0])

    assert tables() == 4  # a log and a state per table
    log.forget(("p", "DS", "T1"), con)
    assert tables() == 2
    assert not log.history(("p", "ds", "t1"), CREATED).enable_change_history
    log.forget_dataset("p", "ds", con)
    assert tables() == 0


def test_rows_duckdb_renumbers_or_a_new_column_are_no_change() -> None:
    con = duckdb.connect()
    con.execute(f'CREATE SCHEMA "{changes.LOG_SCHEMA}"')
    con.execute("CREATE TABLE t AS SELECT range AS a, 'v' AS b FROM range(3000)")
    log = changes.ChangeLog()
    key = ("p", "ds", "t")
    ticks = iter(_ticks())
    log.record(con, key, "t", CREATED, lambda: next(ticks))
    con.execute("DELETE FROM t WHERE a < 2000")
    log.record(con, key, "t", CREATED, lambda: next(ticks))
    con.execute("CHECKPOINT")  # compacts the deleted rows away: the survivors get new rowids
    con.execute("ALTER TABLE t ADD COLUMN c BIGINT")
    con.execute("INSERT INTO t VALUES (9000, 'w', 1)")
    log.record(con, key, "t", CREATED, lambda: next(ticks))
    schema, table = log.relation(key, CREATED)
    counts = con.execute(
        f'SELECT {changes.TYPE}, COUNT(*) FROM "{schema}"."{table}" GROUP BY 1 ORDER BY 1'
    ).fetchall()
    assert counts == [("DELETE", 2000), ("INSERT", 3001)]


def test_user_columns_named_like_the_logs_own_are_kept_apart() -> None:
    con = duckdb.connect()
    con.execute(f'CREATE SCHEMA "{changes.LOG_SCHEMA}"')
    con.execute("CREATE TABLE t (t TIME, h BIGINT, kind VARCHAR, _ord INT, old_h INT, _h INT)")
    log = changes.ChangeLog()
    key = ("p", "ds", "t")
    con.execute("INSERT INTO t VALUES ('10:00:00', 1, 'k', 2, 3, 4)")
    log.record(con, key, "t", CREATED, lambda: NOW)
    con.execute("UPDATE t SET h = 5")
    log.record(con, key, "t", CREATED, lambda: NOW)
    schema, table = log.relation(key, CREATED)
    found = con.execute(
        f"SELECT {changes.TYPE}, CAST(t AS VARCHAR), h, kind, _ord, old_h, _h "
        f'FROM "{schema}"."{table}" ORDER BY {changes.SEQ}'
    ).fetchall()
    assert found == [
        ("INSERT", "10:00:00", 1, "k", 2, 3, 4),
        ("DELETE", "10:00:00", 1, "k", 2, 3, 4),
        ("UPDATE", "10:00:00", 5, "k", 2, 3, 4),
    ]
