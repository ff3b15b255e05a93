"""One POST to Harper's Operations API: TLS, keep-alive pool, retries, typed errors.

Why a layer of its own: every operation needs the same decisions (is this failure transient? may
this request be repeated? which typed error is it?), and getting them wrong is how rows get lost.

Retry rules. A request is repeated, with exponential backoff and full jitter, only when repeating
it cannot change the outcome:
- `Retry.SAFE` (reads, upserts, deletes: idempotent): on any transport failure (connect, read,
  write, protocol, timeouts) and on HTTP 429/502/503/504;
- `Retry.UNSENT` (DDL and anything not idempotent): only when the request provably never reached
  Harper (connect failure or connect/pool timeout) or Harper refused it as overloaded (503).

Thread safety: an `httpx.Client` (and its connection pool) may be shared by threads; this class
adds only its registry of requests in flight (under a lock), so one `Transport` serves every
worker thread. That registry is what the stall watchdog (`watchdog.py`) reads: httpx timeouts
bound each socket read or write, not how long Harper may take to answer, so a stopped Harper
holds a request for the full `timeout` per attempt without any other sign.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import json
import logging
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import certifi
import httpx

from harperbq.harper.encoding import CONTENT_TYPES, Encoding, encoder, json_encode, resolve
from harperbq.harper.errors import (
    AlreadyExistsError,
    AuthenticationError,
    HarperError,
    NotFound,
    ServerError,
    TLSError,
    Unavailable,
    ValidationError,
)
from harperbq.retry import full_jitter

log = logging.getLogger("harperbq.harper")

_NOT_FOUND = re.compile(
    r"^(table|database|schema|attribute)\b.*\b(does not exist|not found)", re.IGNORECASE
)
_ALREADY_EXISTS = re.compile(r"\balready exists\b", re.IGNORECASE)
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})


class SupportsSecret(Protocol):
    """Anything holding a secret behind `get_secret_value()` (e.g. pydantic's SecretStr)."""

    def get_secret_value(self) -> str: ...


class Retry(enum.Enum):
    """How freely a request may be repeated (see the module docstring)."""

    SAFE = "safe"
    UNSENT = "unsent"


@dataclass(frozen=True)
class RequestEvent:
    """One attempt of one request, for metrics and tracing (never contains data or secrets)."""

    operation: str
    attempt: int
    duration_s: float
    status: int | None
    error: str | None
    will_retry: bool


@dataclass(frozen=True)
class InFlight:
    """One request attempt waiting for Harper's answer."""

    operation: str
    started: float
    """`time.monotonic()` when the attempt was sent (or began waiting for a connection)."""


def reveal(password: str | SupportsSecret) -> str:
    return password if isinstance(password, str) else password.get_secret_value()


def check_url(url: str) -> httpx.URL:
    """Reject URLs we cannot use, without echoing a URL that might hold a password."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"Harper URL is not a valid URL: {exc}") from None
    if parsed.userinfo:
        raise ValueError(
            "the Harper URL contains credentials; give them as username/password instead "
            "(the URL is not repeated here because it holds a password)"
        )
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"Harper URL must be http(s)://host:port, got {url!r}")
    return parsed


def ssl_context(verify: bool | str, cert: str | tuple[str, str] | None = None) -> ssl.SSLContext:
    """The TLS settings: trust store (system + certifi, or a CA file/directory) and client cert.

    `verify=False` switches verification off (and says so in the logs); a string is the path of a
    PEM CA file or a directory of hashed CA certificates that signed Harper's certificate.
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        log.warning("TLS certificate verification of Harper is switched off (verify=false)")
    elif verify is True:
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=certifi.where())
    else:
        if not os.path.exists(verify):
            raise ValueError(f"Harper CA file or directory does not exist: {verify}")
        if os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
    if cert is not None:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        for path in (certfile, keyfile):
            if path is not None and not os.path.exists(path):
                raise ValueError(f"Harper client certificate/key file does not exist: {path}")
        context.load_cert_chain(certfile, keyfile)
    return context


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _harper_message(response: httpx.Response, content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        text = content.decode("utf-8", "replace").strip()
        return text[:500] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return json.dumps(body)[:500]


class Transport:
    """A keep-alive connection pool to one Harper node plus the retry and error policy."""

    # Over the size caps on purpose: every connection setting by keyword: URL, TLS, timeouts,
    # retries, pool.
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
        parsed = check_url(url)
        self.encoding = resolve(encoding)
        self.encode = encoder(self.encoding)
        """Makes request bodies in `encoding` (callers that encode themselves use this)."""
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.url = str(parsed)
        self.username = username
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._on_event = on_event
        self._connect_timeout_s = connect_timeout_s
        self._random = random.Random()
        self._in_flight: dict[int, InFlight] = {}
        self._in_flight_lock = threading.Lock()
        self._request_ids = itertools.count()
        tls: ssl.SSLContext | bool = ssl_context(verify, cert) if parsed.scheme == "https" else True
        self._auth = httpx.BasicAuth(username, reveal(password))
        self._tls = tls
        self._http = httpx.Client(
            auth=self._auth,
            verify=tls,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s, pool=timeout_s),
            # Idle sockets are dropped after 5 s, well before Harper's own keep-alive timeout
            # (30 s), so a request never races the server closing its connection.
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=5.0,
            ),
            headers={"content-type": CONTENT_TYPES[self.encoding], "accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"Transport(url={self.url!r}, username={self.username!r})"

    def close(self) -> None:
        self._http.close()

    def backoff_s(self, attempt: int) -> float:
        """The sleep after failed attempt `attempt` (0, 1, ...): full jitter, doubling from
        `backoff_base_s` up to `backoff_cap_s` (the one backoff formula, `harperbq.retry`)."""
        return full_jitter(attempt + 1, self.backoff_base_s, 2.0, self.backoff_cap_s, self._random)

    def call(
        self,
        body: Mapping[str, Any],
        *,
        retry: Retry,
        content: bytes | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """POST one operation and return Harper's decoded JSON answer, or raise a typed error.

        `content` is the already-encoded body (callers that encode themselves, e.g. to report
        which record cannot be encoded); otherwise `body` is encoded here. `timeout_s` replaces
        the client's read timeout for this call (confirmed writes wait for peers).
        """
        operation = str(body.get("operation", "?"))
        payload = content if content is not None else self.encode(body)
        timeout: Any = (
            httpx.USE_CLIENT_DEFAULT
            if timeout_s is None
            else httpx.Timeout(timeout_s, connect=self._connect_timeout_s, pool=timeout_s)
        )
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                with self._tracked(operation, started):
                    response, content = self._post(payload, timeout)
            except httpx.HTTPError as exc:
                error = self._transport_error(exc, operation, retry)
                retryable = not isinstance(error, TLSError) and (
                    retry is Retry.SAFE or _unsent(exc)
                )
                if not retryable or attempt >= self.max_retries:
                    self._event(operation, attempt, started, None, str(exc), False)
                    if retryable:
                        error.add_note(f"gave up after {attempt + 1} attempts")
                    raise error from exc
                self._event(operation, attempt, started, None, str(exc), True)
                self._sleep(operation, attempt, f"{type(exc).__name__}: {exc}")
                attempt += 1
                continue
            if response.is_success:
                self._event(operation, attempt, started, response.status_code, None, False)
                try:
                    return json.loads(content)
                except ValueError as exc:
                    raise ServerError(
                        f"Harper at {self.url} answered {operation} with a body that is not "
                        f"JSON: {content[:200]!r}",
                        status=response.status_code,
                        operation=operation,
                        url=self.url,
                    ) from exc
            status = response.status_code
            transient = status in _TRANSIENT_STATUS and (retry is Retry.SAFE or status == 503)
            message = _harper_message(response, content)
            if transient and attempt < self.max_retries:
                self._event(operation, attempt, started, status, message, True)
                self._sleep(operation, attempt, f"HTTP {status}: {message}")
                attempt += 1
                continue
            self._event(operation, attempt, started, status, message, False)
            raise self._status_error(status, message, operation, attempt + 1)

    def _post(self, payload: bytes, timeout: Any) -> tuple[httpx.Response, bytes]:
        """The answer and its body, read as a stream rather than by `post()`: an httpx response
        sits in a reference cycle, so a body it caches outlives the call until the next full
        collection (a 10 000-record scan answer is ~3 MiB; validation once held nine at once)."""
        request = self._http.build_request("POST", self.url, content=payload, timeout=timeout)
        response = self._http.send(request, stream=True)
        try:
            return response, b"".join(response.iter_bytes())
        finally:
            response.close()

    @contextlib.contextmanager
    def _tracked(self, operation: str, started: float) -> Iterator[None]:
        token = next(self._request_ids)
        with self._in_flight_lock:
            self._in_flight[token] = InFlight(operation, started)
        try:
            yield
        finally:
            with self._in_flight_lock:
                del self._in_flight[token]

    def oldest_in_flight(self) -> InFlight | None:
        """The attempt that has waited longest for Harper's answer, or None when none waits."""
        with self._in_flight_lock:
            return min(self._in_flight.values(), key=lambda r: r.started, default=None)

    def probe(self, timeout_s: float) -> None:
        """One `user_info` on a connection of its own (never queued behind the pool), its
        connect and its wait for the answer each bounded by `timeout_s`, never retried; raises
        a typed error if Harper does not answer in time or refuses it."""
        deadline = httpx.Timeout(timeout_s)
        with httpx.Client(auth=self._auth, verify=self._tls, timeout=deadline) as http:
            try:
                response = http.post(
                    self.url,
                    content=json_encode({"operation": "user_info"}),
                    headers={"content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, "user_info", Retry.SAFE) from exc
        if not response.is_success:
            message = _harper_message(response, response.content)
            raise self._status_error(response.status_code, message, "user_info", 1)

    def _sleep(self, operation: str, attempt: int, reason: str) -> None:
        delay = self.backoff_s(attempt)
        log.warning(
            "harper request failed, retrying: operation=%s attempt=%d delay_s=%.3f url=%s error=%s",
            operation,
            attempt + 1,
            delay,
            self.url,
            reason,
        )
        time.sleep(delay)

    def _event(
        self,
        operation: str,
        attempt: int,
        started: float,
        status: int | None,
        error: str | None,
        will_retry: bool,
    ) -> None:
        if self._on_event is not None:
            self._on_event(
                RequestEvent(
                    operation, attempt, time.monotonic() - started, status, error, will_retry
                )
            )

    def _transport_error(self, exc: httpx.HTTPError, operation: str, retry: Retry) -> HarperError:
        cause = _ssl_cause(exc)
        if cause is not None:
            return TLSError(
                _tls_message(self.url, cause),
                harper_message=str(cause),
                operation=operation,
                url=self.url,
            )
        if isinstance(exc, httpx.TimeoutException):
            what = f"timed out ({type(exc).__name__})"
        else:
            what = f"failed ({type(exc).__name__}: {exc})"
        outcome = (
            ""
            if _unsent(exc) or retry is Retry.SAFE
            else "; the request may or may not have been applied"
        )
        return Unavailable(
            f"Harper at {self.url} could not be reached: {operation} {what}{outcome}",
            harper_message=str(exc),
            operation=operation,
            url=self.url,
        )

    def _status_error(
        self, status: int, message: str, operation: str, attempts: int
    ) -> HarperError:
        common: dict[str, Any] = {
            "harper_message": message,
            "status": status,
            "operation": operation,
            "url": self.url,
        }
        if status == 401:
            return AuthenticationError(
                f"Harper at {self.url} refused the login of user '{self.username}' "
                f"(HTTP 401: {message}); check harper.username and harper.password",
                **common,
            )
        if status == 403:
            return AuthenticationError(
                f"Harper at {self.url}: user '{self.username}' may not run {operation} "
                f"(HTTP 403: {message})",
                **common,
            )
        text = f"Harper at {self.url} rejected {operation} (HTTP {status}): {message}"
        if status == 404 or _NOT_FOUND.search(message):
            return NotFound(text, **common)
        if _ALREADY_EXISTS.search(message):
            return AlreadyExistsError(text, **common)
        if status == 413:
            return ValidationError(f"{text}; send smaller chunks", **common)
        if status in _TRANSIENT_STATUS:
            return Unavailable(f"{text}; attempts: {attempts}", **common)
        if 400 <= status < 500:
            return ValidationError(text, **common)
        return ServerError(text, **common)


def _unsent(exc: httpx.HTTPError) -> bool:
    """True when the request certainly never reached the server."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _tls_message(url: str, cause: ssl.SSLError) -> str:
    reason = getattr(cause, "verify_message", None) or cause.reason or str(cause)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate verification failed for Harper at {url}: {reason}. Give the CA "
            "that signed Harper's certificate as harper.caFile (Harper's own self-signed CA "
            "is listed by the list_certificates operation), or set harper.verify: false to "
            "skip verification (insecure)."
        )
    return (
        f"TLS handshake with Harper at {url} failed: {reason}. If Harper serves plain HTTP on "
        "this port, use an http:// URL; if it requires a client certificate, set "
        "harper.certFile and harper.keyFile."
    )


encode = json_encode
"""The stdlib JSON body (what every encoding must be equivalent to; see encoding.py)."""
