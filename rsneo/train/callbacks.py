"""Run outputs beside the checkpoints: the loss-curve PNG written when a run ends."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import lightning as L


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Columns of a Lightning `metrics.csv` as (step, value) series, empty cells skipped."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in ("", None):
                    continue
                series.setdefault(key, []).append((step, float(value)))
    return series


def plot_loss_curves(metrics_csv: Path, png: Path) -> Path:
    """Plot every `*loss*` column of `metrics_csv` against the step into `png` (temp file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: v for k, v in read_metrics(metrics_csv).items() if "loss" in k}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, points in sorted(series.items()):
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, label=key, marker="." if len(points) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log" if all(v > 0 for p in series.values() for _, v in p) and series else "linear")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    ax.set_title(metrics_csv.parent.name)
    fig.tight_layout()
    tmp = png.with_name(f".{png.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png)
    return png


class LossCurve(L.Callback):
    """Writes `loss_curve.png` from the CSV logger's `metrics.csv` when training ends (rank 0 only)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.save()  # flush buffered rows before reading them back
        metrics = self.out_dir / "metrics.csv"
        if metrics.is_file():
            plot_loss_curves(metrics, self.out_dir / "loss_curve.png")


def step_progress_bar(max_steps: int) -> L.Callback:
    """A rich progress bar that counts optimizer steps of `max_steps`.

    The run is bounded by steps (max_epochs=-1, one endless stream), so Lightning's own bar reads "Epoch 0/-2"
    and counts batches; this one reads "step" and shows global_step / max_steps, also after a resume.
    """
    from lightning.pytorch.callbacks import RichProgressBar

    class StepProgressBar(RichProgressBar):
        @property
        def total_train_batches(self) -> int:
            return max_steps

        def _get_train_description(self, current_epoch: int) -> str:
            return "step"

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if not self.is_disabled and self.train_progress_bar_id is None:
                self._initialize_train_progress_bar_id()
            self._update(self.train_progress_bar_id, trainer.global_step)
            self._update_metrics(trainer, pl_module)

    return StepProgressBar(leave=True)


def run_csv_logger(out_dir: Path, resuming: bool):
    """Lightning's CSV logger writing `out_dir/metrics.csv`, beside the run's other outputs.

    Lightning's writer warns when its folder is not empty and deletes `metrics.csv`; the run folder always
    holds config.yaml and the checkpoints, and a run resumed in place must keep the rows it already wrote.
    So: a fresh run starts a new file quietly; a resumed run keeps the rows before its first new step.
    """
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    class RunWriter(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:
            self._resumed = False
            if not self._fs.isfile(self.metrics_file_path):
                return
            if not resuming:
                self._fs.rm_file(self.metrics_file_path)
                return
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(csv.DictReader(file).fieldnames or [])
            self._resumed = True

        def save(self) -> None:
            if self._resumed and self.metrics:  # drop rows the resumed steps are about to write again
                first = min(int(m.get("step", 0)) for m in self.metrics)
                with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                    kept = [r for r in csv.DictReader(file) if int(float(r.get("step") or 0)) < first]
                with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                    writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                    writer.writeheader()
                    writer.writerows(kept)
                self._resumed = False
            super().save()

    class RunCSVLogger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self) -> ExperimentWriter:
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = RunWriter(log_dir=self.log_dir)
            return self._experiment

    return RunCSVLogger(save_dir=str(out_dir), name="", version="")
