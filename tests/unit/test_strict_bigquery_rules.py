"""The strict local BigQuery's pure rules: cost model (over a real DuckDB) and restrictions."""

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest

from harperbq.devstack.strict_bigquery import billing, rules

MB = billing.MB
DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = 4 * 1440  # four days, one row a minute
FIELDS = (
    billing.Field("ts", "TIMESTAMP"),
    billing.Field("mmsi", "INT64"),
    billing.Field("name", "STRING"),
    billing.Field("speed", "FLOAT64"),
)
LAYOUT = billing.Layout('"t"', FIELDS, "ts", "DAY", ("mmsi",))
KEY = ("p", "d", "t")


@pytest.fixture(scope="module")
def con() -> Any:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    c.execute("CREATE TABLE t (ts TIMESTAMPTZ, mmsi BIGINT, name VARCHAR, speed DOUBLE)")
    # name 'vessel' (6 bytes + 2); speed NULL on odd rows (0 bytes: NULL is 0 logical bytes)
    c.execute(
        "INSERT INTO t SELECT ?::TIMESTAMPTZ + i * INTERVAL 1 MINUTE, i % 100, 'vessel', "
        "CASE WHEN i % 2 = 0 THEN 1.5 END FROM range(?) r(i)",
        [DAY0.isoformat(), ROWS],
    )
    return c


def ts_param(name: str, value: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "parameterType": {"type": "TIMESTAMP"},
        "parameterValue": {"value": value.isoformat()},
    }


def est(con: Any, sql: str, params: Any = None, block: int = billing.DEFAULT_BLOCK_BYTES) -> Any:
    return billing.estimate(
        con, billing.parse(sql), {KEY: LAYOUT}, billing.rest_params(params), "p", block_bytes=block
    )


def test_referenced_columns_at_bigquery_type_sizes(con: Any) -> None:
    e = est(con, "SELECT ts, name FROM `p.d.t`")
    assert e.processed == ROWS * (8 + 2 + 6)
    e = est(con, "SELECT speed FROM `p.d.t`")
    assert e.processed == (ROWS // 2) * 8  # NULLs are free
    e = est(con, "SELECT * FROM `p.d.t`")
    assert e.processed == ROWS * (8 + 8 + 8) + (ROWS // 2) * 8


def test_count_star_references_only_the_filter_columns(con: Any) -> None:
    assert est(con, "SELECT COUNT(*) AS n FROM `p.d.t`").processed == 0
    e = est(con, "SELECT COUNT(*) AS n FROM `p.d.t` WHERE mmsi IS NOT NULL")
    assert e.processed == ROWS * 8


def test_constant_and_parameter_filters_on_the_partitioning_column_prune(con: Any) -> None:
    day = 1440 * (8 + 2 + 6)
    lo, hi = DAY0 + timedelta(days=1), DAY0 + timedelta(days=1, hours=2)
    by_param = est(
        con,
        "SELECT ts, name FROM `p.d.t` WHERE ts >= @lo AND ts < @hi",
        [ts_param("lo", lo), ts_param("hi", hi)],
    )
    assert by_param.processed == day  # the whole day partition, not two hours of it
    literal = est(
        con,
        "SELECT ts, name FROM `p.d.t` WHERE ts >= TIMESTAMP '2026-11-02 00:00:00+00' "
        "AND ts < TIMESTAMP '2026-11-03 00:00:00+00'",
    )
    assert literal.processed == day
    two_days = est(
        con,
        "SELECT ts, name FROM `p.d.t` WHERE ts BETWEEN TIMESTAMP '2026-11-02 12:00:00+00' "
        "AND TIMESTAMP '2026-11-03 12:00:00+00'",
    )
    assert two_days.processed == 2 * day


def test_functions_and_subqueries_on_the_partitioning_column_prune_nothing(con: Any) -> None:
    whole = ROWS * (8 + 2 + 6)
    wrapped = est(con, "SELECT ts, name FROM `p.d.t` WHERE UNIX_MICROS(ts) >= 1793577600000000")
    assert wrapped.processed == whole
    sub = est(
        con,
        "SELECT ts, name FROM `p.d.t` WHERE ts >= (SELECT MAX(ts) FROM `p.d.t`)",
    )
    assert sub.tables[0].scanned == whole
    fingerprint = est(
        con,
        "SELECT ts, name FROM `p.d.t` WHERE MOD(FARM_FINGERPRINT(name), 4) IN UNNEST(@parts)",
        [
            {
                "name": "parts",
                "parameterType": {"type": "ARRAY", "arrayType": {"type": "INT64"}},
                "parameterValue": {"arrayValues": [{"value": "1"}]},
            }
        ],
    )
    assert fingerprint.processed == whole


def test_block_pruning_on_the_leading_clustering_column_but_not_in_dry_run(con: Any) -> None:
    sql = "SELECT ts, name FROM `p.d.t` WHERE mmsi = 7"
    unpruned = est(con, sql)  # one block per partition at the default block size
    assert unpruned.processed == ROWS * (8 + 2 + 6 + 8)
    small = est(con, sql, block=2_000)
    assert small.processed < unpruned.processed / 10
    assert small.upper_bound == unpruned.processed  # dry run: the upper bound
    assert small.billed(dry_run=True) >= small.billed()
    wrapped = est(con, "SELECT ts, name FROM `p.d.t` WHERE ABS(mmsi) = 7", block=2_000)
    assert wrapped.processed == unpruned.processed


def test_minimum_ten_mb_per_table_and_rounding_to_the_mb() -> None:
    assert billing.billed_bytes([]) == 0
    assert billing.billed_bytes([1]) == 10 * MB
    assert billing.billed_bytes([1, 1]) == 20 * MB
    assert billing.billed_bytes([11 * MB + 1]) == 12 * MB


def test_dml_bills_every_column_of_its_target(con: Any) -> None:
    e = est(con, "DELETE FROM `p.d.t` WHERE ts < TIMESTAMP '2026-11-02 00:00:00+00'")
    assert e.processed == 1440 * (8 + 8 + 8) + 720 * 8


def test_ddl_bills_nothing(con: Any) -> None:
    assert est(con, "DROP TABLE `p.d.t`").billed() == 0


@pytest.mark.parametrize(
    "restriction",
    [
        "",
        "`ts` >= TIMESTAMP '2026-01-01 00:00:00+00' AND `ts` < TIMESTAMP '2026-01-02 00:00:00+00'",
        "mmsi IN (1, 2, 3) OR name IS NULL",
        "NOT (a = 1) AND b BETWEEN 1 AND 5 AND c IS NOT NULL AND d != 'x'",
        "a = -1",
    ],
)
def test_simple_row_restrictions_are_accepted(restriction: str) -> None:
    rules.check_row_restriction(restriction)


@pytest.mark.parametrize(
    "restriction",
    [
        "MOD((MOD(FARM_FINGERPRINT(COALESCE(CAST(`id` AS STRING), '')), 4) + 4), 4) IN (0, 1)",
        "CONCAT(a, b) = 'x'",
        "PARSE_TIMESTAMP('%Y', s) > TIMESTAMP '2026-01-01 00:00:00+00'",
        "a = b",
        "a + 1 > 2",
        "a IN (SELECT 1)",
    ],
)
def test_complex_row_restrictions_are_too_complex(restriction: str) -> None:
    with pytest.raises(rules.TooComplexError, match="too complex to be processed in filtering"):
        rules.check_row_restriction(restriction)


def test_streaming_log_window() -> None:
    log = rules.StreamingLog(window_s=1800)
    log.streamed(KEY, at=1000.0)
    assert log.recent(("p", "D", "T"), now=1000.0 + 1799)
    assert not log.recent(KEY, now=1000.0 + 1800)
    log.forget(KEY)
    assert not log.recent(KEY, now=1001.0)
