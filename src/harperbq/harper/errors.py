"""Typed errors for the Harper layer, each carrying Harper's own message.

Callers decide by type, not by parsing text: `Unavailable` is transient (retry later);
`NotFound` and `AlreadyExistsError` drive schema creation; `ValidationError` means the data or
request is wrong and retrying cannot help; `AuthenticationError` and `TLSError` are configuration
problems. No error text ever contains the password: messages are built from the URL, the user
name and Harper's reply only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


class HarperError(Exception):
    """Base of every error raised by `harperbq.harper`.

    `harper_message` is Harper's own `error` text (or the transport's message when Harper never
    answered); `status` the HTTP status when there was a response; `operation` the Operations API
    operation; `url` the endpoint (never with credentials).
    """

    def __init__(
        self,
        message: str,
        *,
        harper_message: str | None = None,
        status: int | None = None,
        operation: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.harper_message = harper_message
        self.status = status
        self.operation = operation
        self.url = url


class AuthenticationError(HarperError):
    """Harper refused the credentials (401) or the user lacks permission (403)."""


class NotFound(HarperError):  # noqa: N818 (name fixed by the design)
    """The database, table or record named in the request does not exist."""


class AlreadyExistsError(HarperError):
    """create_database / create_table / create_attribute found the object already there."""


class ValidationError(HarperError):
    """Harper rejected the request or its data (HTTP 400/413), e.g. a typed attribute mismatch.

    Harper applies an upsert request atomically: when one record of a chunk is rejected, none of
    the chunk is written.
    """


class ServerError(HarperError):
    """Harper failed with a 5xx other than 502/503/504 (often an unvalidated bad request)."""


class Unavailable(HarperError):  # noqa: N818 (name fixed by the design)
    """Harper could not be reached or answered 502/503/504, and retries were exhausted.

    For an upsert or delete the write may or may not have been applied; both are idempotent, so
    the caller can simply repeat the call.
    """


class TLSError(HarperError):
    """The TLS handshake failed: certificate not trusted, wrong host name, or not a TLS server."""


class SchemaConflictError(HarperError):
    """An existing Harper table cannot take what the source now sends (type change, wrong key)."""


class IncompleteWriteError(HarperError):
    """Harper answered an upsert but did not confirm every id of the chunk.

    `missing_ids` lists the ids Harper did not report as upserted; `confirmed_rows` how many rows of
    the whole call were confirmed before (chunks are confirmed in order).
    """

    def __init__(
        self,
        message: str,
        *,
        missing_ids: Sequence[str],
        confirmed_rows: int,
        operation: str | None = "upsert",
        url: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, url=url)
        self.missing_ids = list(missing_ids)
        self.confirmed_rows = confirmed_rows


class MissingCredentials(ValueError):  # noqa: N818 (reads as what is wrong)
    """The config names no Harper user or password (a setup error, not a bug); here, beside the
    other Harper errors, so the CLI catches it without importing the HTTP client."""


class PeerSchemaError(Exception):
    """A node refused a schema change Harper does not replicate: the table stops until an
    operator runs the requests there (then starts the table again)."""

    permanent = True

    def __init__(
        self, failures: Sequence[tuple[str, str]], requests: Sequence[Mapping[str, object]]
    ) -> None:
        self.failures = list(failures)
        self.requests = [dict(r) for r in requests]
        nodes = "; ".join(f"{url}: {reason}" for url, reason in failures)
        run = " then ".join(json.dumps(r) for r in self.requests)
        super().__init__(
            f"a schema change did not apply on {len(failures)} Harper node(s) ({nodes}). Harper "
            "does not replicate it: run these Operations API requests on each node named (as "
            f"the sync's user or a super user): {run}; then start the table again"
        )
