"""`metrics.csv` that survives a resume: a resumed run appends to the history instead of deleting it.

Lightning's CSV logger deletes an existing `metrics.csv` (with a warning about its own folder) when it starts,
so a run resumed into its folder kept only the steps after the resume. `ResumableCSVLogger` keeps the file;
before its first write it drops the rows of steps this run is about to log again (a run killed after logging
past its last checkpoint repeats those steps), so every step appears once.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from rsneo.atomic import atomic_path


class _AppendingWriter(ExperimentWriter):
    """Lightning's metrics writer, minus the deletion of earlier history."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._trimmed = False

    def _check_log_dir_exists(self) -> None:
        """Keep what is there: the history of the run this one resumes."""

    def save(self) -> None:
        if self.metrics and not self._trimmed:
            self._trim_history(min(int(m["step"]) for m in self.metrics))
            self._trimmed = True
        super().save()

    def _trim_history(self, first_step: int) -> None:
        """Keep the rows of steps before `first_step`; adopt the file's columns so appends line up."""
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
        kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < first_step]
        self.metrics_keys = sorted(set(columns) | set(self.metrics_keys))
        with atomic_path(Path(self.metrics_file_path)) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose `metrics.csv` keeps the history of the run it resumes (each step once)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
