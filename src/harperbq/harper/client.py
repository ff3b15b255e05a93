"""Harper Operations API client: the operations harperbq needs, typed and verified.

Why it exists: Harper is where every source row must land exactly once. So this client never
reports success for a row Harper did not confirm (`upsert` checks every id of every chunk against
Harper's `upserted_hashes`), repeats only requests that are safe to repeat, and turns every failure
into a typed error carrying Harper's own message (see `errors.py` and `transport.py`).

Thread safety: one `HarperClient` may be shared by any number of threads (e.g. the engine upserting
one window in a worker thread while another thread reads the next window). It holds one keep-alive
connection pool (`max_connections` sockets) and no other mutable state.

Counting: `count_range`/`count_windows` use a structured `search_by_conditions` `between` scan of
the cursor attribute's index, never SQL. Nothing is interpolated into a query, so cursor values
need no escaping; and it is measured ~10x faster than `SELECT COUNT(*) ... WHERE` (Harper's SQL
scans the whole table: 10 000 rows of 200 000 counted in 0.11 s vs 1.2-2.9 s).
"""

from __future__ import annotations

import bisect
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from harperbq.harper import replication
from harperbq.harper.encoding import Encoding
from harperbq.harper.errors import HarperError, IncompleteWriteError, NotFound, ValidationError
from harperbq.harper.models import (
    Attribute,
    ClusterStatus,
    Condition,
    PreparedUpsert,
    Sort,
    TableInfo,
    UpsertResult,
)
from harperbq.harper.transport import (
    InFlight,
    RequestEvent,
    Retry,
    SupportsSecret,
    Transport,
    encode,
)
from harperbq.profile import PROFILE

Record = Mapping[str, Any]
Row = dict[str, Any]

PRIMARY_KEY = "id"
DEFAULT_CHUNK_ROWS = 5_000
_MISSING_SHOWN = 20
STATUS_TIMEOUT_S = 10.0
"""The read timeout of node-status reads (`user_info`, `system_information`, `cluster_status`),
which Harper answers in milliseconds. Harper 4.7 now and then leaves one of two concurrent
`cluster_status` requests unanswered; bounded like this, the retry answers within seconds
instead of after the full `harper.timeout` (two workers starting together hung 120 s)."""


class HarperClient:
    """A client for one Harper node's Operations API (`POST /` with basic auth).

    `verify`: True (system + certifi trust store), False (no verification, insecure), or the path
    of a CA file/directory. `cert`: client certificate for mutual TLS, a PEM path holding cert and
    key, or a `(certfile, keyfile)` pair. `timeout_s` bounds reads and writes, `connect_timeout_s`
    the TCP/TLS connect; `max_retries` counts repeats after the first attempt. `encoding`: the
    body format (`auto`, `json`, `orjson`, `cbor`, `msgpack`; harper/encoding.py), every one
    storing the same values.
    """

    # Over the size caps on purpose: the connection's settings, passed through to Transport by
    # keyword.
    def __init__(  # noqa: PLR0913
        self,
        url: str,
        username: str,
        password: str | SupportsSecret,
        *,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.25,
        backoff_cap_s: float = 8.0,
        max_connections: int = 8,
        on_event: Callable[[RequestEvent], None] | None = None,
        encoding: Encoding | str = "auto",
    ) -> None:
        self._transport = Transport(
            url,
            username,
            password,
            verify=verify,
            cert=cert,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_retries=max_retries,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
            max_connections=max_connections,
            on_event=on_event,
            encoding=encoding,
        )

    @property
    def encoding(self) -> Encoding:
        """The body format of requests (`harper.encoding`)."""
        return self._transport.encoding

    @property
    def url(self) -> str:
        return self._transport.url

    @property
    def username(self) -> str:
        return self._transport.username

    def __repr__(self) -> str:
        return f"HarperClient(url={self.url!r}, username={self.username!r})"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> HarperClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def operation(self, body: Mapping[str, Any], *, idempotent: bool = False) -> Any:
        """Any Operations API call, for what has no method here. Retried only if `idempotent`."""
        return self._transport.call(body, retry=Retry.SAFE if idempotent else Retry.UNSENT)

    # -- node ------------------------------------------------------------------------------------

    def oldest_request(self) -> InFlight | None:
        """The request attempt waiting longest for Harper right now (the stall watchdog's
        input), or None."""
        return self._transport.oldest_in_flight()

    def probe(self, timeout_s: float) -> None:
        """Liveness: a cheap authenticated call on a fresh connection, bounded, never retried."""
        self._transport.probe(timeout_s)

    def ping(self) -> float:
        """Seconds for a cheap authenticated call (`user_info`); raises if Harper is unusable."""
        started = time.monotonic()
        self._status_read({"operation": "user_info"})
        return time.monotonic() - started

    def system_information(self, attributes: Sequence[str] | None = None) -> dict[str, Any]:
        """Harper's `system_information` as returned (system, time, cpu, memory, ...)."""
        body: dict[str, Any] = {"operation": "system_information"}
        if attributes is not None:
            body["attributes"] = list(attributes)
        result = self._status_read(body)
        return dict(result) if isinstance(result, dict) else {}

    def cluster_status(self) -> ClusterStatus:
        """This node's name and its replication peers (name, url, connected)."""
        result = self._status_read({"operation": "cluster_status"})
        return ClusterStatus.from_harper(result if isinstance(result, dict) else {})

    def _status_read(self, body: Mapping[str, Any]) -> Any:
        timeout_s = min(STATUS_TIMEOUT_S, self._transport.timeout_s)
        return self._transport.call(body, retry=Retry.SAFE, timeout_s=timeout_s)

    # -- schema ----------------------------------------------------------------------------------

    def create_database(self, database: str) -> None:
        """Raises `AlreadyExistsError` if it exists (create_table also creates a database)."""
        self._transport.call(
            {"operation": "create_database", "database": database}, retry=Retry.UNSENT
        )

    def drop_database(self, database: str, *, missing_ok: bool = False) -> None:
        try:
            self._transport.call(
                {"operation": "drop_database", "database": database}, retry=Retry.UNSENT
            )
        except NotFound:
            if not missing_ok:
                raise

    def describe_database(self, database: str) -> dict[str, TableInfo]:
        result = self._transport.call(
            {"operation": "describe_database", "database": database}, retry=Retry.SAFE
        )
        if not isinstance(result, dict):
            return {}
        return {
            name: TableInfo.from_harper(info)
            for name, info in result.items()
            if isinstance(info, dict)
        }

    def create_table(
        self,
        database: str,
        table: str,
        *,
        primary_key: str = PRIMARY_KEY,
        attributes: Sequence[Attribute] | None = None,
    ) -> None:
        """Create a table; with `attributes` it is schema-defined (typed, only chosen indexes).

        Without attributes Harper makes a schemaless table that indexes every attribute (about 3x
        slower to write). Raises `AlreadyExistsError` if the table exists.
        """
        body: dict[str, Any] = {
            "operation": "create_table",
            "database": database,
            "table": table,
            "primary_key": primary_key,
        }
        if attributes is not None:
            declared = list(attributes)
            if not any(a.name == primary_key for a in declared):
                declared.insert(0, Attribute(primary_key, "String", is_primary_key=True))
            body["attributes"] = [
                Attribute(a.name, a.type, a.indexed, a.name == primary_key).to_harper()
                for a in declared
            ]
        self._transport.call(body, retry=Retry.UNSENT)

    def describe_table(self, database: str, table: str) -> TableInfo:
        result = self._transport.call(
            {"operation": "describe_table", "database": database, "table": table},
            retry=Retry.SAFE,
        )
        return TableInfo.from_harper(result if isinstance(result, dict) else {})

    def drop_table(self, database: str, table: str, *, missing_ok: bool = False) -> None:
        try:
            self._transport.call(
                {"operation": "drop_table", "database": database, "table": table},
                retry=Retry.UNSENT,
            )
        except NotFound:
            if not missing_ok:
                raise

    def create_attribute(
        self, database: str, table: str, attribute: str, *, indexed: bool = False
    ) -> None:
        """Add an attribute to an existing table (Harper's `create_attribute`).

        Harper ignores a type here: attributes added after creation are untyped (accept any JSON
        value). Raises `AlreadyExistsError` when the attribute exists.
        """
        self._transport.call(
            {
                "operation": "create_attribute",
                "database": database,
                "table": table,
                "attribute": attribute,
                "indexed": indexed,
            },
            retry=Retry.UNSENT,
        )

    def drop_attribute(self, database: str, table: str, attribute: str) -> None:
        """Remove an attribute's declaration and index (values stay in schema-defined tables)."""
        self._transport.call(
            {
                "operation": "drop_attribute",
                "database": database,
                "table": table,
                "attribute": attribute,
            },
            retry=Retry.UNSENT,
        )

    # -- writes ----------------------------------------------------------------------------------

    def upsert(
        self,
        database: str,
        table: str,
        records: Iterable[Record],
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        on_chunk: Callable[[int], None] | None = None,
        replicated_confirmation: int = 0,
        timeout: float | None = None,
        prepared: PreparedUpsert | None = None,
    ) -> UpsertResult:
        """Upsert (merge) records in chunks; returns only when Harper confirmed EVERY id.

        Each record needs a non-empty string `id`. Records sharing an id within one chunk are
        merged client-side first (later fields win, as Harper's merge would), because Harper
        stores a stray `skip: true` attribute on such duplicates. Chunks are sent in order, one at
        a time; `on_chunk(confirmed_rows)` runs after each confirmed chunk. If a chunk fails, the
        typed error is raised with a note saying how many rows were confirmed before it; if Harper
        answers without confirming every id, `IncompleteWriteError` lists the missing ones. Retrying
        the whole call is always safe (upsert is idempotent).

        `replicated_confirmation` N > 0: each chunk returns only once N peers confirmed it
        (`_write`); `timeout` bounds that wait (default: the client's read timeout).
        `prepared`: these bodies already encoded (`prepare_upsert`), used when they fit.
        """
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        started = time.monotonic()
        rows = distinct = chunks = 0
        planned: Iterable[tuple[int, list[Record], bytes | None]]  # (rows, merged, body)
        if (
            prepared is not None
            and isinstance(records, Sequence)
            and prepared.fits(database, table, records, chunk_rows, replicated_confirmation)
        ):
            planned = (
                (min(chunk_rows, len(records) - i * chunk_rows), merged, payload)
                for i, (merged, payload) in enumerate(prepared.chunks)
            )
        else:
            planned = (
                (len(chunk), _merge_by_id(chunk, offset=rows), None)  # rows: read as each is made
                for chunk in _chunks(records, chunk_rows)
            )
        for size, merged, payload in planned:
            try:
                self._upsert_chunk(
                    database,
                    table,
                    merged,
                    confirmed_rows=rows,
                    replicated_confirmation=replicated_confirmation,
                    timeout=timeout,
                    payload=payload,
                )
            except Exception as exc:
                exc.add_note(
                    f"{rows} rows in {chunks} chunks were confirmed by Harper before this chunk "
                    f"({size} rows) failed; none of this chunk is reported as written"
                )
                raise
            rows += size
            distinct += len(merged)
            chunks += 1
            if on_chunk is not None:
                on_chunk(rows)
        return UpsertResult(rows, distinct, chunks, time.monotonic() - started)

    def prepare_upsert(
        self,
        database: str,
        table: str,
        records: Sequence[Record],
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        replicated_confirmation: int = 0,
    ) -> PreparedUpsert | None:
        """`upsert`'s bodies encoded now, for a later `upsert(..., prepared=)` of the same list
        (from another thread: nothing here touches the connection). None when the records
        cannot be sent as they are: the write then fails with its usual error."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        chunks: list[tuple[list[Record], bytes]] = []
        try:
            for chunk in _chunks(records, chunk_rows):
                merged = _merge_by_id(chunk, offset=0)
                body = _write_body(
                    "upsert", database, table, "records", merged, replicated_confirmation
                )
                chunks.append((merged, self._encoded(body, database, table, merged)))
        except (ValueError, ValidationError):
            return None
        return PreparedUpsert(
            database, table, records, len(records), chunk_rows, replicated_confirmation, chunks
        )

    def _encoded(
        self, body: Mapping[str, Any], database: str, table: str, items: list[Any]
    ) -> bytes:
        try:
            with PROFILE.timed("encode"):
                return self._transport.encode(body)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"cannot send to {database}.{table}: {_unencodable(items)}: {exc}",
                operation=str(body.get("operation")),
                url=self.url,
            ) from exc

    def _upsert_chunk(
        self,
        database: str,
        table: str,
        records: list[Record],
        *,
        confirmed_rows: int,
        replicated_confirmation: int,
        timeout: float | None,
        payload: bytes | None = None,
    ) -> None:
        result = self._write(
            "upsert", database, table, "records", records, replicated_confirmation, timeout, payload
        )
        missing = unconfirmed_ids(records, result)
        if missing:
            shown = ", ".join(missing[:_MISSING_SHOWN])
            more = (
                f" and {len(missing) - _MISSING_SHOWN} more"
                if len(missing) > _MISSING_SHOWN
                else ""
            )
            raise IncompleteWriteError(
                f"Harper at {self.url} did not confirm {len(missing)} of {len(records)} ids "
                f"upserted into {database}.{table}: {shown}{more} (answer: "
                f"{json.dumps(result)[:200]})",
                missing_ids=missing,
                confirmed_rows=confirmed_rows,
                url=self.url,
            )

    def delete(
        self,
        database: str,
        table: str,
        ids: Iterable[str],
        *,
        chunk_rows: int = 10_000,
        replicated_confirmation: int = 0,
        timeout: float | None = None,
    ) -> int:
        """Delete records by id; returns how many ids Harper reported deleted.

        Harper reports a missing id as deleted too, so the count is of ids sent and confirmed.
        `replicated_confirmation` and `timeout` as for `upsert`.
        """
        total = 0
        for chunk in _chunks(ids, chunk_rows):
            result = self._write(
                "delete", database, table, "ids", chunk, replicated_confirmation, timeout
            )
            deleted = result.get("deleted_hashes") if isinstance(result, dict) else None
            total += len(deleted or ())
        return total

    def _write(
        self,
        operation: str,
        database: str,
        table: str,
        key: str,
        items: list[Any],
        replicated_confirmation: int,
        timeout: float | None,
        payload: bytes | None = None,
    ) -> Any:
        """One upsert or delete request; with `replicated_confirmation` N > 0 Harper answers only
        after N peers confirmed it. `payload`: the body already encoded (`prepare_upsert`).

        A confirmed write is not repeated here once sent: its wait can be long, and a timeout or
        a lost answer means the outcome is unknown (`ReplicationUnconfirmed`: the caller repeats
        the idempotent write). Harper's refusal of N (more than the nodes it knows) becomes
        `ReplicationConfigError`.
        """
        body = _write_body(operation, database, table, key, items, replicated_confirmation)
        if payload is None:
            payload = self._encoded(body, database, table, items)
        if not replicated_confirmation:
            return self._transport.call(body, retry=Retry.SAFE, content=payload, timeout_s=timeout)
        try:
            return self._transport.call(
                body, retry=Retry.UNSENT, content=payload, timeout_s=timeout
            )
        except HarperError as exc:
            raise replication.classify(exc, replicated_confirmation) from exc

    # -- reads -----------------------------------------------------------------------------------

    def search_by_id(
        self,
        database: str,
        table: str,
        ids: Sequence[str],
        *,
        attributes: Sequence[str] = ("*",),
    ) -> list[Row]:
        """Records for the ids that exist (missing ids are simply absent)."""
        if not ids:
            return []
        result = self._transport.call(
            {
                "operation": "search_by_id",
                "database": database,
                "table": table,
                "ids": list(ids),
                "get_attributes": list(attributes),
            },
            retry=Retry.SAFE,
        )
        return _rows(result)

    def search(
        self,
        database: str,
        table: str,
        conditions: Sequence[Condition],
        *,
        operator: str = "and",
        attributes: Sequence[str] = ("*",),
        limit: int | None = None,
        offset: int | None = None,
        sort: Sort | None = None,
    ) -> list[Row]:
        """`search_by_conditions`. Harper drives the search from the most selective condition."""
        if not conditions:
            raise ValueError("search needs at least one condition (Harper requires one)")
        if operator not in ("and", "or"):
            raise ValueError("operator must be 'and' or 'or'")
        body: dict[str, Any] = {
            "operation": "search_by_conditions",
            "database": database,
            "table": table,
            "operator": operator,
            "conditions": [c.to_harper() for c in conditions],
            "get_attributes": list(attributes),
        }
        if limit is not None:
            body["limit"] = limit
        if offset is not None:
            body["offset"] = offset
        if sort is not None:
            body["sort"] = sort.to_harper()
        return _rows(self._transport.call(body, retry=Retry.SAFE))

    def sql(self, statement: str) -> list[Row]:
        """Run SQL (trusted text only: nothing here escapes values). SELECTs are retried.

        Rows whose every value is null are dropped: Harper returns such ghosts after deletes.
        """
        is_select = statement.lstrip().lower().startswith("select")
        result = self._transport.call(
            {"operation": "sql", "sql": statement},
            retry=Retry.SAFE if is_select else Retry.UNSENT,
        )
        return _rows(result)

    def count_range(self, database: str, table: str, attribute: str, lo: str, hi: str) -> int:
        """EXACT number of records with `lo <= attribute < hi` (strings, compared as Harper does).

        Half-open like the engine's windows. One indexed range scan read in one request, so one
        read snapshot; Harper's `between` includes `hi`, so values equal to `hi` are dropped here.
        """
        return self.count_windows(database, table, attribute, [lo, hi])[0]

    def count_windows(
        self, database: str, table: str, attribute: str, edges: Sequence[str]
    ) -> list[int]:
        """EXACT counts for consecutive half-open windows `[edges[i], edges[i+1])`, one request.

        `edges` must be strictly increasing strings (e.g. ISO-8601 UTC timestamps with
        microseconds and `Z`, which sort as text in time order). Values that are not strings
        (and ghost rows) are not counted.
        """
        if len(edges) < 2:
            raise ValueError("count_windows needs at least two edges")
        if not all(isinstance(e, str) for e in edges):
            raise TypeError("window edges must be strings")
        if any(a >= b for a, b in itertools.pairwise(edges)):
            raise ValueError("window edges must be strictly increasing")
        rows = self.search(
            database,
            table,
            [Condition(attribute, "between", [edges[0], edges[-1]])],
            attributes=[attribute],
        )
        counts = [0] * (len(edges) - 1)
        for row in rows:
            value = row.get(attribute)
            if isinstance(value, str) and edges[0] <= value < edges[-1]:
                counts[bisect.bisect_right(edges, value) - 1] += 1
        return counts


def unconfirmed_ids(records: Sequence[Record], answer: Any) -> list[str]:
    """Ids of `records` that Harper's upsert answer does not list in `upserted_hashes`."""
    confirmed = answer.get("upserted_hashes") if isinstance(answer, dict) else None
    got = {str(h) for h in confirmed or () if h is not None}
    return [str(r[PRIMARY_KEY]) for r in records if str(r[PRIMARY_KEY]) not in got]


def _write_body(
    operation: str,
    database: str,
    table: str,
    key: str,
    items: list[Any],
    replicated_confirmation: int,
) -> dict[str, Any]:
    """A write's request body: one builder for the write sent now and the one prepared ahead,
    so both send the same thing."""
    if replicated_confirmation < 0:
        raise ValueError("replicated_confirmation must be >= 0")
    body: dict[str, Any] = {"operation": operation, "database": database, "table": table}
    body[key] = items
    if replicated_confirmation:
        body["replicatedConfirmation"] = replicated_confirmation
    return body


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _merge_by_id(chunk: Sequence[Record], *, offset: int) -> list[Record]:
    merged: dict[str, Record] = {}
    for index, record in enumerate(chunk):
        key = record.get(PRIMARY_KEY) if isinstance(record, Mapping) else None
        if not isinstance(key, str) or not key:
            raise ValueError(
                f"record #{offset + index} has no string '{PRIMARY_KEY}' (got {key!r}); every "
                "record must carry its own non-empty string id"
            )
        previous = merged.get(key)
        merged[key] = record if previous is None else {**previous, **record}
    return list(merged.values())


def _unencodable(records: Sequence[Record]) -> str:
    for record in records:
        try:
            encode(record)
        except (TypeError, ValueError):
            key = record.get(PRIMARY_KEY) if isinstance(record, Mapping) else record
            return f"record id {key!r} is not JSON (NaN, Infinity or a non-JSON type)"
    return "the records are not JSON"


def _rows(result: Any) -> list[Row]:
    """Harper's row list without the all-null ghost rows it sometimes returns after deletes."""
    if not isinstance(result, list):
        return []
    return [
        row
        for row in result
        if isinstance(row, dict) and any(value is not None for value in row.values())
    ]
