"""Every BigQuery type arrives in Harper as architecture §4 specifies, through the whole sync."""

from collections.abc import Callable
from pathlib import Path

from google.cloud import bigquery
from tests.integration.test_bigquery_types import (  # the row of every type, and its fixture
    EXPECTED_FULL,
    EXPECTED_NULLS,
    every_type,
)
from tests.support import harper_rows, run_once

from harperbq.bigquery.sql import TableRef
from harperbq.config import Config
from harperbq.harper.client import HarperClient

__all__ = ["every_type"]  # a fixture: pytest finds it here by name


def test_every_type_through_the_sync(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    every_type: TableRef,
) -> None:
    synced = every_type
    _, cfg = write_config(
        [
            {
                "id": "types",
                "dataset": synced.dataset,
                "table": synced.table,
                "timestampColumn": "synced_at",
                "columns": "*",
                "targetTable": "EveryType",
                "primaryKey": ["id"],
            }
        ],
        sync={"settle": "0s"},
    )
    run_once(cfg, harper_client)
    got = harper_rows(harper_client, cfg.harper.database, "EveryType")
    assert set(got) == {"1", "2"}
    for key, expected in (("1", EXPECTED_FULL), ("2", EXPECTED_NULLS)):
        # Every value exactly as the converter's contract says; `id` is the record id ("1").
        record = {k: v for k, v in got[key].items() if k != "id"}
        assert record == {k: v for k, v in expected.items() if k != "id"}, key
