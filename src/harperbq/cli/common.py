"""What every command shares: the --config option and loading it with readable errors."""

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from harperbq.config import Config, ConfigError, ConfigProblem, load_config

DEFAULT_CONFIG = Path("config.yaml")
ConfigOption: Path = typer.Option(
    DEFAULT_CONFIG, "--config", "-c", envvar="HARPERBQ_CONFIG", help="Config file."
)


def problem_table(problems: list[ConfigProblem], source: str | None) -> Table:
    table = Table(title=f"config problems{f' in {source}' if source else ''}", show_lines=True)
    for column in ("key", "problem", "value", "fix"):
        table.add_column(column, overflow="fold")
    for p in problems:
        value = "" if p.value is None else json.dumps(p.value, default=str)
        table.add_row(p.path or "(file)", p.message, value, p.fix or "")
    return table


def load_or_exit(path: Path) -> Config:
    """The config, or every problem in it printed as a table and exit code 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        console = Console(stderr=True)
        console.print(problem_table(exc.problems, exc.source))
        console.print(f"[red]{len(exc.problems)} config problem(s)[/red]")
        raise typer.Exit(2) from None
    except OSError as exc:
        Console(stderr=True).print(f"[red]cannot read config {path}:[/red] {exc}")
        raise typer.Exit(2) from None
