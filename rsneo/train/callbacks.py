"""Run outputs beside the checkpoints: the loss-curve PNG written when a run ends; training tokens/s."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L
import torch

from rsneo.atomic import atomic_path


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
    with atomic_path(png, "partial.png") as tmp:  # savefig takes the format from the suffix
        fig.savefig(tmp)
    plt.close(fig)
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


def step_progress_bar(max_steps: int, every: int = 1) -> L.Callback:
    """A rich progress bar that counts optimizer steps of `max_steps` and shows the loss every `every` steps.

    The run is bounded by steps (max_epochs=-1, one endless stream), so Lightning's own bar reads "Epoch 0/-2"
    and counts batches; this one reads "step" and shows global_step / max_steps, also after a resume. The
    loss is read from the device only on the steps it is logged (`log_every_n_steps`): reading it every
    step would be a host sync per step.
    """
    from lightning.pytorch.callbacks import RichProgressBar

    every = max(1, every)

    class StepProgressBar(RichProgressBar):
        @property
        def total_train_batches(self) -> int:
            return max_steps

        def _get_train_description(self, current_epoch: int) -> str:
            return "step"

        def get_metrics(self, trainer, pl_module) -> dict:
            metrics = super().get_metrics(trainer, pl_module)
            loss = trainer.callback_metrics.get("train/loss")
            if loss is not None:
                metrics["loss"] = f"{float(loss):.4g}"
            return metrics

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if not self.is_disabled and self.train_progress_bar_id is None:
                self._initialize_train_progress_bar_id()
            self._update(self.train_progress_bar_id, trainer.global_step)
            if trainer.global_step % every == 0:
                self._update_metrics(trainer, pl_module)

    return StepProgressBar(leave=True)


class TokenThroughput(L.Callback):
    """Logs `train/tokens_per_s` (all ranks; padding excluded) every `every` optimizer steps: the tokens of
    the step's one backbone pass (training rows, and the chips, change pairs and class prompts with them).

    Tokens are counted on the batch's device, so a step holds no host sync for this: the count is read once
    per `every` steps, when it is logged. The rate covers the whole loop (data loading included).
    """

    def __init__(self, every: int) -> None:
        self.every = max(1, every)
        self.count: torch.Tensor | None = None
        self.started = 0.0
        self.logged_at = -1

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx):
        if self.count is None:
            self.count = torch.zeros((), dtype=torch.long, device=pl_module.device)
            self.started = time.perf_counter()
        self.count += (batch.inputs.doc_ids >= 0).sum()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        step = trainer.global_step
        if self.count is None or step % self.every or step == self.logged_at:
            return
        seconds = time.perf_counter() - self.started
        rate = float(self.count.item()) * trainer.world_size / max(seconds, 1e-9)
        pl_module.log("train/tokens_per_s", rate, on_step=True, on_epoch=False, batch_size=1)
        self.count, self.logged_at = None, step
