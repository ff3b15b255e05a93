"""The Harper nodes the sync knows of, and schema changes Harper does not replicate.

Why: in a Harper cluster `drop_attribute` does not replicate, so a node where it was never run
keeps the typed attribute; and the sync's user must exist on every node. The known nodes are
`harper.url` (this node, first), `harper.peers` and the Operations API URL each live worker
publishes in its heartbeat (`info.harper.url`). Every node is reached with the same credentials
and TLS settings as `harper.url`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterable

from harperbq.config import Config, HarperConfig
from harperbq.harper.access import NodeAccess, check_access
from harperbq.harper.client import HarperClient
from harperbq.harper.connect import harper_client
from harperbq.harper.errors import AlreadyExistsError, NotFound, PeerSchemaError
from harperbq.sync.state import StateStore, WorkerRecord

log = logging.getLogger("harperbq.sync.nodes")


def heartbeat_info(cfg: HarperConfig) -> dict[str, str]:
    """What a worker publishes of its node in its heartbeat (`info.harper`)."""
    return {"url": cfg.url}


def heartbeat_urls(records: Iterable[WorkerRecord], live: Collection[str]) -> list[str]:
    """The Operations API URLs published by the live workers (oldest heartbeat format: none);
    `live` as the caller judged it (`sync.leases`: by beats, never by wall clocks)."""
    urls: list[str] = []
    for record in records:
        harper = record.info.get("harper")
        url = harper.get("url") if isinstance(harper, dict) else None
        if record.worker_id in live and isinstance(url, str) and url:
            urls.append(url)
    return urls


def _norm(url: str) -> str:
    return url.strip().rstrip("/")


def known_urls(cfg: HarperConfig, published: Iterable[str] = ()) -> list[str]:
    """`harper.url` first, then `harper.peers`, then the published URLs; each once."""
    out: list[str] = []
    for url in (cfg.url, *cfg.peers, *published):
        if _norm(url) and _norm(url) not in out:
            out.append(_norm(url))
    return out


def client_for(cfg: HarperConfig, url: str, *, max_retries: int = 1) -> HarperClient:
    """A client of `url` with the credentials and TLS settings of `harper.url`."""
    return harper_client(cfg.model_copy(update={"url": url}), max_retries=max_retries)


class KnownNodes:
    """The nodes of the cluster as this process sees them, and applying a change on each."""

    def __init__(
        self,
        cfg: HarperConfig,
        local: HarperClient,
        published: Callable[[], Iterable[str]] = lambda: (),
        connect: Callable[[str], HarperClient] | None = None,
    ) -> None:
        self.cfg = cfg
        self.local = local
        self.published = published
        self.connect = connect or (lambda url: client_for(cfg, url))
        self._pending: list[tuple[str, str, str, str, bool]] = []

    def urls(self) -> list[str]:
        try:
            published = list(self.published())
        except Exception as exc:  # heartbeats unreadable: the configured nodes still count
            log.warning("could not read the nodes published in heartbeats: %s", exc)
            published = []
        return known_urls(self.cfg, published)

    def untype_attribute(self, database: str, table: str, attribute: str, indexed: bool) -> None:
        """Drop the attribute's declaration and re-add it untyped, on this node then on every
        other known node (neither step replicates reliably: a peer where only the drop ran was
        seen without the attribute). Already done is fine anywhere. Raises `PeerSchemaError`
        naming each node that refused, after trying all; those stay pending (`retry_pending`)."""
        _untype(self.local, database, table, attribute, indexed)
        self._apply([(url, database, table, attribute, indexed) for url in self.urls()[1:]])

    def retry_pending(self, database: str, table: str) -> None:
        """Retry what nodes refused before for this table (this process's memory); raises
        `PeerSchemaError` while any still refuses, so the table stays in error until the node is
        fixed, then goes on by itself."""
        self._apply([p for p in self._pending if p[1:3] == (database, table)])

    def _apply(self, work: list[tuple[str, str, str, str, bool]]) -> None:
        failures: list[tuple[str, str]] = []
        requests: list[dict[str, object]] = []
        for item in work:
            url, database, table, attribute, indexed = item
            try:
                with self.connect(url) as peer:
                    _untype(peer, database, table, attribute, indexed)
            except Exception as exc:
                if item not in self._pending:
                    self._pending.append(item)
                failures.append((url, f"{type(exc).__name__}: {exc}"))
                requests.extend(_requests(database, table, attribute, indexed))
            else:
                if item in self._pending:
                    self._pending.remove(item)
                log.info("untyped attribute %s.%s.%s on %s", database, table, attribute, url)
        if failures:
            unique = [r for i, r in enumerate(requests) if r not in requests[:i]]
            raise PeerSchemaError(failures, unique)


def _requests(database: str, table: str, attribute: str, indexed: bool) -> list[dict[str, object]]:
    where = {"database": database, "table": table, "attribute": attribute}
    return [
        {"operation": "drop_attribute", **where},
        {"operation": "create_attribute", **where, "indexed": indexed},
    ]


def _untype(client: HarperClient, database: str, table: str, attribute: str, indexed: bool) -> None:
    with contextlib.suppress(NotFound):  # gone already (Harper answers 200 for that, too)
        client.drop_attribute(database, table, attribute)
    with contextlib.suppress(AlreadyExistsError):
        client.create_attribute(database, table, attribute, indexed=indexed)


def published_urls(config: Config) -> list[str]:
    """The URLs live workers published, read through `harper.url` and judged live as `sync
    status` judges them (none before the first run, or when they cannot be read: the configured
    nodes are still checked)."""
    from harperbq.sync.stored_status import judge_liveness

    cfg = config.harper
    try:
        with client_for(cfg, cfg.url, max_retries=0) as client:
            liveness = judge_liveness(config, StateStore(client, cfg.state_database))
            return heartbeat_urls(liveness.records, liveness.live)
    except Exception as exc:
        log.info("no published nodes read from %s: %s", cfg.url, exc)
        return []


def check_nodes(config: Config) -> list[NodeAccess]:
    """`check_access` on every known node, this one first."""
    out: list[NodeAccess] = []
    for url in known_urls(config.harper, published_urls(config)):
        with client_for(config.harper, url, max_retries=0) as client:
            out.append(check_access(client))
    return out
