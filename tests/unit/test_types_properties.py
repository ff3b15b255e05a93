"""Property tests of the type conversion: exact, round-trippable, never raising."""

import base64
import json
import struct
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
from google.cloud.bigquery import SchemaField as F
from hypothesis import given, settings
from hypothesis import strategies as st

from harperbq.bigquery import geography
from harperbq.bigquery.types import (
    MAX_SAFE_INTEGER,
    format_datetime,
    format_interval,
    format_timestamp,
    records_from_batch,
)

INT64 = st.integers(-(2**63), 2**63 - 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)


def column(field: F, array: pa.Array) -> list[Any]:
    batch = pa.RecordBatch.from_arrays([array], names=[field.name])
    records, errors = records_from_batch(batch, [field])
    assert not errors
    return [r[field.name] for r in records]


@given(st.lists(st.one_of(st.none(), INT64), max_size=50))
def test_int64_is_exact_and_a_number_only_when_safe(values: list[int | None]) -> None:
    for original, converted in zip(
        values, column(F("i", "INT64"), pa.array(values, pa.int64())), strict=True
    ):
        if original is None:
            assert converted is None
        elif abs(original) <= MAX_SAFE_INTEGER:
            assert converted == original and isinstance(converted, int)
        else:
            assert converted == str(original)


@given(st.lists(MICROS, min_size=1, max_size=50))
def test_timestamps_round_trip_to_the_microsecond(micros: list[int]) -> None:
    moments = [EPOCH + timedelta(microseconds=m) for m in micros]
    texts = column(F("ts", "TIMESTAMP"), pa.array(moments, pa.timestamp("us", tz="UTC")))
    for moment, text in zip(moments, texts, strict=True):
        assert len(text) == 27 and text.endswith("Z")
        assert datetime.fromisoformat(text[:-1] + "+00:00") == moment
        assert text == format_timestamp(moment)  # vectorized == per value (nested values)


@given(st.lists(MICROS, min_size=1, max_size=50))
def test_datetimes_round_trip(micros: list[int]) -> None:
    moments = [(EPOCH + timedelta(microseconds=m)).replace(tzinfo=None) for m in micros]
    texts = column(F("dt", "DATETIME"), pa.array(moments, pa.timestamp("us")))
    for moment, text in zip(moments, texts, strict=True):
        assert datetime.fromisoformat(text) == moment
        assert text == format_datetime(moment)


@given(
    st.lists(
        st.decimals(
            min_value=Decimal("-99999999999999999999999999999.999999999"),
            max_value=Decimal("99999999999999999999999999999.999999999"),
            places=9,
            allow_nan=False,
            allow_infinity=False,
        ),
        max_size=30,
    )
)
def test_numeric_text_is_exact(values: list[Decimal]) -> None:
    texts = column(F("n", "NUMERIC"), pa.array(values, pa.decimal128(38, 9)))
    for value, text in zip(values, texts, strict=True):
        assert Decimal(text) == value
        assert "E" not in text and (text == "0" or not text.endswith("0") or "." not in text)


@given(st.lists(st.binary(max_size=40), max_size=30))
def test_bytes_round_trip(values: list[bytes]) -> None:
    texts = column(F("b", "BYTES"), pa.array(values, pa.binary()))
    assert [base64.b64decode(t) for t in texts] == values


@given(st.lists(st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)), max_size=30))
def test_dates(values: list[date]) -> None:
    texts = column(F("d", "DATE"), pa.array(values, pa.date32()))
    assert [date.fromisoformat(t) for t in texts] == values


@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(['{"a":1}', "[1,2]", "null"]))))
def test_json_conversion_never_raises(texts: list[str]) -> None:
    batch = pa.RecordBatch.from_arrays([pa.array(texts, pa.string())], names=["j"])
    records, errors = records_from_batch(batch, [F("j", "JSON")])
    assert len(records) + len(errors) == len(texts)
    bad = {e.index for e in errors}
    kept = [t for i, t in enumerate(texts) if i not in bad]
    assert [r["j"] for r in records] == [json.loads(t) for t in kept]


@given(
    st.integers(-120_000, 120_000),
    st.integers(-3_660_000, 3_660_000),
    st.integers(-(10**17), 10**17).map(lambda n: n * 1000),
)
def test_interval_text_is_canonical(months: int, days: int, nanos: int) -> None:
    text = format_interval(pa.MonthDayNano([months, days, nanos]))
    ym, d, hms = text.split(" ")
    sign = -1 if ym.startswith("-") else 1
    years, rest = ym.lstrip("-").split("-")
    assert sign * (int(years) * 12 + int(rest)) == months
    assert int(d) == days
    t_sign = -1 if hms.startswith("-") else 1
    h, m, s = hms.lstrip("-").split(":")
    total = (int(h) * 3600 + int(m) * 60) * 10**9 + int(Decimal(s) * 10**9)
    assert t_sign * total == nanos


COORD = st.floats(-180, 180, allow_nan=False).map(lambda v: round(v, 6))
POINT = st.tuples(COORD, COORD)


def wkb_point(x: float, y: float) -> bytes:
    return struct.pack("<BIdd", 1, 1, x, y)


def wkb_line(points: list[tuple[float, float]]) -> bytes:
    body = b"".join(struct.pack("<dd", x, y) for x, y in points)
    return struct.pack("<BII", 1, 2, len(points)) + body


@settings(max_examples=200)
@given(st.lists(POINT, min_size=2, max_size=6))
def test_wkb_wkt_and_geojson_agree(points: list[tuple[float, float]]) -> None:
    from_wkb = geography.to_wkt(wkb_line(points))
    assert geography.to_wkt(from_wkb) == from_wkb  # WKT is a fixed point
    loose = from_wkb.replace("(", " ( ").replace(",", " , ")
    assert geography.to_wkt(loose) == from_wkb  # spacing never matters
    as_json = geography.to_geojson(wkb_line(points))
    assert as_json == {"type": "LineString", "coordinates": [[x, y] for x, y in points]}
    assert geography.to_wkt(json.dumps(as_json)) == from_wkb
    x, y = points[0]
    assert geography.to_wkt(wkb_point(x, y)) == geography.to_wkt(f"POINT({x!r} {y!r})")
