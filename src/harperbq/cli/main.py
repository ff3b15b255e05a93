"""The `harperbq` command and its `maritime-data-synthesizer` alias."""

import sys

import typer

from harperbq import __version__
from harperbq.cli import config as config_cli
from harperbq.cli import dev
from harperbq.cli import sync as sync_cli
from harperbq.cli.demo import demo
from harperbq.cli.synth import app as synth_app

app = typer.Typer(
    name="harperbq",
    help="Keep Harper tables in step with BigQuery; synthesize AIS traffic to test it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dev.app, name="dev")
app.add_typer(config_cli.app, name="config")
app.add_typer(sync_cli.app, name="sync")
app.command(name="demo")(demo)

app.add_typer(synth_app, name="synth")


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    app()


def synth_alias() -> None:
    """`maritime-data-synthesizer ARGS` == `harperbq synth ARGS`, for migrating users."""
    sys.argv = [sys.argv[0], "synth", *sys.argv[1:]]
    app(prog_name="maritime-data-synthesizer")
