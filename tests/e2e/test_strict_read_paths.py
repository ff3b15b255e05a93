"""The Storage Read path under the strict local BigQuery: workers restrict sessions to the cursor
range and keep their partitions in Python; a refused session falls back to a query."""

import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.cloud import bigquery
from tests.support import harper_rows, keyed_table, run_once

from harperbq.config import Config
from harperbq.devstack.ports import free_port
from harperbq.harper.client import HarperClient

CHANGE_FEED = "none"  # event-time windows: what these tests are about


def test_workers_read_their_partitions_through_storage_read(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = keyed_table(bq, f"storage_{unique}", 2_000, partitions=6)
    _, cfg = write_config(
        [table], sync={"settle": "0s", "workers": 3}, bigquery={"readApi": "storage"}
    )
    caplog.set_level(logging.INFO, logger="harperbq")
    service = run_once(cfg, harper_client)
    assert set(harper_rows(harper_client, cfg.harper.database, "T")) == {
        str(i) for i in range(2_000)
    }
    written = {h.worker_id: h.engine.status.rows_synced for h in service.handles}
    assert sum(written.values()) == 2_000  # every row once: no worker read another's rows
    messages = [r.getMessage() for r in caplog.records]
    assert "bigquery.storage_read" in messages and "bigquery.storage_refused" not in messages


class _Refuse(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A Storage Read endpoint that refuses every session as real BigQuery refuses some."""

    def __init__(self) -> None:
        self.calls = 0

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "row filter is too complex")
            return b""

        return grpc.unary_unary_rpc_method_handler(refuse)


@pytest.fixture
def refusing_endpoint() -> Iterator[tuple[str, _Refuse]]:
    handler = _Refuse()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([handler])
    port = free_port("127.0.0.1", set())
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield f"127.0.0.1:{port}", handler
    server.stop(grace=None)


def test_a_refused_session_falls_back_to_a_query(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
    refusing_endpoint: tuple[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint, handler = refusing_endpoint
    table = keyed_table(bq, f"refused_{unique}", 500, partitions=2)
    _, cfg = write_config(
        [table],
        sync={"settle": "0s"},
        bigquery={"readApi": "storage", "storageEndpoint": endpoint},
    )
    caplog.set_level(logging.INFO, logger="harperbq")
    run_once(cfg, harper_client)
    assert set(harper_rows(harper_client, cfg.harper.database, "T")) == {str(i) for i in range(500)}
    assert handler.calls == 1  # tried once, refused, then queries: no retry storm
    assert [r.getMessage() for r in caplog.records].count("bigquery.storage_refused") == 1
