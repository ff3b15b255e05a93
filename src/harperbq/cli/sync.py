"""`harperbq sync run|status|reset`: thin wrappers over `harperbq.sync`."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harperbq import logs
from harperbq.cli.common import (
    ConfigOption,
    error_line,
    load_or_exit,
    probe_client,
    require_harper,
    user_errors,
)
from harperbq.cli.validate import validate
from harperbq.cost import human_bytes
from harperbq.harper.errors import HarperError

if TYPE_CHECKING:  # the sync, BigQuery and HTTP layers load inside the commands that use them
    from harperbq.config import Config
    from harperbq.harper.transport import RequestEvent
    from harperbq.metrics import SyncMetrics
    from harperbq.sync.service import SyncService

app = typer.Typer(help="Sync BigQuery tables into Harper.", no_args_is_help=True)
console = Console(stderr=True)
app.command("validate")(validate)


@app.command()
# Over the size caps on purpose: the typer command's options are its statements: one per flag.
def run(  # noqa: PLR0915
    config: Path = ConfigOption,
    table: list[str] = typer.Option([], "--table", "-t", help="Only these table ids (repeat)."),
    once: bool = typer.Option(
        False, "--once", help="Catch up to now - settle, then exit (0 when every table made it)."
    ),
    log_format: str = typer.Option("console", "--log-format", help="json | console"),
    debug: bool = typer.Option(False, "--debug", help="Log every query and Harper request."),
    node_name: str | None = typer.Option(
        None,
        "--node-name",
        envvar="HARPERBQ_NODE_NAME",
        help="Name in worker ids (default: the Harper node's name).",
    ),
    control_host: str | None = typer.Option(
        None, "--control-host", help="Control API address (default control.host, 127.0.0.1)."
    ),
    control_port: int | None = typer.Option(
        None, "--control-port", help="Control API port (default control.port, 8181; 0: any)."
    ),
    no_control: bool = typer.Option(False, "--no-control", help="Do not serve the control API."),
    log_file: Path | None = typer.Option(
        None,
        "--log-file",
        help="In a terminal, where the log goes while the live view shows (./harperbq-sync.log).",
    ),
) -> None:
    """Run the sync for every configured table (or --table ...) until SIGTERM/SIGINT.

    In a terminal (with the console log format) a live view shows each table and worker, the
    log goes to a file and only warnings appear above the view; elsewhere the log is printed."""
    from harperbq.bigquery.client import make_client
    from harperbq.harper.connect import harper_client
    from harperbq.memory import limit_arenas
    from harperbq.metrics import SyncMetrics
    from harperbq.readiness import Readiness
    from harperbq.server import InsecureBind, serve
    from harperbq.sync.service import SyncService

    limit_arenas()  # before any thread: each would take its own arena
    live = log_format == "console" and console.is_terminal
    log_path = (log_file or Path("harperbq-sync.log")).resolve()
    if live:
        logs.configure_file(log_path, debug)
        console.print(f"log: {log_path}", markup=False, highlight=False)
    else:
        logs.configure(log_format, debug)
    cfg = load_or_exit(config)
    _known_tables(cfg, table)
    metrics = SyncMetrics()
    with user_errors():
        bq = make_client(cfg.bigquery)
        harper = harper_client(cfg.harper, on_event=_request_hook(metrics))
    if once:  # fail fast, in one line, rather than after every table's retries
        require_harper(cfg)
    service = SyncService(
        cfg,
        harper,
        bq,
        table_ids=table or None,
        once=once,
        node_name=node_name,
        metrics=metrics,
    )
    readiness = Readiness(cfg, bq)
    try:
        control = (
            None
            if no_control
            else serve(service, host=control_host, port=control_port, readiness=readiness.check)
        )
    except InsecureBind as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        harper.close()
        raise typer.Exit(2) from None
    except OSError as exc:
        if not once:  # a daemon without its control API would be blind: refuse to start
            console.print(f"[red]{exc}[/red]")
            harper.close()
            raise typer.Exit(2) from None
        logging.getLogger("harperbq.server").warning("%s; running without it", exc)
        control = None
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = False
    try:
        started = _start(cfg, service, stop)
        ok = True
        if started:
            ok = _wait(service, stop, log_path, debug) if live else service.wait(stop)
    finally:
        if started:
            service.stop()
        if control is not None:
            control.stop()
        readiness.close()
        harper.close()
    if once:
        _log_reconciled(service)
    if once and not ok:
        failed = [r.table_id for r in service.runners() if str(r.state) != "done"]
        console.print(f"[red]not caught up:[/red] {', '.join(failed)}")
        raise typer.Exit(1)


def _wait(service: SyncService, stop: threading.Event, log_path: Path, debug: bool) -> bool:
    from harperbq.cli.live import SlidingRate, live_view, sync_view

    rates = SlidingRate()
    with live_view(console, lambda: sync_view(service, rates), log_path=log_path, debug=debug) as u:
        return service.wait(stop, tick=u)


def _known_tables(cfg: Config, table_ids: list[str]) -> None:
    for table_id in table_ids:
        try:
            cfg.table(table_id)
        except KeyError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc.args[0]))}")
            raise typer.Exit(2) from None


def _start(cfg: Config, service: SyncService, stop: threading.Event) -> bool:
    """Start the service once Harper answers. Until then (a daemon started before Harper, or
    during an outage) log one line per attempt and retry with backoff, serving the control API
    (/readyz answers 503); False when told to stop first. A --once run probed Harper already
    and fails with one line instead."""
    log = logging.getLogger("harperbq.sync.start")
    retry = cfg.retry
    attempt = 0
    with probe_client(cfg) as probe:
        while not stop.is_set():
            try:
                probe.ping()
                service.start()
                return True
            except HarperError as exc:
                if service.once:
                    console.print(f"[red]error:[/red] {escape(error_line(exc))}")
                    raise typer.Exit(1) from None
                delay = min(
                    retry.max_delay_s, retry.initial_delay_s * retry.backoff_multiplier**attempt
                )
                attempt += 1
                log.error(
                    "cannot start the sync (attempt %d, retrying in %.1f s): %s",
                    attempt,
                    delay,
                    error_line(exc),
                )
                stop.wait(delay)
    return False


def _log_reconciled(service: SyncService) -> None:
    """`--once`: what the closing reconciliation found, per table and worker (a log event, so
    `--log-format json` output stays one JSON object per line)."""
    log = logging.getLogger("harperbq.sync.reconcile")
    for handle in service.handles:
        report = handle.maintenance.last_reconcile if handle.maintenance else None
        where = {"table": handle.table.id, "worker": handle.worker_id}
        if report is None:
            log.warning("table %s (%s): not reconciled", *where.values(), extra=where)
            continue
        if report.not_needed:
            log.info(
                "table %s (%s): no reconciliation needed (%s)",
                *where.values(),
                report.not_needed,
                extra={**where, "not_needed": report.not_needed},
            )
            continue
        log.info(
            "table %s (%s): reconciled %d windows, %d changed, %d rows re-read, %d deleted",
            handle.table.id,
            handle.worker_id,
            report.windows_checked,
            len(report.changed),
            report.rows_reread,
            report.rows_deleted,
            extra={
                **where,
                "windows": report.windows_checked,
                "changed": len(report.changed),
                "rows_reread": report.rows_reread,
                "rows_deleted": report.rows_deleted,
            },
        )


def _spent_text(spent: dict[str, Any] | None) -> str:
    """Bytes billed (queries + Storage Read) by the live workers, and the estimated cost."""
    if not spent:
        return "-"
    total = int(spent["bytes_billed"]) + int(spent["storage_bytes_scanned"])
    return f"{human_bytes(total)} ≈ ${float(spent['estimated_cost_usd']):,.4f}"


def _request_hook(metrics: SyncMetrics) -> Callable[[RequestEvent], None]:
    """Every Harper request: counted for /metrics, summarised in the log under --debug."""
    log = logging.getLogger("harperbq.harper.request")

    def hook(event: RequestEvent) -> None:
        metrics.harper_request(event)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "harper.request",
                extra={
                    "operation": event.operation,
                    "attempt": event.attempt,
                    "status": event.status,
                    "duration_s": round(event.duration_s, 4),
                    "error": event.error,
                    "will_retry": event.will_retry,
                },
            )

    return hook


@app.command()
def status(
    config: Path = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Per table: checkpoint, lag, phase, rows synced, last error (read from Harper's state)."""
    from harperbq.harper.connect import harper_client
    from harperbq.sync.state import StateStore
    from harperbq.sync.stored_status import judge_liveness, table_statuses, worker_statuses

    cfg = load_or_exit(config)
    require_harper(cfg)
    # A hung Harper must not hang `status` for timeout x retries: a few small reads, each
    # bounded by the stall timeout (a running sync shows its tables as `stalled` in /status).
    timeout = min(cfg.harper.timeout_s, cfg.harper.stall_timeout_s)
    with user_errors(), harper_client(cfg.harper, max_retries=1, timeout_s=timeout) as harper:
        liveness = judge_liveness(cfg, StateStore(harper, cfg.harper.state_database))
        rows = table_statuses(cfg, harper, liveness=liveness)
        workers = worker_statuses(cfg, harper, liveness)
    if as_json:
        body = {"tables": rows, "workers": workers, "liveness": liveness.how}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    view = Table(title="harperbq sync status")
    for column in (
        "table",
        "health",
        "checkpoint",
        "lag",
        "phase",
        "read",
        "rows",
        "partitions",
        "reconciled",
        "BigQuery billed",
        "last error",
    ):
        view.add_column(column)
    for row in rows:
        lag = row["lag_s"]
        drift = (row.get("validation") or {}).get("drift_rows")
        view.add_row(
            str(row["table"]),
            str(row.get("health", "-")) + (f" ({drift:,} rows)" if drift else ""),
            str(row["checkpoint"] or "-"),
            f"{lag:,.0f} s" if lag is not None else "-",
            str(row["phase"] or "-"),
            str(row.get("read") or "-"),
            f"{row['rows_synced']:,}",
            f"{row['partitions_synced']}/{row['partitions']}",
            _reconciled_text(row.get("reconcile")),
            _spent_text(row.get("bigquery")),
            str(row["last_error"] or ""),
        )
    Console().print(view)
    for row in rows:
        for notice in row.get("notices") or []:
            Console().print(
                f"table {row['table']}: {notice['at']} {notice['kind']}: {notice['message']}"
            )
    cluster = Table(title="workers")
    for column in ("worker", "node", "live", "beat", "table", "partitions", "rows", "state"):
        cluster.add_column(column)
    for w in workers:
        for table_id, info in sorted(w["tables"].items()) or [("-", {})]:
            cluster.add_row(
                w["worker"],
                w["node"],
                "yes" if w["live"] else "no",
                str(w["beat"]),
                table_id,
                str(info.get("partitions", "-")),
                f"{info.get('rows', 0):,}",
                str(info.get("state", "-")),
            )
    Console().print(cluster)
    Console().print(f"liveness: {liveness.how}")


def _reconciled_text(reconcile: dict[str, object] | None) -> str:
    if not reconcile:
        return "-"
    age = reconcile.get("age_s")
    text = f"{age:,.0f} s ago" if isinstance(age, int | float) else "never"
    return text + (" (due)" if reconcile.get("due") else "")


@app.command()
def reset(
    config: Path = ConfigOption,
    table: str = typer.Option(..., "--table", "-t", help="The table id to re-sync from its start."),
) -> None:
    """Forget a table's checkpoints so it re-syncs from its start (rows are upserted again,
    never duplicated). Stop running syncs of the table first."""
    from harperbq.harper.connect import harper_client
    from harperbq.sync.state import StateStore

    cfg = load_or_exit(config)
    _known_tables(cfg, [table])
    require_harper(cfg)
    with user_errors(), harper_client(cfg.harper) as harper:
        removed = StateStore(harper, cfg.harper.state_database).delete_checkpoints(table)
    console.print(f"table {table}: {removed} checkpoints removed; it re-syncs from its start")
