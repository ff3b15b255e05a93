"""G6 per-key order: of two versions of one key, the newer (greater cursor) is what Harper keeps.

Within one window neither read path orders rows, and Harper merges records of one id in arrival
order, so the older version won. Re-reading an old window (late-row reconciliation, repair)
must not put an older version back over a newer one synced from a later window either.
"""

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField as F
from tests.e2e.live import records, running, wait_for
from tests.support import harper_rows, make_source, run_once

from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.checks.validate import validate_tables

CHANGE_FEED = "none"  # event-time windows: what these tests are about

SCHEMA = [F("updated_at", "TIMESTAMP"), F("k", "INT64"), F("v", "STRING")]
KEYS = 200


def table_spec(dataset: str, target: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "ver",
        "dataset": dataset,
        "table": "t",
        "timestampColumn": "updated_at",
        "columns": ["updated_at", "k", "v"],
        "targetTable": target,
        "primaryKey": ["k"],
        **extra,
    }


@pytest.mark.parametrize("read_api", ["query", "storage"])
def test_newest_of_two_versions_in_one_window_wins(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
    read_api: str,
) -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    newer = [
        {"updated_at": (t0 + timedelta(seconds=k % 10, milliseconds=1)).isoformat(), "k": k}
        | {"v": f"new-{k}"}
        for k in range(KEYS)
    ]
    older = [
        {"updated_at": (t0 + timedelta(seconds=k % 10)).isoformat(), "k": k, "v": f"old-{k}"}
        for k in range(KEYS)
    ]
    dataset = f"ver_{unique}"
    make_source(bq, dataset, "t", SCHEMA, newer)  # newer first: read order favours the older
    make_source(bq, dataset, "t", SCHEMA, older)
    _, cfg = write_config(
        [table_spec(dataset, "Ver", sync={"initialBatchSize": 100})],
        sync={"settle": "0s"},
        bigquery={"readApi": read_api},
    )
    service = run_once(cfg, harper_client)
    got = harper_rows(harper_client, cfg.harper.database, "Ver")
    assert {k: r["v"] for k, r in got.items()} == {str(k): f"new-{k}" for k in range(KEYS)}
    status = service.runners()[0].engine.status
    # Superseded versions are read, not skipped: every source row is accounted for.
    assert status.rows_skipped == 0 and status.rows_synced == 2 * KEYS


def test_versions_with_equal_cursors_leave_the_version_validation_expects(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
) -> None:
    """Two versions of a key at the same cursor value: Harper keeps the one the validation
    digest expects, so validation agrees by digest, without reading the windows back."""
    at = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0).isoformat()
    rows = [{"updated_at": at, "k": k, "v": f"{side}-{k}"} for k in range(40) for side in "ab"]
    dataset = f"tie_{unique}"
    make_source(bq, dataset, "t", SCHEMA, rows)
    _, cfg = write_config(
        [table_spec(dataset, "Tie", partitions=2, lateness="2h")],
        sync={"settle": "0s"},
        validation={"enabled": False, "sampleRows": 0},
    )
    run_once(cfg, harper_client)
    got = harper_rows(harper_client, cfg.harper.database, "Tie")
    assert len(got) == 40 and {r["v"][0] for r in got.values()} == {"a", "b"}  # both sides win
    (result,) = validate_tables(cfg, harper_client, bq)
    assert result.health == "healthy" and result.changed_rows == 0, result.to_json()
    # The digests agree at once: no window is left pending (re-synced at every repair, for
    # ever) and none had to be read back and compared record by record.
    assert result.pending == [] and result.windows_compared == 0, result.to_json()


def test_reread_of_an_old_window_keeps_the_newer_version(
    bq: bigquery.Client,
    harper_client: HarperClient,
    write_config: Callable[..., tuple[Path, Config]],
    unique: str,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old_at, new_at = now - timedelta(minutes=60), now - timedelta(minutes=10)
    rows = [
        {"updated_at": (old_at + timedelta(seconds=k)).isoformat(), "k": k, "v": f"v1-{k}"}
        for k in range(20)
    ] + [
        {"updated_at": (new_at + timedelta(seconds=k)).isoformat(), "k": k, "v": f"v2-{k}"}
        for k in range(20)
    ]
    dataset = f"reread_{unique}"
    make_source(bq, dataset, "t", SCHEMA, rows)
    _, cfg = write_config(
        [
            table_spec(
                dataset,
                "ReRead",
                partitions=1,
                lateness="2h",
                reconcileInterval="2s",
                sync={"initialBatchSize": 100, "catchupBatchSize": 100},
            )
        ],
        sync={"settle": "1s", "pollInterval": 300},
        validation={"enabled": False},
    )
    database = cfg.harper.database
    newest = {str(k): f"v2-{k}" for k in range(20)}
    with running(cfg, harper_client) as service:
        handle = service.handles[0]
        assert handle.maintenance is not None
        stats = handle.maintenance.reconciler.stats

        def values() -> dict[str, Any]:
            return {k: r["v"] for k, r in records(harper_client, database, "ReRead").items()}

        wait_for("the initial sync", lambda: values() == newest and stats.runs >= 1)
        before = replace(stats)
        # A late row in the old window: reconciliation re-reads that whole window, v1 included.
        late = {"updated_at": (old_at + timedelta(seconds=30)).isoformat(), "k": 100, "v": "late"}
        bq.load_table_from_json([late], f"{bq.project}.{dataset}.t").result()
        wait_for("the late row", lambda: values().get("100") == "late")
        wait_for("the run's bookkeeping", lambda: stats.runs > before.runs)
        assert stats.rows_reread > before.rows_reread  # the old window was read again
    assert values() == {**newest, "100": "late"}
