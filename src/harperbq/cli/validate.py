"""`harperbq sync validate`: per-record comparison BigQuery vs Harper, optional exact repair.

Thin: parse, call `sync.validate`, render. Exit code 0 when every table is healthy or lagging
when the run ends (with `--repair`: as checked again after the repair), 1 otherwise, so
scripts and cron jobs can alert on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from harperbq.cli.common import ConfigOption, load_or_exit, require_harper, user_errors

if TYPE_CHECKING:
    from harperbq.sync.checks.validate import ValidationResult

console = Console(stderr=True)


def validate(
    config: Path = ConfigOption,
    table: list[str] = typer.Option([], "--table", "-t", help="Only these table ids (repeat)."),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Upsert missing, changed and moved records, delete foreign ones (deletes: mirror), "
        "re-sync pending windows; safe beside a running sync.",
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help='How far behind each checkpoint to check, e.g. "6h" (default: the table\'s lateness).',
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Per closed window and partition, BigQuery vs Harper: a digest of every record, then the
    differing windows record by record (missing, foreign, changed, moved); results also go to
    SyncAudit (kind validation)."""
    from harperbq.bigquery.client import make_client
    from harperbq.config import parse_duration
    from harperbq.harper.connect import harper_client
    from harperbq.sync.checks.validate import validate_tables

    cfg = load_or_exit(config)
    try:
        since_s = parse_duration(since) if since is not None else None
        for table_id in table:
            cfg.table(table_id)
    except (KeyError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    require_harper(cfg)  # unreachable: one line, not one error per table
    with user_errors(), harper_client(cfg.harper) as harper:
        results = validate_tables(
            cfg, harper, make_client(cfg.bigquery), table or None, repair=repair, since_s=since_s
        )
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    else:
        _render(results)
    if not all(_passed(r) for r in results):
        raise typer.Exit(1)


def _passed(result: ValidationResult) -> bool:
    """Healthy or lagging when the run ended (after the repair, with --repair)."""
    from harperbq.sync.health import STALLED

    return result.ok and result.final_health != STALLED


def _health(result: ValidationResult) -> str:
    if result.error is not None:
        return f"error: {result.error}"
    if result.after is not None:
        return f"{result.health}, repaired: {result.after.health}"
    return result.health


def _render(results: list[ValidationResult]) -> None:
    view = Table(title="harperbq sync validate")
    for column in (
        "table",
        "health",
        "behind",
        "windows",
        "source rows",
        "harper rows",
        "missing",
        "foreign",
        "changed",
        "moved",
        "pending windows",
        "compared rows",
        "repaired",
    ):
        view.add_column(column)
    for r in results:
        behind = r.progress.behind_s
        foreign = f"{r.foreign_rows:,}" + ("" if r.mirror else " (retained)")
        view.add_row(
            r.table_id,
            _health(r),
            f"{behind:,.0f} s" if behind is not None else "-",
            str(r.windows_checked),
            f"{r.rows_source:,}",
            f"{r.rows_harper:,}",
            f"{r.missing_rows:,}",
            foreign if r.foreign_rows else "0",
            f"{r.changed_rows:,}",
            f"{r.moved_rows:,}",
            str(len(r.pending)),
            f"{r.rows_compared:,} in {r.windows_compared} windows",
            (
                f"{r.repaired_upserts:,} upserted, {r.repaired_deletes:,} deleted, "
                f"{len(r.repaired)} windows re-synced"
                if r.after is not None
                else "-"
            ),
        )
    Console().print(view)
    for r in results:
        for d in r.drift[:10]:
            j = d.to_json()
            console.print(
                f"{r.table_id}: partition {d.partition} [{j['lo']}, {j['hi']}): "
                f"{d.missing} missing, {d.foreign} foreign, {d.changed} changed, "
                f"{d.moved} moved (source {d.source}, harper {d.harper})"
            )
        for example in r.examples:
            console.print(f"{r.table_id}: e.g. {example}")
