"""What a synced row costs in BigQuery: the event-time window design (`changeFeed: none`, the
old default) beside the change feed (`changeFeed: appends`, the new one), issues 12 and 13.

The source is the synthesizer's positions table exactly as `synth initialize` creates it
(partitioned by DAY on `timestamp`, clustered on `mmsi`), `--vessels` vessels at the default
one report a minute, `--hours` of history. The strict local BigQuery bills every query by
BigQuery's on-demand rules (docs/strict-bigquery.md). For each design and 1 and 3 workers
(`sync.workers`, 60 partitions):

(a) catch-up: `sync run --once` over the history; bytes billed (queries and Storage Read) per
    synced row, by operation. With the change feed this is the snapshot (Storage Read);
(a2) change feed only, backfill: `--backfill-hours` of older history written while the sync is
    away, then `sync run --once`: the rows arrive through `APPENDS`, billed per row;
(b) steady state: the sync running continuously at the default poll interval (30 s) while new
    rows arrive, for `--steady-seconds`; bytes per poll and per reconciliation, projected to one
    hour (120 polls and 12 reconciliations per worker).

Next to them, the floor: the data size of the selected columns per row (what reading each row
once costs). Dollars at the on-demand list prices ($6.25 per TiB queried, $1.10 per TiB read by
the Storage Read API). `projected_at_default_scale` scales the measured bytes per window to the
synthesizer's default fleet (100 000 vessels): windows read the whole day partition, so their
cost grows with the partition, not with the rows they return.

Caveat: the emulator runs on this machine's 2 shared cores, so durations are not measured here;
every figure is bytes, which do not depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from google.cloud import bigquery

from harperbq.bigquery.client import make_client
from harperbq.config import Config, load_config
from harperbq.cost import Prices
from harperbq.devstack import emulator, harper
from harperbq.devstack.paths import harper_install_dir
from harperbq.harper.client import HarperClient
from harperbq.sync.service import SyncService
from harperbq.synth.params import SynthParams
from harperbq.synth.window import Synthesizer
from sync_throughput import wait_at_most, write_config

DATASET = "cost"
DEFAULT_VESSELS = 100_000
POLL_S = 30.0
RECONCILE_S = 300.0
WINDOW_OPS = ("read_window", "first_cursor", "storage_read", "read_appends", "read_changes")
POLL_OPS = ("read_window", "read_appends", "read_changes")
DESIGNS = {"old": "none", "new": "appends"}
PRICES = Prices()


class BillLog(logging.Handler):
    """Bytes per operation from the sync's own `bigquery.query` / `bigquery.storage_read` logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.bytes: dict[str, int] = defaultdict(int)
        self.processed: dict[str, int] = defaultdict(int)
        self.count: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message == "bigquery.query" and not getattr(record, "dry_run", False):
            op = str(getattr(record, "operation", "?"))
            billed, scanned = (
                int(getattr(record, "bytes_billed", 0)),
                int(getattr(record, "bytes_processed", 0)),
            )
        elif message == "bigquery.storage_read":
            op = "storage_read"
            billed = scanned = int(getattr(record, "estimated_bytes", 0))
        else:
            return
        with self._lock:
            self.bytes[op] += billed
            self.processed[op] += scanned
            self.count[op] += 1

    def take(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """(billed, processed, jobs) per operation since the last take."""
        with self._lock:
            out = dict(self.bytes), dict(self.processed), dict(self.count)
            self.bytes.clear()
            self.processed.clear()
            self.count.clear()
        return out


def config_file(
    path: Path,
    node: harper.HarperNode,
    emu: emulator.Emulator,
    name: str,
    workers: int,
    feed: str = "none",
) -> Path:
    sync = {
        "workers": workers,
        "partitions": 60,
        "settle": "5s",
        "pollInterval": int(POLL_S * 1000),
        "reconcileInterval": f"{RECONCILE_S:g}s",
        "changeFeed": feed,
    }
    return write_config(
        path,
        node,
        emu,
        name,
        sync,
        validation={"enabled": False},
        dataset=DATASET,
        table="vessel_positions",
        columns="*",
    )


def billed_bytes(processed: float) -> int:
    """BigQuery's on-demand rule: at least 10 MB per query, rounded up to the MB."""
    mb = 1024 * 1024
    return max(10 * mb, -(-int(processed) // mb) * mb)


def floor_bytes_per_row(bq: bigquery.Client, table: str) -> tuple[float, int]:
    """Data size of every selected column per row: a dry run of reading the whole table once."""
    dry = bq.query(f"SELECT * FROM `{table}`", job_config=bigquery.QueryJobConfig(dry_run=True))  # noqa: S608
    rows = int(next(iter(bq.query(f"SELECT COUNT(*) AS n FROM `{table}`").result()))["n"])  # noqa: S608
    return int(dry.total_bytes_processed or 0) / max(rows, 1), rows


def catch_up(cfg: Config, password: str, bills: BillLog) -> dict[str, Any]:
    with HarperClient(cfg.harper.url, cfg.harper.username or "", password) as client:
        service = SyncService(cfg, client, make_client(cfg.bigquery), once=True)
        bills.take()
        service.start()
        try:
            ok = wait_at_most(service.wait, 1800)
        finally:
            service.stop()
    rows = sum(h.engine.status.rows_synced for h in service.handles)
    windows = sum(h.engine.status.windows for h in service.handles)
    spent, processed, count = bills.take()
    total = sum(spent.values())
    storage = spent.get("storage_read", 0)
    return {
        "ok": ok,
        "rows": rows,
        "windows": windows,
        "bytes_billed": total,
        "bytes_per_row": round(total / max(rows, 1), 1),
        "bytes_per_window": round(sum(spent.get(o, 0) for o in WINDOW_OPS) / max(windows, 1)),
        "processed_per_window": round(
            sum(processed.get(o, 0) for o in WINDOW_OPS) / max(windows, 1)
        ),
        "dollars": round(PRICES.dollars(total - storage, storage), 6),
        "by_operation": {op: {"bytes": b, "jobs": count[op]} for op, b in sorted(spent.items())},
    }


def steady(
    cfg: Config, password: str, bills: BillLog, synth: Synthesizer, seconds: float, workers: int
) -> dict[str, Any]:
    with HarperClient(cfg.harper.url, cfg.harper.username or "", password) as client:
        service = SyncService(cfg, client, make_client(cfg.bigquery))
        service.start()
        # Wait for the first pass and the reconciliation right after it, then measure.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not all(
            h.engine.status.caught_up
            and h.maintenance is not None
            and h.maintenance.reconciler.stats.runs
            for h in service.handles
        ):
            time.sleep(0.5)
        bills.take()
        rows_before = sum(h.engine.status.rows_synced for h in service.handles)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            synth.fill(synth.gaps(synth.now() - 120, synth.now()))  # new rows, by load job
            time.sleep(min(15.0, max(0.0, seconds - (time.monotonic() - started))))
        elapsed = time.monotonic() - started
        rows = sum(h.engine.status.rows_synced for h in service.handles) - rows_before
        service.stop()
    spent, processed, count = bills.take()
    polls = sum(count.get(o, 0) for o in POLL_OPS)
    per_poll = sum(spent.get(o, 0) for o in WINDOW_OPS) / max(polls, 1)
    processed_per_poll = sum(processed.get(o, 0) for o in WINDOW_OPS) / max(polls, 1)
    maintenance = {o: b for o, b in spent.items() if o not in WINDOW_OPS}
    runs = max(1, count.get("count_buckets", 0))
    per_reconcile = sum(maintenance.values()) / runs
    hour = workers * (3600 / POLL_S * per_poll + 3600 / RECONCILE_S * per_reconcile)
    return {
        "seconds": round(elapsed, 1),
        "rows": rows,
        "polls": polls,
        "bytes_per_poll": round(per_poll),
        "processed_per_poll": round(processed_per_poll),
        "bytes_per_reconciliation": round(per_reconcile),
        "bytes_per_row": round(sum(spent.values()) / max(rows, 1), 1),
        "projected_bytes_per_hour": round(hour),
        "projected_dollars_per_day": round(24 * PRICES.dollars(int(hour)), 4),
        "by_operation": {op: {"bytes": b, "jobs": count[op]} for op, b in sorted(spent.items())},
    }


def project(
    design: str,
    workers: int,
    a: dict[str, Any],
    backfill: dict[str, Any] | None,
    b: dict[str, Any],
    floor: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The measured phases, and what they come to at the default fleet (100 000 vessels)."""
    scale = DEFAULT_VESSELS / args.vessels
    poll_bytes = billed_bytes(b["processed_per_poll"] * scale)
    out: dict[str, Any] = {
        "design": design,
        "change_feed": DESIGNS[design],
        "catch_up": a,
        "steady": b,
        "catch_up_ratio_to_floor": round(a["bytes_per_row"] / floor, 2),
    }
    if design == "old":
        # At the default fleet a day partition holds `scale` times the rows: a window scans
        # `scale` times the bytes (the whole partition), and a day of catch-up reads `scale`
        # times the windows of 10 000 rows. Every worker polls.
        day_windows = a["windows"] * 24 / args.hours * scale
        day_bytes = day_windows * billed_bytes(a["processed_per_window"] * scale)
        day_dollars = PRICES.dollars(int(day_bytes))
        steady_day = 24 * workers * 3600 / POLL_S * poll_bytes
    else:
        # A day of history costs what the measured catch-up cost per row: the snapshot at
        # Storage Read prices (read once, by one worker for all: `snapshotBy: one`), or
        # APPENDS at query prices (shared by workers).
        assert backfill is not None
        out["backfill"] = backfill
        out["backfill_ratio_to_floor"] = round(backfill["bytes_per_row"] / floor, 2)
        day_rows = a["rows"] * 24 / args.hours * scale
        day_bytes = day_rows * floor
        day_dollars = PRICES.dollars(int(day_bytes))
        out["snapshot_day_dollars"] = round(
            PRICES.dollars(0, int(day_rows * a["bytes_per_row"])), 2
        )
        steady_day = 24 * 3600 / POLL_S * poll_bytes  # one shared query per poll
    out["projected_at_default_scale"] = {
        "vessels": DEFAULT_VESSELS,
        "catch_up_day_bytes": round(day_bytes),
        "catch_up_day_dollars": round(day_dollars, 2),
        "steady_polls_dollars_per_day": round(PRICES.dollars(int(steady_day)), 2),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vessels", type=int, default=150)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--steady-seconds", type=float, default=150.0)
    parser.add_argument("--designs", nargs="+", choices=sorted(DESIGNS), default=["old", "new"])
    parser.add_argument("--backfill-hours", type=float, default=6.0)
    args = parser.parse_args()
    bills = BillLog()
    logging.getLogger("harperbq.bigquery.read").addHandler(bills)
    logging.getLogger("harperbq.bigquery.read").setLevel(logging.INFO)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="harperbq-cost-") as tmp:
        node = harper.new_node(Path(tmp) / "harper", name="bench")
        emu = emulator.new_emulator(Path(tmp) / "emulator", project="bench")
        if not emu.strict:
            raise SystemExit("bigquery_cost needs the strict local BigQuery (HARPERBQ_BQ_STRICT=1)")
        harper.start(node, harper_install_dir())
        emulator.start(emu)
        try:
            bq = make_client(
                load_config(
                    config_file(Path(tmp) / "probe.yaml", node, emu, "probe", 1),
                    {"BENCH_HARPER_PASSWORD": node.password},
                ).bigquery
            )
            params = SynthParams(
                dataset=DATASET, total_vessels=args.vessels, retention_days=3, seed=11
            )
            synth = Synthesizer(bq, params)
            synth.initialize(args.hours / 24)
            table = f"{bq.project}.{DATASET}.vessel_positions"
            floor, source_rows = floor_bytes_per_row(bq, table)
            partition_rows = source_rows * 24 / args.hours
            slices = 0
            for design in args.designs:
                for workers in args.workers:
                    env = {**os.environ, "BENCH_HARPER_PASSWORD": node.password}
                    name = f"cost{design}{workers}"
                    cfg = load_config(
                        config_file(
                            Path(tmp) / f"{name}.yaml", node, emu, name, workers, DESIGNS[design]
                        ),
                        env,
                    )
                    a = catch_up(cfg, node.password, bills)
                    backfill = None
                    if design == "new":
                        # Older history written while the sync is away: a slice no run has
                        # seen (each run its own), synced by the feed's next run.
                        top = synth.now() - args.hours * 3600 - slices * args.backfill_hours * 3600
                        slices += 1
                        synth.backfill(top - args.backfill_hours * 3600, top)
                        backfill = catch_up(cfg, node.password, bills)
                    b = steady(cfg, node.password, bills, synth, args.steady_seconds, workers)
                    results[f"{design}/{workers}"] = project(
                        design, workers, a, backfill, b, floor, args
                    )
        finally:
            emulator.stop(emu)
            harper.stop(node)
    summary = {
        "vessels": args.vessels,
        "hours": args.hours,
        "source_rows": source_rows,
        "rows_per_day_partition": round(partition_rows),
        "floor_bytes_per_row": round(floor, 1),
        "prices_usd_per_tib": {
            "query": PRICES.query_per_tib,
            "storage_read": PRICES.storage_read_per_tib,
        },
        "results": results,
        "caveat": (__doc__ or "").split("Caveat: ")[1].strip(),
    }
    print(json.dumps(summary, indent=2))
    print(
        "bigquery_cost: floor "
        f"{floor:,.0f} B/row; "
        + "; ".join(
            f"{w} worker(s): catch-up {r['catch_up']['bytes_per_row']:,.0f} B/row "
            f"({r['catch_up_ratio_to_floor']:,.2f}x floor"
            + (
                f", backfill {r['backfill_ratio_to_floor']:,.2f}x by APPENDS"
                if "backfill" in r
                else ""
            )
            + "), steady "
            f"${r['steady']['projected_dollars_per_day']:,.2f}/day, at 100k vessels catch-up "
            f"${r['projected_at_default_scale']['catch_up_day_dollars']:,.0f} per day of history, "
            f"steady polls ${r['projected_at_default_scale']['steady_polls_dollars_per_day']:,.0f}"
            "/day"
            for w, r in results.items()
        )
    )


if __name__ == "__main__":
    main()
