"""BigQuery values (as the readers' Arrow batches carry them) -> Harper JSON values, exactly.

INT64 -> integer, or an exact decimal string beyond ±(2^53 - 1) (JavaScript's safe range);
NUMERIC/BIGNUMERIC -> exact decimal string without exponent or trailing zeros (or float, opt-in);
FLOAT64 -> number, NaN/±Inf -> null (counted); BOOL, STRING as is; BYTES -> base64;
DATE -> YYYY-MM-DD; DATETIME -> YYYY-MM-DDTHH:MM:SS.ffffff; TIME -> HH:MM:SS[.ffffff];
TIMESTAMP -> YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC, always six digits, so ids and sorting are stable);
GEOGRAPHY -> WKT (or a GeoJSON object, opt-in); JSON -> the parsed value; INTERVAL -> BigQuery's
canonical text `Y-M D H:M:S[.F]`; RANGE -> {start, end} (null = unbounded); ARRAY and STRUCT
recursively (a NULL array is []). A row that cannot be converted becomes a RowError, never an
exception, so one bad row cannot stop a sync.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from google.cloud import bigquery

from harperbq.bigquery import geography
from harperbq.bigquery.sql import Column

MAX_SAFE_INTEGER = (1 << 53) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class RowError:
    """A source row that could not be converted: which row, which column, why, and the value."""

    index: int
    column: str
    reason: str
    sample: str


@dataclass(frozen=True)
class ConvertOptions:
    numeric_as: Literal["string", "float"] = "string"
    geography_as: Literal["wkt", "geojson"] = "wkt"


DEFAULT_OPTIONS = ConvertOptions()


@dataclass
class ConversionStats:
    """Counts of lossy-but-documented conversions, for metrics and the audit."""

    rows: int = 0
    errors: int = 0
    nonfinite_floats: int = 0
    big_integers: int = 0
    counts: dict[str, int] = field(default_factory=dict)


# --- scalar formatters (Python values, as Arrow's to_pylist gives them) ---------------------


def _micros_to_datetime(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def format_timestamp(value: Any) -> str:
    """`2024-01-01T00:00:00.123456Z` from an aware/naive (taken as UTC) datetime, µs int or text."""
    if isinstance(value, str):
        value = _parse_iso(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        value = _micros_to_datetime(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"{_date_text(value)}T{value:%H:%M:%S}.{value.microsecond:06d}Z"


def format_datetime(value: Any) -> str:
    """`2024-01-02T03:04:05.123456`: civil time, no zone (never converted to local time)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a datetime: {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return f"{_date_text(value)}T{value:%H:%M:%S}.{value.microsecond:06d}"


def _date_text(value: date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def format_date(value: Any) -> str:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, str):
        value = date.fromisoformat(value)
    if not isinstance(value, date):
        raise TypeError(f"not a date: {type(value).__name__}")
    return _date_text(value)


def format_time(value: Any) -> str:
    """`HH:MM:SS`, plus `.ffffff` when there are microseconds."""
    if isinstance(value, str):
        value = time.fromisoformat(value)
    if isinstance(value, timedelta):  # some drivers give TIME as a duration since midnight
        value = (datetime.min + value).time()
    if not isinstance(value, time):
        raise TypeError(f"not a time: {type(value).__name__}")
    text = f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    return f"{text}.{value.microsecond:06d}" if value.microsecond else text


def format_decimal(value: Any) -> str:
    """Exact decimal text with no exponent and no trailing zeros: `1.5`, `100`, `-0.001`."""
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    if number == 0:
        return "0"
    text = format(number, "f")  # never normalize(): it rounds to the context's 28 digits
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_interval(value: Any) -> str:
    """BigQuery's canonical INTERVAL text `[-]Y-M [-]D [-]H:M:S[.F]` from Arrow's month/day/nano
    triple, a dateutil relativedelta or (already canonical) text."""
    if isinstance(value, str):
        return value
    months = getattr(value, "months", None)
    days = getattr(value, "days", None)
    nanos = getattr(value, "nanoseconds", None)
    if nanos is None and hasattr(value, "years"):  # relativedelta
        months = value.years * 12 + value.months
        nanos = (
            ((value.hours * 60 + value.minutes) * 60 + value.seconds) * 1_000_000
            + value.microseconds
        ) * 1000
    if months is None or days is None or nanos is None:
        raise TypeError(f"not an interval: {type(value).__name__}")
    ym_sign = "-" if months < 0 else ""
    years, rest = divmod(abs(int(months)), 12)
    t_sign = "-" if nanos < 0 else ""
    seconds, frac = divmod(abs(int(nanos)), 1_000_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    fraction = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{ym_sign}{years}-{rest} {int(days)} {t_sign}{hours}:{minutes}:{seconds}{fraction}"


def _to_int(value: Any, stats: ConversionStats | None) -> Any:
    number = int(value)
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return number
    if stats is not None:
        stats.big_integers += 1
    return str(number)


def _to_float(value: Any, stats: ConversionStats | None) -> Any:
    number = float(value)
    if math.isfinite(number):
        return number
    if stats is not None:
        stats.nonfinite_floats += 1
    return None


def _to_bytes(value: Any) -> str:
    if isinstance(value, str):
        base64.b64decode(value, validate=True)  # already base64: keep it, but only if it is
        return value
    return base64.b64encode(bytes(value)).decode("ascii")


def _safe_json(value: Any) -> Any:
    """Integers beyond +-2^53 inside JSON become exact decimal strings, as INT64 columns do:
    Harper (JavaScript numbers) would round them otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, list):
        return [_safe_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _safe_json(v) for k, v in value.items()}
    return value


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return _safe_json(json.loads(value) if isinstance(value, str) else value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TypeError(f"not a boolean: {value!r}")


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"not a string: {type(value).__name__}")


# --- converters by column --------------------------------------------------------------------


def converter(column: Column, options: ConvertOptions, stats: ConversionStats | None) -> Converter:
    """A function turning one Python value of this column into its Harper JSON value."""
    scalar = _scalar_converter(column, options, stats)
    if not column.repeated:
        return lambda v: None if v is None else scalar(v)
    return lambda v: [] if v is None else [None if x is None else scalar(x) for x in v]


def _scalar_converter(
    column: Column, options: ConvertOptions, stats: ConversionStats | None
) -> Converter:
    kind = column.type
    if kind == "STRUCT":
        subs = [(sub.name, converter(sub, options, stats)) for sub in column.fields]

        def struct(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise TypeError(f"not a STRUCT: {type(value).__name__}")
            return {name: convert(value.get(name)) for name, convert in subs}

        return struct
    if kind == "RANGE":
        return _range_converter(column)
    if kind in ("NUMERIC", "BIGNUMERIC"):
        if options.numeric_as == "float":
            return lambda v: _to_float(Decimal(str(v)) if not isinstance(v, float) else v, stats)
        return format_decimal
    if kind == "GEOGRAPHY":
        return geography.to_geojson if options.geography_as == "geojson" else geography.to_wkt
    simple: dict[str, Converter] = {
        "INT64": lambda v: _to_int(v, stats),
        "FLOAT64": lambda v: _to_float(v, stats),
        "BOOL": _to_bool,
        "STRING": _to_string,
        "BYTES": _to_bytes,
        "DATE": format_date,
        "DATETIME": format_datetime,
        "TIME": format_time,
        "TIMESTAMP": format_timestamp,
        "JSON": _to_json,
        "INTERVAL": format_interval,
    }
    if kind not in simple:
        raise ValueError(f"column {column.name}: unsupported BigQuery type {kind}")
    return simple[kind]


def _range_converter(column: Column) -> Converter:
    element = column.element_type

    def bound(value: Any) -> Any:
        if value is None or value == "UNBOUNDED":
            return None
        kind = element
        if kind is None:
            if isinstance(value, datetime):
                kind = "TIMESTAMP" if value.tzinfo is not None else "DATETIME"
            else:
                kind = "DATE"
        return {"TIMESTAMP": format_timestamp, "DATETIME": format_datetime}.get(kind, format_date)(
            value
        )

    def convert(value: Any) -> dict[str, Any]:
        if isinstance(value, str):  # "[start, end)" text
            text = value.strip()
            if not (text.startswith("[") and text.endswith(")")):
                raise ValueError(f"not a RANGE: {value!r}")
            start, end = (p.strip() for p in text[1:-1].split(",", 1))
            value = {
                "start": None if start == "NULL" else start,
                "end": None if end == "NULL" else end,
            }
        if not isinstance(value, dict):
            raise TypeError(f"not a RANGE: {type(value).__name__}")
        return {"start": bound(value.get("start")), "end": bound(value.get("end"))}

    return convert


# --- batches ---------------------------------------------------------------------------------


def _vectorized(array: pa.Array, column: Column) -> list[Any] | None:
    """Whole-column conversion in Arrow for the hot types; None to fall back to per-value."""
    if column.repeated:
        return None
    kind, arrow_type = column.type, array.type
    try:
        if kind == "TIMESTAMP" and pa.types.is_timestamp(arrow_type):
            utc = array.cast(pa.timestamp("us", tz="UTC"))
            out: list[Any] = pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
            return out
        if kind == "DATETIME" and pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
            out = pc.strftime(
                array.cast(pa.timestamp("us")), format="%Y-%m-%dT%H:%M:%S"
            ).to_pylist()
            return out
        if (
            kind == "STRING"
            and (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))
        ) or (kind == "BOOL" and pa.types.is_boolean(arrow_type)):
            out = array.to_pylist()
            return out
        if kind == "INT64" and pa.types.is_integer(arrow_type):
            bounds = pc.min_max(array).as_py()
            low, high = bounds["min"], bounds["max"]
            if low is None or (low >= -MAX_SAFE_INTEGER and high <= MAX_SAFE_INTEGER):
                out = array.to_pylist()
                return out
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


def column_values(
    array: pa.Array | pa.ChunkedArray,
    column: Column,
    options: ConvertOptions = DEFAULT_OPTIONS,
    stats: ConversionStats | None = None,
) -> tuple[list[Any], dict[int, Exception]]:
    """Converted values of one column and the per-row failures (index -> error)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    fast = _vectorized(array, column)
    if fast is not None:
        return fast, {}
    convert = converter(column, options, stats)
    failures: dict[int, Exception] = {}
    values = array.to_pylist()
    out: list[Any] = [None] * len(values)
    for i, value in enumerate(values):
        try:
            out[i] = convert(value)
        except Exception as exc:  # a bad value must never stop the batch
            failures[i] = exc
    return out, failures


def _sample(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def records_from_batch(
    batch: pa.RecordBatch | pa.Table,
    schema: Sequence[bigquery.SchemaField | Column],
    options: ConvertOptions = DEFAULT_OPTIONS,
    stats: ConversionStats | None = None,
) -> tuple[list[dict[str, Any]], list[RowError]]:
    """Harper records for the batch's rows, in order, minus the rows listed in the errors.

    `schema` names the columns to convert and their BigQuery types (columns of the batch not in
    it, such as a computed partition column, are ignored). A column of the schema missing from
    the batch is a programming error and raises ValueError.
    """
    columns = [c if isinstance(c, Column) else Column.from_field(c) for c in schema]
    names = batch.schema.names
    missing = [c.name for c in columns if c.name not in names]
    if missing:
        raise ValueError(f"column(s) {missing} missing from the batch (has {names})")
    rows = batch.num_rows
    converted: list[list[Any]] = []
    bad: dict[int, RowError] = {}
    for column in columns:
        array = batch.column(names.index(column.name))
        values, failures = column_values(array, column, options, stats)
        converted.append(values)
        for index, exc in failures.items():
            if index not in bad:
                raw = array[index].as_py() if index < len(array) else None
                reason = f"{type(exc).__name__}: {exc}"
                bad[index] = RowError(index, column.name, reason[:300], _sample(raw))
    keys = [c.name for c in columns]
    records = (
        [
            dict(zip(keys, row, strict=True))
            for i, row in enumerate(zip(*converted, strict=True))
            if i not in bad
        ]
        if columns
        else [{} for _ in range(rows)]
    )
    errors = [bad[i] for i in sorted(bad)]
    if stats is not None:
        stats.rows += rows
        stats.errors += len(errors)
    return records, errors
