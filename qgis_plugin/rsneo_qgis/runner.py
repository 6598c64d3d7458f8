"""Running the rsneo command line from QGIS: no QGIS import here, so the logic is testable anywhere.

The command runs in a subprocess of its own session with `--json` and `RSNEO_PROGRESS=json`: its stdout is one
JSON document describing what it wrote, its stderr carries progress as JSON lines ({"stage", "done", "total"})
and the messages a user reads. Cancelling kills the whole process group and removes every file and folder the
run created in its output folder, so a cancelled run leaves nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

COMMAND_ENV = "RSNEO_QGIS_COMMAND"  # overrides the provider setting (tests, qgis_process in scripts)
STAGE_WEIGHTS = {"check": 0.05, "download": 0.05}  # share of an item's progress before its windows


class Cancelled(Exception):
    """The user cancelled the run; the subprocess was stopped and its new files removed."""


class RsneoFailed(Exception):
    """rsneo exited with an error; the message is what it printed."""


def rsneo_command(setting: str | None) -> list[str]:
    """The command that starts rsneo: the env override, the provider setting (an `rsneo` executable, a
    Python interpreter of an environment with rsneo, or a whole command line), or `rsneo` on the PATH."""
    text = os.environ.get(COMMAND_ENV) or (setting or "").strip() or "rsneo"
    parts = shlex.split(text)
    first = Path(parts[0]).name
    if first.startswith("python") and len(parts) == 1:  # an environment's interpreter
        return [parts[0], "-m", "rsneo.cli"]
    return parts


class Progress:
    """Turns the progress lines of a run of `items` inputs into a percentage: each item's share is split
    between its check and its windows."""

    def __init__(self) -> None:
        self.items, self.item, self.windows = 1, 0, 0.0

    def update(self, event: dict) -> float | None:
        stage = event.get("stage")
        done, total = event.get("done", 0), max(event.get("total", 0), 1)
        if stage == "windows":
            self.windows = done / total
        elif stage in ("segment", "change", "ask"):
            self.items, self.item, self.windows = total, done, 0.0
        elif stage in STAGE_WEIGHTS:
            return 100.0 * STAGE_WEIGHTS[stage] * done / total
        else:
            return None
        base = STAGE_WEIGHTS["check"]
        share = (self.item + self.windows) / self.items
        return 100.0 * (base + (1 - base) * min(share, 1.0))


def run_rsneo(
    command: list[str],
    args: list[str],
    *,
    out_dir: Path | None = None,
    on_progress: Callable[[float], None] = lambda p: None,
    on_message: Callable[[str], None] = lambda m: None,
    is_cancelled: Callable[[], bool] = lambda: False,
    poll_s: float = 0.2,
) -> dict:
    """Run `command + args + ["--json"]`; return the JSON document it printed. Progress lines go to
    `on_progress` (percent), other stderr lines to `on_message`. `is_cancelled` is polled: when it turns
    true the process group is killed and whatever the run created in `out_dir` is removed (`Cancelled`).
    A non-zero exit is `RsneoFailed` with rsneo's own message."""
    before = set(out_dir.iterdir()) if out_dir is not None and out_dir.is_dir() else set()
    existed = out_dir is not None and out_dir.exists()
    env = {**os.environ, "RSNEO_PROGRESS": "json", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    messages: list[str] = []
    progress = Progress()

    def read_stderr() -> None:
        for line in process.stderr:
            line = line.rstrip("\n")
            event = _event(line)
            if event is not None:
                percent = progress.update(event)
                if percent is not None:
                    on_progress(percent)
            elif line.strip():
                messages.append(line)
                on_message(line)

    stdout: list[str] = []
    readers = [
        threading.Thread(target=read_stderr, daemon=True),
        threading.Thread(target=lambda: stdout.extend(process.stdout), daemon=True),
    ]
    for reader in readers:
        reader.start()
    while process.poll() is None:
        if is_cancelled():
            _stop(process)
            for reader in readers:
                reader.join(timeout=5)
            process.stdout.close()
            process.stderr.close()
            _remove_new(out_dir, before, existed)
            raise Cancelled("cancelled: rsneo was stopped and the files it had written were removed")
        time.sleep(poll_s)
    for reader in readers:
        reader.join(timeout=30)
    process.stdout.close()
    process.stderr.close()
    text = "".join(stdout)
    if process.returncode != 0 and not text.strip():
        errors = [m for m in messages if m.lstrip().startswith("error")] or messages[-3:]
        raise RsneoFailed("\n".join(errors) or f"rsneo exited with status {process.returncode}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        why = f"rsneo printed no JSON document (status {process.returncode}): {text[:500]}"
        raise RsneoFailed(why) from None
    document["exit_status"] = process.returncode
    return document


def _event(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "stage" in event else None


def _stop(process: subprocess.Popen) -> None:
    """Terminate the run's process group, then kill it if it has not ended within 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _remove_new(out_dir: Path | None, before: set[Path], existed: bool) -> None:
    """Remove what a stopped run created: the output folder itself when the run made it, else the entries
    that were not there before (partial files included)."""
    if out_dir is None or not out_dir.exists():
        return
    if not existed:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for entry in set(out_dir.iterdir()) - before:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
