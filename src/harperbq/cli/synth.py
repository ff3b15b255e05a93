"""`harperbq synth ...` (alias `maritime-data-synthesizer`): the maritime data synthesizer's CLI.

Thin: parse, build the client and parameters from the config file, call `harperbq.synth.window`,
render with rich (or JSON). The synthesizer and BigQuery load inside the commands, so `--help`
stays fast.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harperbq.bigquery.errors import ClientSetupError
from harperbq.synth.params import SCENARIOS, SynthParams, params_from_config

if TYPE_CHECKING:
    from google.cloud import bigquery

    from harperbq.synth.window import FillResult, Synthesizer

app = typer.Typer(
    name="synth",
    help="The maritime (AIS) data synthesizer: fills BigQuery with reproducible vessel traffic.",
    no_args_is_help=True,
)
console = Console(stderr=True)
out = Console()

ConfigOption = typer.Option(Path("config.yaml"), "--config", "-c", help="Config file (YAML).")
SeedOption = typer.Option(None, "--seed", help="Override synthesizer.seed.")
VesselsOption = typer.Option(None, "--vessels", help="Override synthesizer.totalVessels.")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of tables.")


class RichReporter:
    """Progress bars for fills (one per table), notes on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def start(self, task: str, total: float) -> None:
        self.tasks[task] = self.progress.add_task(f"{task:<10} (hours)", total=total)

    def advance(self, task: str, amount: float) -> None:
        self.progress.advance(self.tasks[task], amount)

    def note(self, message: str) -> None:
        self.progress.console.print(message)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _client(bq: Any) -> bigquery.Client:
    """The BigQuery client for the config's `bigquery` block.

    Uses `harperbq.bigquery.client.make_client` when the BigQuery layer provides it; until then
    builds the client here: an `endpoint` means a local emulator with anonymous credentials.
    """
    from google.cloud import bigquery

    from harperbq.bigquery import client as client_module

    make_client = getattr(client_module, "make_client", None)
    if make_client is not None:
        return make_client(bq)  # type: ignore[no-any-return]
    project = getattr(bq, "project_id", None)
    endpoint = getattr(bq, "endpoint", None)
    if endpoint:
        return client_module.emulator_client(str(project), str(endpoint))
    credentials = None
    if getattr(bq, "credentials", None):
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(bq.credentials)
        )
    return bigquery.Client(project=project, credentials=credentials, location=bq.location)


def load(config: Path, **overrides: Any) -> tuple[SynthParams, bigquery.Client]:
    """Parameters and BigQuery client from the config file (plus command-line overrides)."""
    cfg = _config(config)
    params = _params(cfg, overrides)
    try:
        return params, _client(cfg.bigquery)
    except ClientSetupError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _config(config: Path) -> Any:
    from harperbq.cli.common import read_config
    from harperbq.config import ConfigError

    try:
        return read_config(config)
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _params(cfg: Any, overrides: dict[str, Any]) -> SynthParams:
    base = params_from_config(cfg) if cfg is not None else SynthParams()
    try:
        return base.with_overrides(**overrides)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")


def parse_time(value: str) -> float:
    """ISO 8601 (UTC if no zone), `now`, or relative like `-6h`, `-2d`."""
    value = value.strip()
    if value == "now":
        return datetime.now(UTC).timestamp()
    match = _RELATIVE.match(value)
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return (datetime.now(UTC) - timedelta(seconds=float(match.group(1)) * unit)).timestamp()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"not a time: {value!r} (ISO 8601, 'now' or '-6h')") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def scenario_days(value: str) -> float:
    if value in SCENARIOS:
        return SCENARIOS[value]
    try:
        days = float(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected small, realistic, stress or a number of days, got {value!r}"
        ) from exc
    if days <= 0:
        raise typer.BadParameter("days must be positive")
    return days


def _report_fill(result: FillResult, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({"rows": result.rows, "jobs": result.jobs}))
        return
    for kind, rows in result.rows.items():
        out.print(f"{kind:<10} {rows:>12,} rows in {result.jobs.get(kind, 0)} load job(s)")


def _synthesizer(
    client: bigquery.Client, params: SynthParams, reporter: RichReporter | None = None
) -> Synthesizer:
    from harperbq.synth.window import Synthesizer

    return Synthesizer(client, params, reporter)


def _run(fn: Any) -> Any:
    from harperbq.synth.write import GenerationMismatchError

    try:
        return fn()
    except GenerationMismatchError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def initialize(
    scenario: str = typer.Argument(
        ..., help="small (1 h), realistic (24 h), stress (7 days) or DAYS"
    ),
    config: Path = ConfigOption,
    seed: int | None = SeedOption,
    vessels: int | None = VesselsOption,
    as_json: bool = JsonOption,
) -> None:
    """Create the tables and load history up to now (only what is missing)."""
    days = scenario_days(scenario)
    params, client = load(config, seed=seed, total_vessels=vessels)
    with _progress() as progress:
        synth = _synthesizer(client, params, RichReporter(progress))
        result = _run(lambda: synth.initialize(days))
    _report_fill(result, as_json)


@app.command()
def start(
    config: Path = ConfigOption,
    no_backfill: bool = typer.Option(False, "--no-backfill", help="Do not fill gaps first."),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds."),
    once: bool = typer.Option(False, "--once", help="Fill gaps, write one interval, stop."),
    interval: float | None = typer.Option(None, "--interval", help="Seconds between windows."),
    seed: int | None = SeedOption,
    vessels: int | None = VesselsOption,
    as_json: bool = JsonOption,
) -> None:
    """Rolling window: fill gaps since the retention cutoff, then write live until stopped."""
    params, client = load(config, seed=seed, total_vessels=vessels)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        console.print(f"signal {signal.Signals(signum).name}: finishing the current window")
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _progress() as progress:
            synth = _synthesizer(client, params, RichReporter(progress))
            stats = _run(
                lambda: synth.run(
                    stop,
                    backfill=not no_backfill,
                    duration_s=duration,
                    once=once,
                    interval_s=interval,
                )
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = {
        "backfilled": stats.backfilled.rows,
        "live_rows": stats.rows,
        "windows": stats.windows,
        "load_jobs": stats.jobs,
        "cleaned": stats.cleaned,
        "written_until": datetime.fromtimestamp(stats.cursor, UTC).isoformat(),
    }
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        out.print(summary)


@app.command()
def backfill(
    start_time: str = typer.Option(..., "--from", help="Start (ISO 8601, 'now', '-6h')."),
    end_time: str = typer.Option("now", "--to", help="End, exclusive (default now)."),
    config: Path = ConfigOption,
    seed: int | None = SeedOption,
    vessels: int | None = VesselsOption,
    as_json: bool = JsonOption,
) -> None:
    """Fill whatever is missing between two times (whole hours)."""
    lo, hi = parse_time(start_time), parse_time(end_time)
    if hi <= lo:
        raise typer.BadParameter("--to must be after --from")
    params, client = load(config, seed=seed, total_vessels=vessels)
    with _progress() as progress:
        synth = _synthesizer(client, params, RichReporter(progress))
        result = _run(lambda: synth.backfill(lo, hi))
    _report_fill(result, as_json)


@app.command()
def cleanup(config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Delete rows older than retentionDays (partition expiration does this too)."""
    params, client = load(config)
    deleted = _synthesizer(client, params).cleanup()
    out.print_json(json.dumps({"deleted": deleted})) if as_json else out.print(
        f"deleted: {deleted}"
    )


@app.command()
def stats(config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Per table: rows, time range, vessels, bytes."""
    params, client = load(config)
    data = _synthesizer(client, params).stats()
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table(title=f"{client.project}.{params.dataset}")
    for column in ("table", "rows", "oldest", "newest", "vessels", "bytes"):
        right = column in ("rows", "vessels", "bytes")
        table.add_column(column, justify="right" if right else "left", no_wrap=True)
    for info in data.values():
        name = str(info["table"]).rsplit(".", 1)[-1]
        if not info["exists"]:
            table.add_row(name, "-", "missing", "", "", "")
            continue
        table.add_row(
            name,
            f"{info['rows']:,}",
            str(info["oldest"]),
            str(info["newest"]),
            f"{info['vessels']:,}",
            f"{info['bytes']:,}",
        )
    Console(width=max(out.width, 150)).print(table)


@app.command()
def clear(config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Empty the three tables: dropped and recreated with the same definition (no DML)."""
    params, client = load(config)
    deleted = _synthesizer(client, params).clear()
    out.print_json(json.dumps({"deleted": deleted})) if as_json else out.print(
        f"deleted: {deleted}"
    )


@app.command()
def clean(config: Path = ConfigOption, as_json: bool = JsonOption) -> None:
    """Drop the three tables."""
    params, client = load(config)
    dropped = _synthesizer(client, params).clean()
    out.print_json(json.dumps({"dropped": dropped})) if as_json else out.print(
        f"dropped: {dropped}"
    )


@app.command()
def reset(
    days: float = typer.Argument(..., help="Days of history to load after dropping the tables."),
    config: Path = ConfigOption,
    seed: int | None = SeedOption,
    vessels: int | None = VesselsOption,
    as_json: bool = JsonOption,
) -> None:
    """Drop the tables and load DAYS of history."""
    if days <= 0:
        raise typer.BadParameter("days must be positive")
    params, client = load(config, seed=seed, total_vessels=vessels)
    with _progress() as progress:
        result = _synthesizer(client, params, RichReporter(progress)).reset(days)
    _report_fill(result, as_json)


@app.command("map")
def map_tracks(
    out_path: Path = typer.Option(Path("tracks.png"), "--out", "-o", help="PNG file to write."),
    start: str = typer.Option("-6h", "--start", help="Window start: ISO 8601, 'now' or '-6h'."),
    end: str = typer.Option("now", "--end", help="Window end: ISO 8601, 'now' or '-1h'."),
    tracks: int = typer.Option(40, "--tracks", help="How many vessels to draw (first by MMSI)."),
    mmsi: str | None = typer.Option(None, "--mmsi", help="Comma-separated MMSIs to draw."),
    width: int = typer.Option(1600, "--width", help="Image width in pixels."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Config file for the fleet and seed (default: defaults)."
    ),
    seed: int | None = SeedOption,
    vessels: int | None = VesselsOption,
) -> None:
    """Draw the synthesized tracks of a window on a land mask, ports marked (no network)."""
    from harperbq.synth.png import encode_png
    from harperbq.synth.reference import PORTS
    from harperbq.synth.tables import Generator
    from harperbq.synth.track_map import render, select_vessels

    lo, hi = parse_time(start), parse_time(end)
    if hi <= lo:
        raise typer.BadParameter(f"--end ({end}) must be after --start ({start})")
    if width < 64:
        raise typer.BadParameter("--width must be at least 64 pixels")
    params = _params(_config(config) if config else None, {"seed": seed, "total_vessels": vessels})
    chosen = [int(m) for m in mmsi.split(",") if m.strip()] if mmsi else None
    positions = select_vessels(Generator(params).positions(lo, hi), tracks, chosen)
    picture = render(positions, PORTS, width=width)
    out_path.write_bytes(encode_png(picture.rgb))
    height, _ = picture.bounds.shape(width)
    b = picture.bounds
    typer.echo(
        f"{out_path}: {picture.vessels} vessels, {picture.reports:,} reports, "
        f"{len(picture.ports)} ports, {width}x{height} px, "
        f"lat {b.south:.1f}..{b.north:.1f}, lon {b.west:.1f}..{b.east:.1f}"
    )
