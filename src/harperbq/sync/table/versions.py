"""Per key, only the newest version reaches Harper: within a window read, and over re-reads.

Why: with `primaryKey` and an update-time cursor the source may hold several versions of one
key. Harper merges records of one id in arrival order, and neither read path orders rows
(query pages come in any order, Storage Read streams interleave), so the older version could
win. Newest = greatest cursor value; versions with equal cursors are ranked by a tie-break
(the source passes the validation digest's row fingerprint, so Harper holds exactly the version
`validate` expects, see `sql.bucket_digests_query`), then by the hash of the converted row
(`keys.row_hash`), so the same version wins whatever the order and the page boundaries.
Within one window read this is streaming: a version that is older than one already passed on
is dropped (the newer one is, or will be, upserted after it), and within a page only
the newest of each key is kept.

Re-read paths (late-row reconciliation, `validate --repair`) re-read OLD windows; a key whose
newer version was synced from a later window must not be overwritten by them, so those paths
first compare with the cursor Harper stores (`drop_older_than_stored`). The hot catch-up path
does not: it reads windows in cursor order, so a later window always holds the newer versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harperbq.sync.table.keys import key_id, row_hash

Record = dict[str, Any]
CursorMicros = Callable[[Any], int | None]
TieBreak = Callable[[Mapping[str, Any]], int]
_OLDEST = -(1 << 63)
_INT64_OFFSET = 1 << 63


def _no_tie_break(_record: Mapping[str, Any]) -> int:
    return 0


class NewestVersions:
    """Filters the pages of ONE window read so that each key's newest version wins."""

    def __init__(
        self,
        primary_key: Sequence[str],
        cursor: str,
        micros: CursorMicros,
        tie_break: TieBreak = _no_tie_break,
        *,
        hashed: Sequence[str] | None = None,
    ) -> None:
        """`hashed`: the columns the last tie-break hashes (None: the whole row). The source
        names those its tie-break does not cover: versions the tie-break ranks equal differ
        only there, and hashing a few columns instead of the row halves this filter's CPU (at
        the snapshot's 200 000 rows the filter was half of the sync's)."""
        self._primary_key = list(primary_key)
        self._cursor = cursor
        self._micros = micros
        self._tie_break = tie_break
        self._hashed = None if hashed is None else list(hashed)
        # One int per key, not a tuple of three: a snapshot read keeps an entry for every key
        # of the table, and the tuple's four objects were most of its peak memory.
        self._best: dict[str, int] = {}

    def _rank(self, record: Mapping[str, Any]) -> int:
        """(cursor, tie-break, row hash) packed into one int that orders as the tuple would:
        the hash (128 bits) in the low bits, the tie-break (a signed INT64) above it, the
        cursor (any size, NULL oldest) on top."""
        at = self._micros(record.get(self._cursor))
        top = 0 if at is None else at - _OLDEST
        tie = self._tie_break(record) + _INT64_OFFSET
        rank = (top << 192) | (tie << 128)
        if self._hashed is None:
            return rank | int(row_hash(record), 16)
        if not self._hashed:
            return rank  # the tie-break covers every column: tied versions are identical
        return rank | int(row_hash({c: record.get(c) for c in self._hashed}), 16)

    def keep(
        self, records: list[Record], partitions: list[int]
    ) -> tuple[list[Record], list[int], list[int]]:
        """The page's records (and their partitions) minus superseded versions, and the
        partitions of the rows dropped (they still count as read for reconciliation)."""
        kept: dict[str, int] = {}  # key -> index in this page of the version kept so far
        dropped: set[int] = set()
        for index, record in enumerate(records):
            key = key_id(record, self._primary_key)
            rank = self._rank(record)
            best = self._best.get(key)
            if best is not None and rank <= best:
                dropped.add(index)
                continue
            self._best[key] = rank
            if key in kept:
                dropped.add(kept[key])
            kept[key] = index
        if not dropped:
            return records, partitions, []
        return (
            [r for i, r in enumerate(records) if i not in dropped],
            [p for i, p in enumerate(partitions) if i not in dropped],
            [p for i, p in enumerate(partitions) if i in dropped],
        )


def drop_older_than_stored(
    records: list[Record], stored: Mapping[str, int], cursor: str, micros: CursorMicros
) -> tuple[list[Record], int]:
    """Records (with their `id`) minus those whose stored Harper record has a NEWER cursor;
    and how many were dropped. Equal cursors are written (a re-read of the same version)."""
    out: list[Record] = []
    for record in records:
        newer = stored.get(str(record["id"]))
        at = micros(record.get(cursor))
        if newer is not None and at is not None and newer > at:
            continue
        out.append(record)
    return out, len(records) - len(out)
