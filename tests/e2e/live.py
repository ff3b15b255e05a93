"""Helpers for end-to-end tests of a sync that keeps running: start/stop, polling, reads."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.support import harper_rows

from harperbq.bigquery.client import make_client
from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import NotFound
from harperbq.sync.service import SyncService


@contextmanager
def running(cfg: Config, harper: HarperClient) -> Iterator[SyncService]:
    """A SyncService running in the background (not --once) for the block's duration."""
    service = SyncService(cfg, harper, make_client(cfg.bigquery))
    service.start()
    try:
        yield service
    finally:
        service.stop()


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> float:
    """Poll until check() holds; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def records(client: HarperClient, database: str, table: str) -> dict[str, dict[str, Any]]:
    """Harper's records by id, or none while the sync has not created the table yet."""
    try:
        return harper_rows(client, database, table)
    except NotFound:
        return {}
