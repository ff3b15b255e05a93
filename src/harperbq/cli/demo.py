"""`harperbq demo`: local stack, synthesized AIS traffic, live sync display, counts compared."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from harperbq import cost, logs
from harperbq.cost import human_bytes
from harperbq.devstack import DevStackError

if TYPE_CHECKING:  # BigQuery, the sync and the stack load inside `demo`, not for `--help`
    from google.cloud import bigquery

    from harperbq.config import Config
    from harperbq.harper.client import HarperClient
    from harperbq.sync.service import SyncService
    from harperbq.synth.window import Synthesizer

console = Console()
END_OF_TIME = "9999-12-31T23:59:59.999999Z"


def _bigquery_distinct(
    bq: bigquery.Client,
    table: str,
    key: tuple[str, ...],
    cursor: str,
    before: str,
    *,
    by_commit: bool,
) -> int:
    """Distinct source keys before the checkpoint: the records Harper must hold (rows younger
    than `now - settle` when the sync stopped are left for its next pass, by design). A
    change-feed checkpoint counts commit time: the rows inserted before it (the demo's tables
    only receive inserts)."""
    from google.cloud import bigquery

    from harperbq.config import parse_timestamp

    columns = ", ".join(f"`{k}`" for k in key)
    if by_commit:
        sql = (
            f"SELECT COUNT(*) AS n FROM (SELECT DISTINCT {columns} "  # noqa: S608
            f"FROM APPENDS(TABLE `{table}`, NULL, @before))"
        )
    else:
        sql = (
            f"SELECT COUNT(*) AS n FROM (SELECT DISTINCT {columns} FROM `{table}` "  # noqa: S608
            f"WHERE `{cursor}` < @before)"
        )
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("before", "TIMESTAMP", parse_timestamp(before))
        ]
    )
    return int(next(iter(bq.query(sql, job_config=config).result()))["n"])


def demo(
    hours: float = typer.Option(2.0, "--hours", help="Hours of history to synthesize first."),
    vessels: int = typer.Option(200, "--vessels", help="Fleet size."),
    follow: bool = typer.Option(
        False, "--follow", help="Keep generating and syncing until Ctrl-C."
    ),
) -> None:
    """Start the local stack, fill BigQuery with AIS traffic, sync it to Harper, compare."""
    from harperbq import demo as demo_flow
    from harperbq.bigquery.client import make_client
    from harperbq.cli.live import SlidingRate, live_view, log_file, sync_view
    from harperbq.devstack.paths import dev_dir
    from harperbq.harper.connect import harper_client
    from harperbq.sync.service import SyncService
    from harperbq.synth.params import params_from_config
    from harperbq.synth.window import Synthesizer

    log_path = log_file(dev_dir() / "dev", "demo")
    if console.is_terminal:  # the terminal shows progress and the live view; the log, a file
        logs.configure_file(log_path)
        console.print(f"log: {log_path}", markup=False, highlight=False)
    else:
        logs.configure("console", debug=False)
    try:
        with console.status("starting the local Harper and BigQuery emulator…"):
            s, cfg, path = demo_flow.prepare(vessels)
    except DevStackError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"Harper {s.harper.url} · BigQuery emulator {s.emulator.endpoint} · config {path}"
    )
    bq = make_client(cfg.bigquery)
    synth = Synthesizer(bq, params_from_config(cfg))
    with console.status(f"synthesizing {hours:g} h of AIS traffic for {vessels} vessels…"):
        filled = synth.initialize(hours / 24)
    console.print(f"BigQuery rows written: {json.dumps(filled.rows)}")
    # The sync reads commits older than `settle`: let the history just written get there, so
    # the first pass copies all of it.
    time.sleep(max(t.settle_s for t in cfg.tables) + 1)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    harper = harper_client(cfg.harper)
    service = SyncService(cfg, harper, bq, once=not follow)
    generator = None
    if follow:
        # Live traffic only: the history is the `--hours` just written (a gap fill of the
        # synthesizer's whole retention would bury the demo in backfill).
        generator = threading.Thread(
            target=synth.run, args=(stop,), kwargs={"backfill": False}, daemon=True
        )
        generator.start()
    service.start()
    rates = SlidingRate()
    with live_view(console, lambda: sync_view(service, rates), log_path=log_path) as update:
        while not stop.is_set() and any(r.alive() for r in service.runners()):
            stop.wait(0.5)
            update()
    stop.set()
    service.stop()
    spent = _spent_by_table(service, cfg)
    if generator is not None:
        generator.join(30)
        _close_the_books(cfg, harper, bq, spent)

    ok = _report(bq, harper, cfg, spent)
    harper.close()
    console.print(f"map of the synthesized tracks: {_draw_map(synth, path.parent, hours)}")
    if not ok:
        raise typer.Exit(1)


def _close_the_books(
    cfg: Config, harper: HarperClient, bq: bigquery.Client, spent: dict[str, dict[str, float | int]]
) -> None:
    """After `--follow`: Ctrl-C can land between a window's writes and its checkpoint, leaving
    Harper ahead of the checkpoint the comparison counts to. The generator has stopped, so one
    `--once` pass after `settle` moves every checkpoint past everything written (a second
    Ctrl-C skips it); its bytes are added to the bill shown."""
    from harperbq.sync.service import SyncService

    closing = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: closing.set())
    if closing.wait(max(t.settle_s for t in cfg.tables) + 1):
        return
    final = SyncService(cfg, harper, bq, once=True)
    with console.status("closing the last windows (one --once pass)…"):
        final.start()
        final.wait(closing)
        final.stop()
    for table_id, figures in _spent_by_table(final, cfg).items():
        before = spent.get(table_id)
        spent[table_id] = (
            figures if before is None else {k: before[k] + figures[k] for k in figures}
        )


def _draw_map(synth: Synthesizer, directory: Path, hours: float) -> Path:
    """The demo window's tracks (40 vessels) as a PNG beside the demo's config."""
    from harperbq.synth.png import encode_png
    from harperbq.synth.reference import PORTS
    from harperbq.synth.track_map import render, select_vessels

    now = synth.now()
    positions = synth.generator.positions(now - min(hours, 24.0) * 3600, now)
    picture = render(select_vessels(positions, vessels=40), PORTS, width=1600)
    out = directory / "tracks.png"
    out.write_bytes(encode_png(picture.rgb))
    return out


def _spent_by_table(service: SyncService, cfg: Config) -> dict[str, dict[str, float | int]]:
    """Bytes the sync's reads billed per table (all its workers), with the estimated cost."""
    billed: dict[str, list[int]] = {}
    for handle in service.handles:
        spent = getattr(handle.engine.source, "spent", None)
        if spent is None:
            continue
        figures = spent()
        total = billed.setdefault(handle.table.id, [0, 0])
        total[0] += int(figures["bytes_billed"])
        total[1] += int(figures["storage_bytes_scanned"])
    return {t: cost.spent(q, s, cfg.bigquery.prices) for t, (q, s) in billed.items()}


def _report(
    bq: bigquery.Client,
    harper: HarperClient,
    cfg: Config,
    spent: dict[str, dict[str, float | int]],
) -> bool:
    from harperbq import demo as demo_flow
    from harperbq.sync.stored_status import table_statuses

    database = cfg.harper.database
    view = Table(title="BigQuery vs Harper, up to each table's checkpoint")
    for column in (
        "table",
        "checkpoint",
        "BigQuery (distinct keys)",
        "Harper records",
        "match",
        "bytes billed (queries + Storage Read)",
        "est. cost (on-demand)",
    ):
        view.add_column(column)
    ok = True
    statuses = {s["table"]: s for s in table_statuses(cfg, harper)}
    for t in demo_flow.TABLES:
        # No checkpoint: nothing synced yet, so every source row counts (an empty table is fine).
        status = statuses.get(t.id) or {}
        before = status.get("checkpoint") or END_OF_TIME
        by_commit = status.get("read") in ("snapshot", "following") and before != END_OF_TIME
        source = f"{bq.project}.{demo_flow.DEMO_DATASET}.{t.source}"
        expected = _bigquery_distinct(bq, source, t.key, t.cursor, before, by_commit=by_commit)
        got = harper.count_range(
            database, t.target, t.cursor, "", END_OF_TIME if by_commit else before
        )
        ok &= expected == got
        mark = "✓" if expected == got else "✗"
        shown = "-" if before == END_OF_TIME else before
        figures = spent.get(t.id) or cost.spent(0, 0, cfg.bigquery.prices)
        scanned = int(figures["bytes_billed"]) + int(figures["storage_bytes_scanned"])
        dollars = float(figures["estimated_cost_usd"])
        view.add_row(
            t.id, shown, f"{expected:,}", f"{got:,}", mark, human_bytes(scanned), f"${dollars:,.4f}"
        )
    console.print(view)
    query = (
        "SELECT mmsi, vessel_name, timestamp, latitude, longitude, speed_knots "  # noqa: S608
        f"FROM {database}.VesselPositions ORDER BY timestamp DESC LIMIT 3"
    )
    console.print(f"Example Harper query (Operations API, operation sql):\n  {query}")
    example = harper.sql(query)
    console.print_json(json.dumps(example))
    return ok
