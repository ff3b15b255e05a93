"""Deterministic Harper record ids: a pure function of the converted row, never of a clock.

With `primaryKey`, the id is the key's canonical text, readable:
`367001234|2024-01-01T00:00:00.000000Z`.
Without one, it is a 128-bit BLAKE2b hash of the canonical row, plus `~k` for the k-th identical
copy read in the same window: identical rows share a cursor value and a partition, so they always
fall in one window read, and counting them there keeps the multiset exact across re-reads.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

_SEPARATOR = "|"
_NULL = "%00"


def _component(value: Any) -> str:
    """Canonical, unambiguous text of one key value (already converted to its Harper form)."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int):
        text = str(value)
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("%", "%25").replace(_SEPARATOR, "%7C")


def key_id(row: Mapping[str, Any], primary_key: Sequence[str]) -> str:
    """The id of a row of a keyed table."""
    return _SEPARATOR.join(_component(row.get(column)) for column in primary_key)


def row_hash(row: Mapping[str, Any]) -> str:
    """128-bit hash of the canonical row: key order, spacing and time zone cannot change it."""
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()


class WindowIds:
    """Assigns ids to the rows of one window read (all its pages), in any order."""

    def __init__(self, primary_key: Sequence[str]) -> None:
        self._primary_key = list(primary_key)
        self._copies: dict[str, int] = {}

    def id_for(self, row: Mapping[str, Any]) -> str:
        if self._primary_key:
            return key_id(row, self._primary_key)
        digest = row_hash(row)
        copy = self._copies.get(digest, 0)
        self._copies[digest] = copy + 1
        return digest if copy == 0 else f"{digest}~{copy}"
