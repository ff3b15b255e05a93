"""What the sync's reads cost is visible where operators look: `/metrics`, `GET /status` and
`sync status` carry the bytes BigQuery billed and their estimated cost at the configured prices
(issue 12 item 4). The strict local BigQuery bills by BigQuery's rules (10 MB minimum per
query, rounded to the MB), so the figures are real ones, not zeros."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e.live import records, running, wait_for
from tests.support import make_source

from harperbq.config import Config
from harperbq.cost import TIB
from harperbq.devstack.emulator import Emulator
from harperbq.harper.client import HarperClient
from harperbq.sync.live_status import service_status
from harperbq.sync.stored_status import table_statuses

WriteConfig = Callable[..., tuple[Path, Config]]
MB = 1024 * 1024
QUERY_PRICE, STORAGE_PRICE = 5.0, 2.0


def test_bytes_billed_and_cost_in_metrics_status_and_sync_status(
    bq: bigquery.Client,
    bq_emulator: Emulator,
    harper_client: HarperClient,
    write_config: WriteConfig,
    unique: str,
) -> None:
    if not bq_emulator.strict:
        pytest.skip("only the strict local BigQuery bills bytes (HARPERBQ_BQ_STRICT=0 here)")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    rows = [{"ts": (start + timedelta(seconds=6 * i)).isoformat(), "k": i} for i in range(150)]
    dataset = f"cost_{unique}"
    make_source(bq, dataset, "t", [F("ts", "TIMESTAMP"), F("k", "INT64")], rows)
    _, cfg = write_config(
        [
            {
                "id": "cost",
                "dataset": dataset,
                "table": "t",
                "timestampColumn": "ts",
                "targetTable": "Cost",
                "partitions": 1,
                "sync": {"initialBatchSize": 50, "catchupBatchSize": 50, "steadyBatchSize": 50},
            }
        ],
        bigquery={"queryPricePerTiB": QUERY_PRICE, "storageReadPricePerTiB": STORAGE_PRICE},
        sync={"settle": "1s", "pollInterval": 500, "heartbeatInterval": "1s", "lease": "5s"},
        validation={"enabled": False},
    )
    with running(cfg, harper_client) as service:
        wait_for(
            "the sync", lambda: len(records(harper_client, cfg.harper.database, "Cost")) == 150
        )
        handle = service.handles[0]
        source = handle.engine.source
        labels = {"table": "cost", "worker": handle.worker_id}
        sample = service.metrics.registry.get_sample_value
        # The change feed copies the table by one snapshot (Storage Read), then queries the
        # feed once per poll (every 500 ms here).
        wait_for(
            "three polls of the feed",
            lambda: (sample("harperbq_bigquery_queries_total", labels) or 0) >= 3,
        )
        queries = sample("harperbq_bigquery_queries_total", labels) or 0
        billed = sample("harperbq_bigquery_bytes_billed_total", labels) or 0
        scanned = sample("harperbq_bigquery_storage_bytes_scanned_total", labels) or 0
        dollars = sample("harperbq_bigquery_estimated_cost_dollars_total", labels) or 0
        # Every query bills at least 10 MB, in whole MB (the figures move on with each poll,
        # so bounds, not equalities, between two reads).
        assert queries >= 3 and billed >= 10 * MB * queries and billed % MB == 0
        assert dollars == pytest.approx((billed * QUERY_PRICE + scanned * STORAGE_PRICE) / TIB)
        shown = service_status(service)["tables"][0]["workers"][0]["bigquery"]
        assert shown["bytes_billed"] >= billed and shown["bytes_billed"] % MB == 0
        assert shown["estimated_cost_usd"] == pytest.approx(
            (shown["bytes_billed"] * QUERY_PRICE + shown["storage_bytes_scanned"] * STORAGE_PRICE)
            / TIB
        )
        # `sync status` reads the live workers' heartbeats from Harper.
        wait_for(
            "a heartbeat with the bytes billed",
            lambda: table_statuses(cfg, harper_client)[0]["bigquery"]["bytes_billed"] >= billed,
        )
        status = table_statuses(cfg, harper_client)[0]["bigquery"]
        assert status["bytes_billed"] <= getattr(source, "bytes_billed", 0)
