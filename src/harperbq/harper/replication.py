"""How many peers must confirm a data write before Harper answers it (`replicatedConfirmation`).

Why: Harper replicates each database on its own socket, so a checkpoint (database `harperbq`)
can reach another node before the rows it covers (the target database). If the writing node is
then lost, those rows are gone and nothing says so. Data writes sent with
`replicatedConfirmation: N` return only after N peers confirmed them, so by the time the window's
checkpoint moves its rows live beyond the writing node.

Harper sets no timeout of its own on that wait: the HTTP read timeout (`harper.replicationTimeout`)
is the only one, and a timeout or a lost answer means "unknown", never success
(`ReplicationUnconfirmed`, retried: the writes are idempotent). Asking for more peers than the
node knows is refused at once (`ReplicationConfigError`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from harperbq.harper.errors import AuthenticationError, HarperError, Unavailable
from harperbq.harper.models import ClusterStatus

log = logging.getLogger("harperbq.harper.replication")

KEY = "harper.replicatedConfirmation"
REFRESH_S = 30.0
CANNOT_CONFIRM = "cannot confirm replication"
"""Harper's refusal when N exceeds the nodes it knows ("Cannot confirm replication to more
nodes (N) than are in the network (M)")."""

Configured = int | Literal["auto"]


class ReplicationUnconfirmed(HarperError):  # noqa: N818 (reads as what happened)
    """A confirmed write was sent but its answer never came (timeout, connection lost).

    The outcome is unknown: the rows may be written on this node, on some peers, or nowhere.
    Retryable: the window fails, its checkpoint stays, and the idempotent write is repeated.
    """

    permanent = False

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        harper_message: str | None = None,
        operation: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, harper_message=harper_message, operation=operation, url=url)
        self.reason = reason


class ReplicationConfigError(HarperError):
    """Harper knows fewer peers than the configured confirmation count: retrying cannot help."""

    permanent = True


@dataclass(frozen=True)
class Decision:
    """The confirmation count in force and why (for the log, metrics and `config check`)."""

    count: int
    reason: str


def decide(
    configured: Configured, status: ClusterStatus | None, refused: str | None = None
) -> Decision:
    """The count for `configured`: a number is used as given; `auto` is 1 when this node has a
    replicating peer, else 0. `status` None means cluster_status could not be read (`refused`
    says why): `auto` then falls back to 0, which is only safe on a single node."""
    if configured != "auto":
        return Decision(configured, f"{KEY} is set to {configured}")
    if status is None:
        return Decision(
            0,
            f"auto: cluster_status could not be read ({refused or 'no answer'}), so data writes "
            f"are not confirmed by peers; give the user super_user (cluster_status needs it) or "
            f"set {KEY} to the number of peers that must confirm (e.g. 1)",
        )
    peers = [p for p in status.peers if p.replicates]
    if not peers:
        return Decision(0, "auto: this node has no replicating peer (single node)")
    connected = sum(p.connected for p in peers)
    return Decision(
        1,
        f"auto: this node has {len(peers)} replicating peer(s) ({connected} connected), so one "
        "must confirm each data write",
    )


def is_refusal(exc: BaseException) -> bool:
    """Harper refused the count as larger than the nodes it knows."""
    text = f"{getattr(exc, 'harper_message', '') or ''} {exc}".lower()
    return CANNOT_CONFIRM in text


def config_error(exc: HarperError, count: int) -> ReplicationConfigError:
    """Harper's refusal of `count`, naming the key and the fix."""
    return ReplicationConfigError(
        f"Harper at {exc.url} cannot confirm data writes on {count} peer(s): "
        f"{exc.harper_message or exc}. Set {KEY} to at most the number of peers this node "
        'replicates with, or to "auto" (1 with a peer, 0 alone), or 0 to not wait for peers',
        harper_message=exc.harper_message,
        status=exc.status,
        operation=exc.operation,
        url=exc.url,
    )


def classify(exc: HarperError, count: int) -> HarperError:
    """What a failed write sent with `replicatedConfirmation: count` means: Harper's refusal
    (`ReplicationConfigError`), an answer lost after sending (`ReplicationUnconfirmed`), or
    `exc` itself (never sent, or an ordinary refusal)."""
    if is_refusal(exc):
        return config_error(exc, count)
    cause = exc.__cause__
    if isinstance(exc, Unavailable) and exc.status is None and isinstance(cause, httpx.HTTPError):
        if isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return exc  # never reached Harper: nothing is unknown
        reason = "timeout" if isinstance(cause, httpx.TimeoutException) else "connection_lost"
        return ReplicationUnconfirmed(
            f"Harper at {exc.url} did not answer {exc.operation} while waiting for {count} "
            f"peer(s) to confirm it ({reason}: {exc.harper_message}); the write may or may not "
            "have been applied or replicated, so it is not counted as done and will be repeated "
            f"(harper.replicationTimeout bounds this wait)",
            reason=reason,
            harper_message=exc.harper_message,
            operation=exc.operation,
            url=exc.url,
        )
    return exc


class Confirmations:
    """The confirmation count for data writes, thread-safe, re-decided every `refresh_s` (on
    the next read after that) and at once after Harper's refusal (`refused()`)."""

    def __init__(
        self,
        cluster_status: Callable[[], ClusterStatus],
        configured: Configured = "auto",
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self._cluster_status = cluster_status
        self.configured = configured
        self._refresh_s = refresh_s
        self._clock = clock
        self._on_decision = on_decision
        self._lock = threading.Lock()
        self._decision: Decision | None = None
        self._decided_at = 0.0

    @property
    def auto(self) -> bool:
        return self.configured == "auto"

    def decision(self) -> Decision:
        """The decision in force, re-decided when older than `refresh_s`."""
        with self._lock:
            if self._decision is None or self._clock() - self._decided_at >= self._refresh_s:
                self._decide()
            assert self._decision is not None
            return self._decision

    def count(self) -> int:
        return self.decision().count

    def refused(self) -> Decision:
        """Harper refused the current count: decide again now (a peer may have been removed)."""
        with self._lock:
            self._decide()
            assert self._decision is not None
            return self._decision

    def _decide(self) -> None:
        previous = self._decision
        if self.configured != "auto":
            decision = decide(self.configured, None)
        else:
            try:
                decision = decide("auto", self._cluster_status())
            except AuthenticationError as exc:
                decision = decide("auto", None, refused=exc.harper_message or str(exc))
            except Exception as exc:
                if previous is not None:  # a passing failure: keep what was decided
                    log.warning("cluster_status failed (%s); keeping %s", exc, previous.reason)
                    self._decided_at = self._clock()
                    return
                decision = decide("auto", None, refused=str(exc))
        self._decision = decision
        self._decided_at = self._clock()
        if previous is None or previous.count != decision.count:
            level = logging.WARNING if "could not be read" in decision.reason else logging.INFO
            log.log(
                level,
                "replicated confirmation for data writes: %d (%s)",
                decision.count,
                decision.reason,
            )
        if self._on_decision is not None:
            self._on_decision(decision)
