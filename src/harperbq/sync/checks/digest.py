"""Row digests in Python: the same per-cell sums as `bigquery.sql.bucket_digests_query`.

Why: validation compares each (partition, window) cell by a digest computed on both sides,
BigQuery in one aggregate query, Harper here from the records it stores, so a deleted record
next to a foreign one, or a changed value, can never cancel out in a count. A row's digest text
joins `v<canonical text>` (or `N` for NULL) of each digest column with U+001F; the canonical
text is the partition key's (`sync.partitions.key_text`), bit-exact with the SQL, and accepts a
value in its Harper JSON form. A row's fingerprint is `FARM_FINGERPRINT(TO_HEX(MD5(text)))`:
the 32-character MD5 hex keeps the fingerprinted text short (the emulator's FARM_FINGERPRINT
differs from farmhash's beyond 64 bytes, and a row's text is often longer). A cell's digest is
(rows, sum of the high 32 bits, sum of the low 32 bits) of the fingerprints of its rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harperbq.bigquery.sql import KEY_SEPARATOR, NULL_VALUE_TEXT, VALUE_PREFIX, Column
from harperbq.sync.cluster.partitions import fingerprint, key_text

_HALF = (1 << 32) - 1
_UNREADABLE = "\x00"
"""Prefix of the text of a stored value that is not of its column's type: never a match."""


@dataclass(frozen=True)
class Digest:
    """Rows of a cell and the sums of their fingerprints' halves; equal digests, equal rows."""

    rows: int = 0
    high: int = 0
    low: int = 0

    def __add__(self, other: Digest) -> Digest:
        return Digest(self.rows + other.rows, self.high + other.high, self.low + other.low)


def value_text(value: Any, column: Column) -> str:
    """Digest text of one value (native, or as Harper stores it)."""
    if value is None:
        return NULL_VALUE_TEXT
    try:
        return VALUE_PREFIX + key_text(value, column.type)
    except (ValueError, TypeError, KeyError):
        return _UNREADABLE + repr(value)


def row_fingerprint(row: Mapping[str, Any], columns: Sequence[Column]) -> int:
    """The row's fingerprint over `columns` (signed INT64), as the SQL computes it."""
    text = KEY_SEPARATOR.join(value_text(row.get(c.name), c) for c in columns)
    return fingerprint(hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest())


def of_fingerprint(fp: int) -> Digest:
    """The digest of one row: what SQL's `(f >> 32) & (2^32-1)` and `f & (2^32-1)` sum."""
    return Digest(1, (fp >> 32) & _HALF, fp & _HALF)


def of_row(row: Mapping[str, Any], columns: Sequence[Column]) -> Digest:
    return of_fingerprint(row_fingerprint(row, columns))
