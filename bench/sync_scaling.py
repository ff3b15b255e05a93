"""Sync rate with 1, 2 and 3 workers on this machine, and what each synced row costs in queries.

All workers run in one process (`sync.workers: N`) against one Harper and the emulator, each over
the same source rows into a fresh database. Prints JSON and one summary line. Caveat printed
with the figures: this machine has 2 cores shared by Harper, the emulator and every worker, and
the emulator computes FARM_FINGERPRINT (the partition filter a worker with fewer than all
partitions sends) in pure Python, so more workers here mostly measures that overhead; on
BigQuery and one Harper node per worker the work divides.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from harperbq.bigquery.client import emulator_client
from harperbq.bigquery.sql import TableRef
from harperbq.config import load_config
from harperbq.devstack import emulator, harper
from harperbq.devstack.paths import harper_install_dir
from harperbq.harper.client import HarperClient
from harperbq.sync.service import SyncService
from harperbq.sync.table.feed_source import ChangeFeedSource
from harperbq.sync.table.source import BigQuerySource
from sync_throughput import load, rows_table, wait_at_most, write_config


def run(cfg_path: Path, password: str, timeout_s: float) -> dict[str, object]:
    cfg = load_config(cfg_path, {**os.environ, "BENCH_HARPER_PASSWORD": password})
    with HarperClient(cfg.harper.url, cfg.harper.username or "", password) as client:
        service = SyncService(
            cfg,
            client,
            emulator_client(cfg.bigquery.project_id or "", cfg.bigquery.endpoint or ""),
            once=True,
        )
        started = time.perf_counter()
        service.start()
        try:
            ok = wait_at_most(service.wait, timeout_s)
            elapsed = time.perf_counter() - started
        finally:
            service.stop()
    per_worker = {h.worker_id: h.engine.status.rows_synced for h in service.handles}
    # Either source (the change feed is the default): the feed's counters are its base's.
    sources = [
        h.engine.source
        for h in service.handles
        if isinstance(h.engine.source, BigQuerySource | ChangeFeedSource)
    ]
    rows = sum(per_worker.values())
    queries = sum(s.queries for s in sources)
    billed = sum(s.bytes_billed for s in sources)
    storage = sum(s.storage_bytes_scanned for s in sources)
    return {
        "ok": ok,
        "seconds": round(elapsed, 2),
        "rows": rows,
        "rows_per_s": round(rows / elapsed),
        "per_worker_rows": per_worker,
        "queries": queries,
        "queries_per_1000_rows": round(1000 * queries / max(rows, 1), 2),
        "bytes_billed_per_row": round(billed / max(rows, 1), 2),
        "storage_read_bytes_per_row": round(storage / max(rows, 1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="harperbq-scaling-") as tmp:
        node = harper.new_node(Path(tmp) / "harper", name="bench")
        emu = emulator.new_emulator(Path(tmp) / "emulator", project="bench")
        harper.start(node, harper_install_dir())
        emulator.start(emu)
        try:
            bq = emulator_client(emu.project, emu.endpoint)
            load(
                bq,
                TableRef(emu.project, "bench", "positions"),
                rows_table(args.rows, time.time() - 86_400),
            )
            for count in args.workers:
                path = write_config(
                    Path(tmp) / f"w{count}.yaml",
                    node,
                    emu,
                    f"scaling{count}",
                    {"settle": "0s", "workers": count},
                    partitions=60,
                )
                results[str(count)] = run(path, node.password, 900)
        finally:
            emulator.stop(emu)
            harper.stop(node)
    base = float(results[str(args.workers[0])]["rows_per_s"])  # type: ignore[arg-type]
    caveat = " ".join((__doc__ or "").split("with the figures:", 1)[1].split())
    print(
        json.dumps(
            {"rows": args.rows, "results": results, "caveat": caveat},
            indent=2,
        )
    )
    print(
        "sync_scaling: "
        + ", ".join(
            f"{w} worker(s) {r['rows_per_s']:,} rows/s ({float(r['rows_per_s']) / base:.2f}x)"  # type: ignore[arg-type]
            for w, r in results.items()
        )
        + "; 2 cores shared by everything, see caveat"
    )


if __name__ == "__main__":
    main()
