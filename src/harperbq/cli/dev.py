"""`harperbq dev up|down|status`: the local Harper and BigQuery emulator.

The stack's modules (and the HTTP client they use) are imported inside the commands.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from harperbq.devstack import DevStackError

if TYPE_CHECKING:
    from harperbq.devstack import stack

app = typer.Typer(help="Run a local Harper and a local BigQuery emulator.", no_args_is_help=True)
console = Console()


def _render(s: stack.Stack, running: dict[str, bool]) -> None:
    from harperbq.devstack.harper import HARPER_VERSION

    table = Table(title="harperbq local stack")
    for column in ("service", "state", "pid", "endpoint"):
        table.add_column(column)
    table.add_row(
        f"Harper {HARPER_VERSION}",
        "running" if running["harper"] else "stopped",
        str(s.harper.pid() or "-"),
        s.harper.url,
    )
    table.add_row(
        "BigQuery emulator",
        "running" if running["emulator"] else "stopped",
        str(s.emulator.pid or "-"),
        f"{s.emulator.endpoint} (gRPC {s.emulator.grpc_endpoint})",
    )
    console.print(table)


@app.command()
def up() -> None:
    """Install Harper if missing, start both services (or reuse running ones), print endpoints."""
    from harperbq.devstack import stack

    try:
        with console.status("starting Harper and the BigQuery emulator…"):
            s = stack.up()
    except DevStackError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    _render(s, s.running())
    console.print(
        f"Credentials (0600): {stack.env_path()}\n"
        f"Connect: set -a; . {stack.env_path()}; set +a   "
        '# then e.g. curl -u "$HARPER_USERNAME:$HARPER_PASSWORD" "$HARPER_URL" '
        "-H 'content-type: application/json' -d '{\"operation\":\"describe_all\"}'"
    )


@app.command()
def down() -> None:
    """Stop the processes `dev up` started (by recorded pid; nothing else is touched)."""
    from harperbq.devstack import stack

    stopped = stack.down()
    console.print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show what runs."""
    from harperbq.devstack import stack

    s = stack.load()
    if s is None:
        if as_json:
            typer.echo(json.dumps({"harper": False, "emulator": False}))
        else:
            console.print("the local stack has never been started here (harperbq dev up)")
        return
    running = s.running()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "harper": {
                        "running": running["harper"],
                        "url": s.harper.url,
                        "pid": s.harper.pid(),
                    },
                    "emulator": {
                        "running": running["emulator"],
                        "endpoint": s.emulator.endpoint,
                        "pid": s.emulator.pid,
                    },
                }
            )
        )
    else:
        _render(s, running)
