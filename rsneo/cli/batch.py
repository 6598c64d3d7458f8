"""Runs of many inputs: each item checked and run on its own, a bad one reported and skipped, a summary table
(CSV) over the rest, and the exit status 2 at the end when any failed, with the list.

Each item writes into its own output subfolder, so each resumes on its own when the run is started again.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import typer
from rich.markup import escape

from rsneo.cli.app import err_console, progress_event
from rsneo.cli.inputs import Item
from rsneo.errors import RSNeoError

T = TypeVar("T")


@dataclass
class Batch(Generic[T]):
    """The items of one command and what became of each: a result, or the error that skipped it."""

    items: list[Item]
    results: dict[str, T] = field(default_factory=dict)  # item name -> result
    errors: dict[str, str] = field(default_factory=dict)  # item name -> message

    @property
    def several(self) -> bool:
        return len(self.items) > 1

    def each(self, work: Callable[[Item], T], stage: str) -> None:
        """Run `work` on every item not failed yet; of several, a user error (or a raster GDAL cannot read)
        fails that item only: reported on stderr at once, the others go on. A single input's error is the
        command's (one message, exit 2, as ever)."""
        pending = [item for item in self.items if item.name not in self.errors]
        for index, item in enumerate(pending):
            progress_event(stage, index, len(pending), item=item.name)
            try:
                self.results[item.name] = work(item)
            except RSNeoError as exc:
                if not self.several:
                    raise
                self.fail(item, str(exc))
            except Exception as exc:
                if not (self.several and _is_raster_error(exc)):
                    raise
                self.fail(item, f"cannot read it as a raster ({' '.join(str(exc).split())})")
        progress_event(stage, len(pending), len(pending))

    def fail(self, item: Item, message: str) -> None:
        self.errors[item.name] = message
        self.results.pop(item.name, None)
        prefix = "" if item.source in message else f"{item.source}: "
        err_console.print(f"[bold red]error:[/] {escape(prefix + message)}", highlight=False, soft_wrap=True)

    @property
    def done(self) -> list[tuple[Item, T]]:
        return [(item, self.results[item.name]) for item in self.items if item.name in self.results]

    def failures(self) -> list[dict[str, str]]:
        failed = [i for i in self.items if i.name in self.errors]
        return [{"input": i.source, "error": self.errors[i.name]} for i in failed]

    def finish(self) -> None:
        """Exit 2 with the list of failed inputs when any failed (after everything else was written)."""
        if not self.errors:
            return
        failed = [i.source for i in self.items if i.name in self.errors]
        err_console.print(
            f"[bold red]error:[/] {len(failed)} of {len(self.items)} inputs failed and were skipped: "
            f"{escape(', '.join(failed))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)


def item_folder(out: Path, item: Item, several: bool) -> Path:
    """Where an item writes: `out` itself for a single input, `out/<name>` for each of several."""
    return Path(out) / item.name if several else Path(out)


def write_summary(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """The summary table of a run of several inputs (CSV, written atomically)."""
    from rsneo import atomic

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, buffer.getvalue())
    return path


def _is_raster_error(exc: BaseException) -> bool:
    return "rasterio" in sys.modules and isinstance(exc, sys.modules["rasterio"].errors.RasterioError)
