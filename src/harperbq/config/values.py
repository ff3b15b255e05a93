"""Value types of the config file: durations ("250ms", "5m"), timestamps, key lists, names and
their limits, as pydantic validators shared by every model."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
)
from pydantic_core import PydanticCustomError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.I)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_S = 100 * 365 * 86400.0
"""No duration beyond 100 years: past that, timestamps overflow (year 9999) long before use."""


def _seconds(amount: float, unit: str) -> float:
    """Exact where floats allow: milliseconds divide (250 ms is exactly 0.25 s)."""
    return amount / 1000.0 if unit == "ms" else amount * _UNIT_SECONDS[unit]


def parse_duration(value: Any, unit: str = "s") -> float:
    """Seconds from a number in `unit` or from a string like "250ms", "90s", "1h30m", "7d"."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = _seconds(float(value), unit)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = _seconds(float(text), unit)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or _DURATION_PART.sub("", text).strip():
                raise ValueError(f"not a duration: {value!r}") from None
            seconds = sum(_seconds(float(n), u) for n, u in parts)
    else:
        raise ValueError(f"not a duration: {value!r}")
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
    return seconds


def _duration_validator(unit: str) -> Callable[[Any], float]:
    def validate(value: Any) -> float:
        try:
            seconds = parse_duration(value, unit)
            if seconds > MAX_DURATION_S:
                raise ValueError(
                    f"a duration must be at most 100 years ({MAX_DURATION_S:g} s), got {value!r}"
                )
            return seconds
        except ValueError as exc:
            raise PydanticCustomError(
                "duration",
                "{error}",
                {
                    "error": str(exc),
                    "fix": f"write a number of {'milliseconds' if unit == 'ms' else 'seconds'}"
                    ' or a string like "250ms", "90s", "5m", "1h"',
                },
            ) from None

    return validate


Seconds = Annotated[float, BeforeValidator(_duration_validator("s"))]
"""A duration in seconds; a bare number means seconds."""
MillisAsSeconds = Annotated[float, BeforeValidator(_duration_validator("ms"))]
"""A duration stored in seconds whose bare numbers mean milliseconds (the original's ms keys)."""


def parse_timestamp(value: Any) -> datetime:
    """An aware UTC datetime from ISO 8601 text (naive text is taken as UTC) or a YAML date."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise PydanticCustomError(
                "timestamp",
                "not an ISO 8601 timestamp: {value}",
                {"value": value, "fix": 'write it like "2024-01-01T00:00:00Z"'},
            ) from None
    else:
        raise PydanticCustomError(
            "timestamp",
            "not a timestamp: {value}",
            {"value": repr(value), "fix": 'write it like "2024-01-01T00:00:00Z"'},
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _as_list(value: Any) -> Any:
    """`primaryKey: mmsi` is read as `[mmsi]`."""
    return [value] if isinstance(value, str) else value


def _columns(value: Any) -> Any:
    """`'*'` (or `['*']`) means every column: None."""
    if value == "*" or value == ["*"]:
        return None
    return value


MAX_CONFIRMATIONS = 100


def _confirmation(value: Any) -> int | str:
    """`harper.replicatedConfirmation`: "auto" or a whole number of peers (0: do not wait)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 <= number <= MAX_CONFIRMATIONS:
        raise PydanticCustomError(
            "confirmation",
            'must be "auto" or a whole number from 0 to {limit}',
            {
                "limit": MAX_CONFIRMATIONS,
                "fix": 'write "auto" (1 when the node has a replicating peer, else 0) or a whole '
                f"number of peers from 0 to {MAX_CONFIRMATIONS} (0: do not wait for peers)",
            },
        )
    return number


Confirmation = Annotated[int | Literal["auto"], BeforeValidator(_confirmation)]


def _workers(value: Any) -> int | str:
    """`sync.workers`: a whole number or "auto" (scaled between minWorkers and maxWorkers)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise PydanticCustomError(
        "workers",
        'must be "auto" or a whole number from 1 to {limit}',
        {
            "limit": MAX_WORKERS,
            "fix": f'write a whole number of local workers from 1 to {MAX_WORKERS}, or "auto" '
            "(scaled by lag between sync.minWorkers and sync.maxWorkers)",
        },
    )


MAX_WORKERS = 256
"""Most local workers per node (`sync.workers`, `sync.maxWorkers`)."""
Workers = Annotated[int | Literal["auto"], BeforeValidator(_workers)]
Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
KeyList = Annotated[list[str], BeforeValidator(_as_list)]
ColumnList = Annotated[list[str] | None, BeforeValidator(_columns)]

# BigQuery column names we accept: the classic rules (flexible names are not supported).
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
TABLE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$")
DATASET_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
TABLE_NAME = re.compile(r"^[\w\-]{1,1024}$")
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9.:\-]{0,127}$")
HARPER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LABEL = re.compile(r"^[a-z0-9_\-]{0,63}$")

DAY = 86400.0


def span(seconds: float) -> str:
    """A duration as the shortest exact text ("7d", "90m", "2.5s") for messages."""
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
