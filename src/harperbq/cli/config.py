"""`harperbq config check` validates the file, then checks every table against BigQuery;
`harperbq config show` prints the configuration as the sync will use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harperbq.bigquery.errors import ClientSetupError
from harperbq.cli.common import DEFAULT_CONFIG, problem_table, read_config

if TYPE_CHECKING:
    from harperbq.bigquery.checks import Check
    from harperbq.config import Config

app = typer.Typer(help="Validate and inspect the config file.", no_args_is_help=True)
ConfigFile = Annotated[
    Path, typer.Option("--config", "-c", envvar="HARPERBQ_CONFIG", help="Config file.")
]


def _check_table(checks: list[Check]) -> Table:
    table = Table(title="BigQuery pre-flight")
    for column in ("table", "check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(
            c.table, c.check, "[green]ok[/green]" if c.ok else "[red]FAIL[/red]", c.detail
        )
    return table


def _summary(cfg: Config) -> Table:
    table = Table(title=f"config {cfg.source}" if cfg.source else "config")
    for column in ("table", "source", "target", "cursor", "key", "partitions"):
        table.add_column(column, overflow="fold")
    for t in cfg.tables:
        table.add_row(
            t.id,
            t.source_id(cfg.bigquery.project_id),
            f"{cfg.harper.database}.{t.target_table}",
            t.cursor_column,
            ", ".join(t.primary_key) or "(row hash)",
            f"{t.partitions} by {', '.join(t.partition_key)}",
        )
    return table


def _online(cfg: Config) -> list[Check]:
    from harperbq.bigquery.checks import Check, check_table
    from harperbq.bigquery.client import make_client, make_read_client
    from harperbq.bigquery.read import StorageReader
    from harperbq.readiness import Readiness
    from harperbq.retry import RetryPolicy

    # Pre-flight must answer quickly even when BigQuery is unreachable: a short retry budget.
    policy = RetryPolicy(max_attempts=2, initial_delay_s=0.5, total_timeout_s=20.0)
    try:
        client = make_client(cfg.bigquery)
    except ClientSetupError as exc:
        return [Check("-", "BigQuery client", False, str(exc))]
    checks: list[Check] = []
    storage, storage_problem = None, None
    if cfg.bigquery.read_api != "query":  # the Storage Read API may be used: check it too
        try:
            storage = StorageReader(
                make_read_client(cfg.bigquery),
                billing_project=cfg.bigquery.project_id or client.project,
                policy=policy,
            )
        except ClientSetupError as exc:
            # `auto` reads large windows only through it: a problem then, not yet.
            required = cfg.bigquery.read_api == "storage"
            storage_problem = Check("-", "Storage Read client", not required, str(exc))
    for table in cfg.tables:
        checks.extend(
            check_table(client, table, policy, storage=storage, prices=cfg.bigquery.prices)
        )
    if storage_problem is not None:
        checks.append(storage_problem)
    # Harper too: the same short, authenticated probe as the control API's /readyz.
    readiness = Readiness(cfg, client)
    try:
        _, body = readiness.check()
    finally:
        readiness.close()
    harper = body["harper"]
    checks.append(
        Check("-", "Harper reachable", harper["ok"], harper.get("error") or cfg.harper.url)
    )
    if harper["ok"]:  # unreachable: the same failure would repeat once per node
        checks.append(_confirmations(cfg))
        checks.extend(_node_checks(cfg))
    return checks


def _confirmations(cfg: Config) -> Check:
    """How many peers will confirm each data write, decided as the sync decides it."""
    from harperbq.bigquery.checks import Check
    from harperbq.cli.common import probe_client
    from harperbq.harper.errors import HarperError, MissingCredentials
    from harperbq.harper.replication import Confirmations

    try:
        with probe_client(cfg) as probe:
            holder = Confirmations(probe.cluster_status, cfg.harper.replicated_confirmation)
            decision = holder.decision()
    except (HarperError, MissingCredentials) as exc:
        return Check("-", "replicated confirmation", False, str(exc))
    return Check("-", "replicated confirmation", True, f"{decision.count}: {decision.reason}")


def _node_checks(cfg: Config) -> list[Check]:
    """The sync's user on every known Harper node (users may not replicate)."""
    from harperbq.bigquery.checks import Check
    from harperbq.harper.errors import MissingCredentials
    from harperbq.sync.cluster.nodes import check_nodes

    try:
        found = check_nodes(cfg)
    except MissingCredentials as exc:
        return [Check("-", "Harper user", False, str(exc))]
    return [
        Check(
            "-",
            f"Harper user on {node.url}",
            node.ok,
            node.detail if node.ok else f"{node.status}: {node.detail}; fix: {node.fix or '-'}",
        )
        for node in found
    ]


@app.command()
def check(
    config: ConfigFile = DEFAULT_CONFIG,
    offline: bool = typer.Option(False, "--offline", help="Only validate the file."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Validate the config; unless --offline, check every table, column and key in BigQuery.
    Exits 1 on any problem."""
    from harperbq.config import ConfigError

    console = Console()  # per call: the terminal's width (COLUMNS) as it is now, not at import
    report: dict[str, Any] = {"config": str(config), "ok": True, "problems": [], "checks": []}
    try:
        cfg = read_config(config)
    except ConfigError as exc:
        report["ok"] = False
        report["problems"] = [p.to_json() for p in exc.problems]
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            console.print(problem_table(exc.problems, exc.source))
            console.print(f"[red]{len(exc.problems)} problem(s)[/red]")
        raise typer.Exit(1) from None
    report["tables"] = [t.id for t in cfg.tables]
    warnings = [] if cfg.tables else ["no tables configured under bigquery.tables"]
    report["warnings"] = warnings
    checks = [] if offline else _online(cfg)
    report["checks"] = [c.to_json() for c in checks]
    report["ok"] = all(c.ok for c in checks)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(_summary(cfg))
        for warning in warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        if checks:
            console.print(_check_table(checks))
        failed = sum(not c.ok for c in checks)
        if failed:
            console.print(f"[red]{failed} check(s) failed[/red]")
        else:
            console.print("[green]config ok[/green]" + (" (offline)" if offline else ""))
    if not report["ok"]:
        raise typer.Exit(1)


def effective(cfg: Config) -> dict[str, Any]:
    """The resolved configuration as plain data: defaults filled in, the original's shapes
    translated, environment overrides applied; every secret masked (set or not is shown)."""
    from pydantic import BaseModel, SecretStr

    from harperbq.config import LEGACY_TABLE_FIELDS, BigQueryConfig, GlobalSync

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "***" if value.get_secret_value() else None
        if isinstance(value, GlobalSync):
            return plain(value.node_settings())
        if isinstance(value, BigQueryConfig):  # its tables are shown resolved, in `tables`
            return plain(value.model_dump(exclude={"tables", *LEGACY_TABLE_FIELDS}))
        if isinstance(value, BaseModel):
            fields = type(value).model_fields.items()
            return {name: plain(getattr(value, name)) for name, f in fields if not f.exclude}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return str(value)

    data: dict[str, Any] = plain(cfg)
    data["from_environment"] = data.pop("origins")
    return data


@app.command()
def show(
    config: ConfigFile = DEFAULT_CONFIG,
    as_json: bool = typer.Option(False, "--json", help="JSON instead of YAML."),
) -> None:
    """The effective configuration: defaults filled in, the original plugin's keys translated to
    ours, environment overrides applied (`from_environment` says which), secrets masked."""
    import yaml

    from harperbq.config import ConfigError

    try:
        cfg = read_config(config)
    except ConfigError as exc:
        console = Console(stderr=True)
        console.print(problem_table(exc.problems, exc.source))
        console.print(f"[red]{len(exc.problems)} problem(s)[/red]")
        raise typer.Exit(1) from None
    data = effective(cfg)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
