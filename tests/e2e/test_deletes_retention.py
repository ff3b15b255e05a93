"""G7: `deletes: mirror` and `retention`, driven by the synthesizer's own retention cleanup.

The synthesizer keeps a rolling window in BigQuery and deletes rows older than `retentionDays`
(whole days). A table synced with `deletes: mirror` and a `lateness` reaching past that cutoff
loses exactly those records in Harper at the next reconciliation; a table with `retention`
expires Harper records older than `now - retention` by itself, in bounded batches.
"""

import time
from collections.abc import Callable
from pathlib import Path

from google.cloud import bigquery
from tests.e2e.live import records, running, wait_for

from harperbq.bigquery.sql import Column
from harperbq.config import Config
from harperbq.harper.client import HarperClient
from harperbq.sync.checks.validate import validate_tables
from harperbq.sync.table.target import TargetTable
from harperbq.synth.params import SynthParams
from harperbq.synth.window import Synthesizer
from harperbq.times import MICROS, iso

WriteConfig = Callable[..., tuple[Path, Config]]
HOUR = 3600.0
RETENTION_H = 36


def source_ids(bq: bigquery.Client, table: str) -> dict[str, int]:
    """Harper ids the source rows map to (`primaryKey: [mmsi, timestamp]`), with their µs."""
    rows = bq.query(
        f"SELECT mmsi, UNIX_MICROS(timestamp) AS t FROM `{table}`"  # noqa: S608 (test's table)
    ).result()
    return {f"{r['mmsi']}|{iso(r['t'])}": int(r["t"]) for r in rows}


def test_mirror_deletes_and_retention_follow_synth_cleanup(
    bq: bigquery.Client, harper_client: HarperClient, write_config: WriteConfig, unique: str
) -> None:
    params = SynthParams(
        dataset=f"syn_{unique}", total_vessels=6, retention_days=1, sampling_interval_s=900
    )
    synth = Synthesizer(bq, params)
    synth.initialize(2.5)  # 60 hours of history; cleanup will cut at a day boundary 24-48 h ago
    positions = synth.ids["positions"]
    columns = ["timestamp", "mmsi", "latitude", "longitude", "speed_knots"]
    common = {
        "dataset": params.dataset,
        "table": "vessel_positions",
        "timestampColumn": "timestamp",
        "columns": columns,
        "primaryKey": ["mmsi", "timestamp"],
        "partitions": 4,
        "reconcileInterval": "2s",
    }
    _, cfg = write_config(
        [
            {
                **common,
                "id": "mirror",
                "targetTable": "MirrorPos",
                "lateness": "3d",
                "deletes": "mirror",
            },
            {
                **common,
                "id": "expire",
                "targetTable": "ExpirePos",
                "lateness": "1h",
                "retention": f"{RETENTION_H}h",
            },
        ],
        sync={"settle": "1s", "pollInterval": 300},
        validation={"enabled": False},
    )
    database = cfg.harper.database
    everything = source_ids(bq, positions)

    with running(cfg, harper_client) as service:
        wait_for(
            "the mirror table",
            lambda: set(records(harper_client, database, "MirrorPos")) == set(everything),
        )

        # Retention: nothing older than now - 36 h stays in Harper; everything younger is there.
        def expired() -> bool:
            got = records(harper_client, database, "ExpirePos")
            cutoff = (time.time() - RETENTION_H * HOUR) * MICROS
            young = {i for i, t in everything.items() if t >= cutoff + 60 * MICROS}
            return young <= set(got) and all(everything[i] >= cutoff - 30 * MICROS for i in got)

        wait_for("retention to expire old records", expired)
        expire_handle = next(h for h in service.handles if h.table.id == "expire")
        assert expire_handle.maintenance is not None
        # (a row crossing the cutoff waits for the next run, every reconcileInterval)
        settled = (time.time() - RETENTION_H * HOUR - 60) * MICROS
        old = sum(1 for t in everything.values() if t < settled)
        assert expire_handle.maintenance.expired_rows >= old > 0

        # Mirror deletes: the synthesizer drops rows older than its retention (a day boundary).
        mirror = next(h for h in service.handles if h.table.id == "mirror").maintenance
        assert mirror is not None
        deleted_before = mirror.reconciler.stats.rows_deleted
        assert synth.cleanup()["positions"] > 0
        remaining = source_ids(bq, positions)
        gone = set(everything) - set(remaining)
        assert gone and set(remaining) < set(everything)
        took = wait_for(
            "mirror deletes",
            lambda: set(records(harper_client, database, "MirrorPos")) == set(remaining),
        )
        assert took < 2 + 15  # one reconcile interval plus the re-reads
        wait_for("the run's bookkeeping", lambda: mirror.reconciler.stats.rows_deleted > 0)
        assert mirror.reconciler.stats.rows_deleted - deleted_before == len(gone)

    # Both tables validate healthy: the mirror matches the source, and validation skips what
    # retention expired on purpose.
    results = validate_tables(cfg, harper_client, bq)
    assert [r.health for r in results] == ["healthy", "healthy"], [r.to_json() for r in results]

    # Expiry runs in bounded batches: two batches of 50 per call, the rest at the next calls.
    target = TargetTable(
        harper_client,
        database,
        "MirrorPos",
        Column("timestamp", "TIMESTAMP"),
        [Column("mmsi", "STRING"), Column("timestamp", "TIMESTAMP")],
        4,
    )
    cutoff = int((time.time() - 12 * HOUR) * MICROS)
    older = sum(1 for t in remaining.values() if t < cutoff)
    assert older > 100
    assert target.expire(cutoff, batch=50, max_batches=2) == 100
    total = 100
    while (n := target.expire(cutoff, batch=50, max_batches=2)) > 0:
        total += n
    assert total == older
    left = records(harper_client, database, "MirrorPos")
    assert set(left) == {i for i, t in remaining.items() if t >= cutoff}
