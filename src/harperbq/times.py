"""Time, one way: integer microseconds since the Unix epoch (UTC) in memory, and one text form,
`YYYY-MM-DDTHH:MM:SS.ffffffZ`, where time is stored (Harper's state tables) or shown. Fixed
width, so text order equals time order; years 1 to 9999, BigQuery's whole TIMESTAMP range."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

MICROS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO_MICRO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def to_micros(moment: datetime) -> int:
    """Exact microseconds since the epoch (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds


MIN_US = to_micros(datetime.min)  # 0001-01-01T00:00:00Z, BigQuery's oldest TIMESTAMP
MAX_US = to_micros(datetime.max)  # 9999-12-31T23:59:59.999999Z, its newest


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def iso_text(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` of an aware datetime (naive is taken as UTC), the year
    always four digits: `strftime("%Y")` does not zero-pad years below 1000 on Linux, and
    `fromisoformat` then rejects the text. The one formatter of state and window times."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def iso(micros: int) -> str:
    """The text of an instant in µs.

    A bound outside years 1..9999 (say a horizon `hi - lateness` before year 1) is clamped to
    the range: no BigQuery value lies beyond it, so the clamped bound selects the same rows."""
    return iso_text(from_micros(min(max(micros, MIN_US), MAX_US)))


def iso_seconds(seconds: float | None) -> str | None:
    """Unix seconds (a clock reading) as text; None stays None."""
    return iso(int(seconds * MICROS)) if seconds is not None else None


def parse_iso(text: str) -> int:
    """Inverse of `iso` (also accepts any ISO 8601 with offset; naive is taken as UTC)."""
    return to_micros(datetime.fromisoformat(text.replace("Z", "+00:00")))


def iso_datetime(moment: datetime) -> str:
    """The text of an aware datetime (a naive one is refused: its zone is unknown)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return iso_text(moment)


def parse_iso_datetime(text: str) -> datetime:
    """A stored text back to an aware datetime; only the one text form is accepted."""
    if not _ISO_MICRO_Z.match(text):
        raise ValueError(f"not an ISO-8601 UTC timestamp with microseconds and Z: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def utc_now_iso() -> str:
    """Now, as text."""
    return iso_datetime(datetime.now(UTC))
