"""The `rsneo` Typer application; command groups register themselves on `app` in sibling modules."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from rsneo.errors import RSNeoError

app = typer.Typer(
    name="rsneo",
    help="Native vision-language models for Earth observation: segment, detect change, ask, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one message and exit 2 (bad usage), never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except RSNeoError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return 2
        raise
    return 0


def main() -> None:
    sys.exit(run_app())
