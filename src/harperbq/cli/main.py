"""The `harperbq` command and its `maritime-data-synthesizer` alias."""

import sys

import typer

from harperbq import __version__
from harperbq.cli import dev

app = typer.Typer(
    name="harperbq",
    help="Keep Harper tables in step with BigQuery; synthesize AIS traffic to test it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dev.app, name="dev")

synth_app = typer.Typer(
    name="synth",
    help="The maritime (AIS) data synthesizer: fills BigQuery with reproducible vessel traffic.",
    no_args_is_help=True,
)
app.add_typer(synth_app, name="synth")


@synth_app.callback()
def _synth() -> None:
    """The maritime (AIS) data synthesizer."""


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
