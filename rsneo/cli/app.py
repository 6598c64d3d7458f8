"""The `rsneo` Typer application; command groups register themselves on `app` in sibling modules.

Only typer and the standard library are imported here: `rsneo --help` must not pay for torch or GDAL.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from rsneo.errors import RSNeoError

app = typer.Typer(
    name="rsneo",
    help="Native vision-language models for Earth observation: segment, detect change, ask, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
DEBUG_FLAG = "--debug"
DEBUG_ENV = "RSNEO_DEBUG"
# Warnings this command has shown: the input check and the work report in separate spans (the check's before
# the model loads), and a warning both meet (pixel units) is shown once.
_SHOWN: set[str] = set()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option(DEBUG_FLAG, help=f"Show tracebacks (also {DEBUG_ENV}=1); anywhere on the line.")
    ] = False,
) -> None:
    """Native vision-language models for Earth observation: segment, detect change, ask, train."""
    _SHOWN.clear()  # a new command (run_app runs several in one process in tests and notebooks)


class _Stderr:
    """A lazily made rich console on stderr (rich costs start-up time; most commands never print to it)."""

    _console = None

    def print(self, *args, **kwargs) -> None:
        if _Stderr._console is None:
            from rich.console import Console

            _Stderr._console = Console(stderr=True)
        _Stderr._console.print(*args, **kwargs)


err_console = _Stderr()


@contextlib.contextmanager
def reported_warnings(collected: list[str] | None = None) -> Iterator[list[str]]:
    """Show rsneo's warnings meant for the user (pixel units, ...) once each per command, one line on stderr,
    in every command alike (stdout stays clean for --json). Each message shown is also appended to
    `collected` (yielded), for the command's JSON document."""
    import warnings

    collected = [] if collected is None else collected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield collected
        finally:
            shown = [w.message for w in caught if "rsneo" in w.filename or _is_rsneo_warning(w.category)]
            for message in dict.fromkeys(str(m) for m in shown if str(m) not in _SHOWN):
                _SHOWN.add(message)
                collected.append(message)
                err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


PROGRESS_ENV = "RSNEO_PROGRESS"  # "json": progress as JSON lines on stderr (the QGIS plugin reads them)


def progress_event(stage: str, done: int, total: int, **extra: object) -> None:
    """One line of the machine-readable progress stream (`RSNEO_PROGRESS=json`), on stderr: {"stage", "done",
    "total", ...}; nothing otherwise. The engine writes the same lines for its windows."""
    if os.environ.get(PROGRESS_ENV, "") != "json":
        return
    import json

    print(json.dumps({"stage": stage, "done": done, "total": total, **extra}), file=sys.stderr, flush=True)


def _is_rsneo_warning(category: type) -> bool:
    from rsneo.errors import RSNeoWarning

    return issubclass(category, RSNeoWarning)


def check_output_folder(folder: Path) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be written; nothing is created.

    The probe is a temporary file in the folder, or in its nearest existing parent when it is yet to be made.
    """
    import tempfile

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RSNeoError(f"{folder}: expected a folder to write into, found a file")
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RSNeoError(f"{folder}: expected a folder to write into, but {parent} is a file")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise RSNeoError(
            f"{folder}: expected a folder rsneo can write to; {parent} refuses ({exc.strerror or exc})"
        ) from None


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """`argv` without `--debug` (accepted anywhere before a bare `--`), and whether tracebacks are wanted."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = DEBUG_FLAG in argv[:end] or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    return [a for i, a in enumerate(argv) if i >= end or a != DEBUG_FLAG], debug


def _usage_message(exc: Exception) -> str:
    """One message for a command-line mistake: what was wrong, "did you mean" where it fits, where help is."""
    message = exc.message if hasattr(exc, "message") else str(exc)
    possibilities = sorted(getattr(exc, "possibilities", None) or [])
    if possibilities:  # a misspelt option: click lists the close matches
        message = f"{message.rstrip('.')}; did you mean {' or '.join(possibilities)}?"
    else:
        message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f"\nSee '{ctx.command_path} --help'."
    return message


def _is_click_error(exc: BaseException) -> bool:
    """A usage error raised by typer's bundled click (typer >= 0.17) or by click itself (older typer)."""
    kinds: list[type] = [typer.TyperException]
    if "click" in sys.modules:
        kinds.append(sys.modules["click"].exceptions.ClickException)
    return isinstance(exc, tuple(kinds)) and hasattr(exc, "format_message")


def _is_exit(exc: BaseException) -> bool:
    """typer's Exit, or the Exit of click when an older typer re-exports click's."""
    return isinstance(exc, typer.Exit) or (
        "click" in sys.modules and isinstance(exc, sys.modules["click"].exceptions.Exit)
    )


def _is_gdal_error(exc: BaseException) -> bool:
    return "rasterio" in sys.modules and isinstance(exc, sys.modules["rasterio"].errors.RasterioError)


def _is_out_of_space(exc: BaseException) -> bool:
    """The disk (or the user's quota) filled up: an OSError from Python, or GDAL's message from rasterio."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return _is_gdal_error(exc) and "No space left on device" in str(exc)


def _out_of_space_message(exc: BaseException) -> str:
    where = getattr(exc, "filename", None)
    return (
        f"no space left on the device{f' while writing {where}' if where else ''}; free some space and run "
        "the same command again: segment and change keep their partial files and resume from the last "
        "finished row, other commands start over"
    )


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status.

    A user mistake (a bad command line, a file that cannot be used) prints one message and returns 2; an
    internal failure prints one line and returns 1. Tracebacks only with `--debug` or RSNEO_DEBUG=1.
    """
    args, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=args, prog_name="rsneo", standalone_mode=False)
    except RSNeoError as exc:
        if debug:
            raise
        # escaped: messages quote user input and choices in brackets, which rich would take for markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("interrupted")
        return 130
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as exc:
        if _is_exit(exc):
            return exc.exit_code
        if _is_click_error(exc):
            if debug:
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # `rsneo` alone: the help (rich printed it already)
                if exc.format_message().strip():
                    print(exc.format_message(), file=sys.stderr)
                return 2
            err_console.print(f"[bold red]error:[/] {_usage_message(exc)}", highlight=False, soft_wrap=True)
            return exc.exit_code if exc.exit_code != 1 else 2
        if debug:
            raise
        if _is_out_of_space(exc):
            err_console.print(
                f"[bold red]error:[/] {escape(_out_of_space_message(exc))}", highlight=False, soft_wrap=True
            )
            return 2
        if _is_gdal_error(exc):  # a raster that failed past the opening checks (a corrupt block mid-file)
            from rsneo.io.read import gdal_message

            err_console.print(
                f"[bold red]error:[/] cannot read or write a raster; a file may be corrupt or truncated "
                f"(GDAL: {gdal_message(exc)})",
                highlight=False,
                soft_wrap=True,
            )
            return 2
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            f"This is a bug in rsneo, not in your input; run again with {DEBUG_FLAG} for the traceback.",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    # typer >= 0.16 returns an Exit's status instead of raising it when not standalone; Ctrl-C is Exit(130)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        if code == 130:
            err_console.print("interrupted")
        return code
    return 0


def main() -> None:
    status = run_app()
    # Python's last garbage collection at exit walks every object torch and the model made: 0.5-1.0 s CPU of a
    # 4-5 s `rsneo change` on a 256^2 pair. It skips frozen objects; the OS frees the memory anyway, and the
    # commands have closed and renamed their outputs by now (atexit handlers and flushes still run).
    gc.freeze()
    sys.exit(status)
