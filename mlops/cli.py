"""The ``mlops`` command line: the main job, the registry server, and the review flow."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mlops",
    help="From versioned data to production through one gated flow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.command()
def quickstart(
    workdir: str = typer.Option(
        None, help="Where to build the throwaway workspace (default: a temporary folder)."
    ),
) -> None:
    """Run the main job end to end on embedded defaults."""
    from mlops.quickstart import run_quickstart

    raise typer.Exit(run_quickstart(workdir=workdir))


def main() -> None:
    """Console-script entry point."""
    app()
