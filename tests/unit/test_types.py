"""BigQuery -> Harper values for every type, from the Arrow forms both readers produce."""

import json
import math
import struct
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from google.cloud.bigquery import SchemaField as F

from harperbq.bigquery.sql import Column
from harperbq.bigquery.types import (
    DEFAULT_OPTIONS,
    ConversionStats,
    ConvertOptions,
    format_interval,
    records_from_batch,
)


def convert(
    field: F, array: pa.Array, options: ConvertOptions = DEFAULT_OPTIONS
) -> tuple[list[Any], ConversionStats]:
    stats = ConversionStats()
    batch = pa.RecordBatch.from_arrays([array], names=[field.name])
    records, errors = records_from_batch(batch, [field], options, stats)
    assert errors == []
    return [r[field.name] for r in records], stats


def test_int64_beyond_the_safe_range_is_an_exact_string() -> None:
    values = [0, 2**53 - 1, 2**53, -(2**63), 2**63 - 1, None]
    out, stats = convert(F("i", "INT64"), pa.array(values, pa.int64()))
    assert out == [0, 2**53 - 1, str(2**53), str(-(2**63)), str(2**63 - 1), None]
    assert stats.big_integers == 3


def test_numeric_and_bignumeric_are_exact_strings() -> None:
    numeric = [
        Decimal("12345678901234567890123456789.123456789"),
        Decimal("-0.000000001"),
        Decimal("100"),
        Decimal("0E-9"),
        None,
    ]
    out, _ = convert(F("n", "NUMERIC"), pa.array(numeric, pa.decimal128(38, 9)))
    assert out == ["12345678901234567890123456789.123456789", "-0.000000001", "100", "0", None]
    big = Decimal("-5" + "7" * 37 + "." + "1" * 38)
    out, _ = convert(F("b", "BIGNUMERIC"), pa.array([big], pa.decimal256(76, 38)))
    assert out == [str(big)] and Decimal(out[0]) == big
    out, _ = convert(
        F("n", "NUMERIC"), pa.array([Decimal("1.5")], pa.decimal128(38, 9)), ConvertOptions("float")
    )
    assert out == [1.5]


def test_float64_nonfinite_becomes_null_and_is_counted() -> None:
    out, stats = convert(
        F("f", "FLOAT64"), pa.array([1.5, math.nan, math.inf, -math.inf, -0.0, None])
    )
    assert out[:4] == [1.5, None, None, None] and out[5] is None
    assert math.copysign(1, out[4]) == -1
    assert stats.nonfinite_floats == 3


def test_time_types() -> None:
    ts = [datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)]
    out, _ = convert(F("ts", "TIMESTAMP"), pa.array(ts, pa.timestamp("us", tz="UTC")))
    assert out == ["2024-01-01T00:00:00.123456Z", "0001-01-01T00:00:00.000000Z"]
    # another zone label and unit: same instant, same text
    other = pa.array(ts[:1], pa.timestamp("us", tz="UTC")).cast(pa.timestamp("ns", tz="Asia/Tokyo"))
    assert convert(F("ts", "TIMESTAMP"), other)[0] == ["2024-01-01T00:00:00.123456Z"]
    dts = [datetime(2024, 1, 2, 3, 4, 5, 6), datetime(9999, 12, 31, 23, 59, 59, 999999)]
    out, _ = convert(F("dt", "DATETIME"), pa.array(dts, pa.timestamp("us")))
    assert out == ["2024-01-02T03:04:05.000006", "9999-12-31T23:59:59.999999"]
    out, _ = convert(F("d", "DATE"), pa.array([date(1, 1, 1), date(2024, 2, 29)], pa.date32()))
    assert out == ["0001-01-01", "2024-02-29"]
    times = [time(0, 0), time(23, 59, 59, 999999), time(12, 0, 0, 500000)]
    out, _ = convert(F("t", "TIME"), pa.array(times, pa.time64("us")))
    assert out == ["00:00:00", "23:59:59.999999", "12:00:00.500000"]


def test_bytes_bool_string_json() -> None:
    assert convert(F("b", "BYTES"), pa.array([b"\x00\xff", b""]))[0] == ["AP8=", ""]
    assert convert(F("b", "BOOL"), pa.array([True, False, None]))[0] == [True, False, None]
    assert convert(F("s", "STRING"), pa.array(["héllo ✓ 𝄞", ""]))[0] == ["héllo ✓ 𝄞", ""]
    doc = {"a": [1, 2, {"b": None}], "big": 2**70}
    exact = {"a": [1, 2, {"b": None}], "big": str(2**70)}  # beyond 2^53: exact text for Harper
    assert convert(F("j", "JSON"), pa.array([json.dumps(doc), "3"]))[0] == [exact, 3]


def test_geography_from_wkb_and_wkt_is_the_same_wkt() -> None:
    wkb = struct.pack("<BIdd", 1, 1, 1.0, 2.0)
    assert convert(F("g", "GEOGRAPHY"), pa.array([wkb]))[0] == ["POINT(1 2)"]
    assert convert(F("g", "GEOGRAPHY"), pa.array(["POINT (1 2)"]))[0] == ["POINT(1 2)"]
    out, _ = convert(F("g", "GEOGRAPHY"), pa.array([wkb]), ConvertOptions(geography_as="geojson"))
    assert out == [{"type": "Point", "coordinates": [1.0, 2.0]}]


def test_interval_canonical_text() -> None:
    mdn = pa.array(
        [pa.MonthDayNano([14, 3, 14_706_789_000_000]), pa.MonthDayNano([-1, -2, -1_000])],
        pa.month_day_nano_interval(),
    )
    out, _ = convert(F("iv", "INTERVAL"), mdn)
    assert out == ["1-2 3 4:5:6.789", "-0-1 -2 -0:0:0.000001"]
    assert format_interval(pa.MonthDayNano([0, 0, 0])) == "0-0 0 0:0:0"
    assert format_interval("1-2 3 4:5:6") == "1-2 3 4:5:6"


def test_range_and_nested_array_of_struct() -> None:
    element = pa.timestamp("us", tz="UTC")
    ranges = pa.array(
        [{"start": datetime(2024, 1, 1, tzinfo=UTC), "end": None}, None],
        pa.struct([("start", element), ("end", element)]),
    )
    out, _ = convert(F("r", "RANGE", range_element_type="TIMESTAMP"), ranges)
    assert out == [{"start": "2024-01-01T00:00:00.000000Z", "end": None}, None]
    field = F(
        "st",
        "RECORD",
        mode="REPEATED",
        fields=[
            F("a", "STRING"),
            F("tt", "TIMESTAMP"),
            F("sub", "RECORD", fields=[F("z", "NUMERIC"), F("big", "INT64")]),
            F("tags", "STRING", mode="REPEATED"),
        ],
    )
    arrow_type = pa.list_(
        pa.struct(
            [
                ("a", pa.string()),
                ("tt", pa.timestamp("us", tz="UTC")),
                ("sub", pa.struct([("z", pa.decimal128(38, 9)), ("big", pa.int64())])),
                ("tags", pa.list_(pa.string())),
            ]
        )
    )
    value = [
        {
            "a": "x",
            "tt": datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            "sub": {"z": Decimal("1.5"), "big": 2**62},
            "tags": None,
        }
    ]
    out, _ = convert(field, pa.array([value, None], arrow_type))
    assert out == [
        [
            {
                "a": "x",
                "tt": "2024-01-01T00:00:00.000001Z",
                "sub": {"z": "1.5", "big": str(2**62)},
                "tags": [],
            }
        ],
        [],  # a NULL array is an empty array, as in BigQuery
    ]


def test_a_bad_value_becomes_a_row_error_and_the_other_rows_survive() -> None:
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1, 2, 3]), pa.array(['{"ok": 1}', "{not json", "[]"]), pa.array([1, 2, 3])],
        names=["id", "doc", "_hbq_partition"],
    )
    stats = ConversionStats()
    records, errors = records_from_batch(batch, [F("id", "INT64"), F("doc", "JSON")], stats=stats)
    assert records == [{"id": 1, "doc": {"ok": 1}}, {"id": 3, "doc": []}]
    assert len(errors) == 1
    error = errors[0]
    assert (error.index, error.column) == (1, "doc")
    assert "JSONDecodeError" in error.reason and error.sample == "'{not json'"
    assert (stats.rows, stats.errors) == (3, 1)


def test_a_column_missing_from_the_batch_is_a_programming_error() -> None:
    batch = pa.RecordBatch.from_arrays([pa.array([1])], names=["a"])
    with pytest.raises(ValueError, match="missing from the batch"):
        records_from_batch(batch, [Column("b", "INT64")])


def test_column_objects_and_schema_fields_are_interchangeable() -> None:
    batch = pa.RecordBatch.from_arrays([pa.array([5])], names=["n"])
    assert records_from_batch(batch, [Column("n", "INTEGER")]) == records_from_batch(
        batch, [F("n", "INT64")]
    )
