"""What every command shares: the --config option and loading it with readable errors.

Imports only light modules at import time (`--help` must not load BigQuery, pyarrow or the
HTTP client); the config, Harper and BigQuery layers are imported inside the functions that
use them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harperbq.bigquery.errors import ClientSetupError
from harperbq.harper.errors import HarperError, MissingCredentials, Unavailable

if TYPE_CHECKING:
    from harperbq.config import Config, ConfigProblem
    from harperbq.harper.client import HarperClient

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


def read_config(path: Path) -> Config:
    """`load_config`, then its secrets registered so that no log line shows them: the one
    way the commands read their config (raises `ConfigError` as `load_config` does)."""
    from harperbq import logs
    from harperbq.config import load_config

    cfg = load_config(path)
    logs.register_secrets(cfg.secrets())
    return cfg


def load_or_exit(path: Path) -> Config:
    """The config, or every problem in it printed as a table and exit code 2."""
    from harperbq.config import ConfigError

    try:
        return read_config(path)
    except ConfigError as exc:
        console = Console(stderr=True)
        console.print(problem_table(exc.problems, exc.source))
        console.print(f"[red]{len(exc.problems)} config problem(s)[/red]")
        raise typer.Exit(2) from None
    except OSError as exc:
        Console(stderr=True).print(f"[red]cannot read config {path}:[/red] {exc}")
        raise typer.Exit(2) from None


def harper_hint(exc: HarperError) -> str:
    """What to check when Harper cannot be used (the message names the URL, never a secret)."""
    if isinstance(exc, Unavailable):
        return "check harper.url and that Harper is running and reachable from this host"
    return "check the harper block of the config"


def error_line(exc: BaseException) -> str:
    """One line for a user error: the message, and for Harper errors what to check."""
    text = " ".join(str(exc).split())
    if isinstance(exc, HarperError):
        return f"{text}; {harper_hint(exc)}"
    return text


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors of the setup (Harper unreachable or refusing, unusable BigQuery credentials, no
    Harper credentials) end the command with one line on stderr and exit 1, not a traceback."""
    try:
        yield
    except (HarperError, ClientSetupError, MissingCredentials) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(error_line(exc))}")
        raise typer.Exit(1) from None


PROBE_TIMEOUT_S = 5.0


def probe_client(cfg: Config) -> HarperClient:
    """A Harper client that answers within seconds and never retries: for start-up probes."""
    from harperbq.harper.connect import harper_client

    fast = cfg.harper.model_copy(
        update={"timeout_s": PROBE_TIMEOUT_S, "connect_timeout_s": PROBE_TIMEOUT_S}
    )
    return harper_client(fast, max_retries=0)


def require_harper(cfg: Config) -> None:
    """Harper answers an authenticated call, or the command ends with one line (exit 1)."""
    with user_errors(), probe_client(cfg) as probe:
        probe.ping()
