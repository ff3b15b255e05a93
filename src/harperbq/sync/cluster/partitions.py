"""Virtual partitions in Python: the same function as `bigquery.sql.partition_sql`, bit for bit.

partition = FARM_FINGERPRINT(canonical key text) reinterpreted as signed INT64, mod P (floor
mod, which is what `MOD(MOD(x, P) + P, P)` computes). The canonical text of one value is type
aware and time-zone free: TIMESTAMP and DATETIME -> µs since the epoch, DATE -> days since the
epoch, TIME -> µs since midnight, BYTES -> base64, BOOL -> true/false, INT64 -> decimal,
STRING as is, NULL -> empty; components of a multi-column key are joined by U+001F.
Values may be native (int, datetime, date, time, bytes) or their Harper JSON form
(ISO strings, base64, big integers as decimal strings) when `types` says what they are.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import farmhash
import pyarrow as pa

from harperbq.bigquery.sql import KEY_SEPARATOR, NULL_KEY_TEXT, PARTITION_KEY_TYPES, normalize_type
from harperbq.times import to_micros

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def _native(value: Any, kind: str | None) -> Any:
    """The native Python value of a key value given in its Harper JSON form."""
    if not isinstance(value, str) or kind in (None, "STRING", "BYTES"):
        return value
    if kind == "INT64":
        return int(value)
    if kind in ("TIMESTAMP", "DATETIME"):
        return _parse_datetime(value)
    if kind == "DATE":
        return date.fromisoformat(value)
    if kind == "TIME":
        return time.fromisoformat(value)
    if kind == "BOOL":
        return {"true": True, "false": False}[value.lower()]
    return value


def key_text(value: Any, type_name: str | None = None) -> str:
    """Canonical text of one partition-key value (see the module doc)."""
    kind = normalize_type(type_name) if type_name else None
    if kind is not None and kind not in PARTITION_KEY_TYPES:
        raise ValueError(
            f"type {kind} cannot be a partition key; use {', '.join(PARTITION_KEY_TYPES)}"
        )
    value = _native(value, kind)
    if value is None:
        return NULL_KEY_TEXT
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} is outside INT64")
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return str(to_micros(value))
    if isinstance(value, date):
        return str((value - date(1970, 1, 1)).days)
    if isinstance(value, time):
        return str(
            ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
        )
    raise ValueError(f"a {type(value).__name__} value cannot be a partition key: {value!r}")


def partition_key_string(values: Sequence[Any], types: Sequence[str] | None = None) -> str:
    """The canonical key text hashed for partitioning, identical to the SQL expression's."""
    if not values:
        raise ValueError("a partition key needs at least one value")
    if types is not None and len(types) != len(values):
        raise ValueError(f"{len(values)} values but {len(types)} types")
    kinds: Sequence[str | None] = types if types is not None else [None] * len(values)
    return KEY_SEPARATOR.join(key_text(v, t) for v, t in zip(values, kinds, strict=True))


def fingerprint(text: str) -> int:
    """BigQuery's FARM_FINGERPRINT: farmhash fingerprint64 reinterpreted as signed INT64."""
    unsigned = int(farmhash.fingerprint64(text))
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


def partition_of_key(key: str, partitions: int) -> int:
    """Partition in [0, partitions) of a canonical key text."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return fingerprint(key) % partitions


def partition_of(values: Sequence[Any], partitions: int, types: Sequence[str] | None = None) -> int:
    """Partition in [0, partitions) of a row's partition-key values."""
    return partition_of_key(partition_key_string(values, types), partitions)


def keep_partitions(
    batch: pa.RecordBatch,
    key: Sequence[str],
    types: Sequence[str],
    partitions: int,
    wanted: Collection[int],
) -> pa.RecordBatch:
    """The rows of `batch` whose partition is in `wanted`: the Storage Read API cannot filter
    on FARM_FINGERPRINT (BigQuery refuses it as "too complex"), so readers filter here."""
    chosen = frozenset(int(p) for p in wanted)
    columns = [batch.column(name).to_pylist() for name in key]
    mask = [
        partition_of(list(values), partitions, types) in chosen
        for values in zip(*columns, strict=True)
    ]
    return batch.filter(pa.array(mask, pa.bool_()))
