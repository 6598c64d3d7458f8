"""The Lightning module of `rsneo finetune`: the backbone (frozen or partly trained), one fine-tuned head, the
loss, and validation scores per epoch (torchmetrics plus boundary F1 and small-object recall).

A batch (`rsneo.train.finetune_data.chip_batch`) holds the model's inputs (one scene document per chip), the
labels and the chip's class names. The backbone runs once per batch; with the backbone frozen it runs without
gradients. Segmentation scores pixels against the class names' prompt vectors (label-as-text), so batches of
datasets with different class names train one head; each class list is scored apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from rsneo.heads.features import encode_class_prompts, image_features
from rsneo.train.checkpoint import RSNEO_KEY
from rsneo.train.finetune_backbone import backbone_trains
from rsneo.train.finetune_metrics import ShapeScores, metric_collection, per_class_collection
from rsneo.train.schedule import warmup_cosine

MONITOR = "val/f1"


def budget_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float, spent) -> float:
    """`warmup_cosine` at `step` or at the share `spent()` of a CPU budget already used, whichever is further:
    with a budget the decay ends when the budget does, wherever the epochs would have ended it. The warm-up
    runs its steps either way."""
    if step < warmup_steps:
        return warmup_cosine(step, warmup_steps, total_steps, min_ratio)
    fraction = float(spent()) if spent is not None else 0.0
    equivalent = warmup_steps + fraction * max(total_steps - warmup_steps, 0)
    return warmup_cosine(max(step, int(equivalent)), warmup_steps, total_steps, min_ratio)


class FinetuneModule(L.LightningModule):
    """Trains `head` ("change": (features, 0, last) -> (B, 2, H, W); "segment": (features, class vectors))
    on the features of `model`; `taxonomies` are the class lists of the data, each scored apart."""

    def __init__(
        self,
        model: nn.Module,
        head: nn.Module,
        tokenizer: Any,
        task: str,
        taxonomies: Sequence[tuple[str, ...]],
        settings: dict[str, Any],
        record: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.head, self.tokenizer, self.task = model, head, tokenizer, task
        self.taxonomies = [tuple(t) for t in taxonomies]
        self.settings = dict(settings)
        self.record = dict(record or {})  # plain types saved in every checkpoint (`rsneo` key)
        binary = task == "change"
        self.metrics = nn.ModuleList(metric_collection(len(t), binary) for t in self.taxonomies)
        # per class (vocabulary.json's scores): segmentation only
        self.per_class = nn.ModuleList(per_class_collection(len(t)) for t in self.taxonomies if not binary)
        self.shapes = [ShapeScores(len(t), binary) for t in self.taxonomies]
        self.scores: dict[str, float] = {}
        self.class_scores: dict[tuple[str, str], float] = {}  # (class name, "iou" | "f1") -> score
        self.best, self.best_epoch = float("-inf"), None  # the best validation F1 and its epoch
        self.spent: Callable[[], float] | None = None  # share of the CPU budget used (`CpuBudget.share`)
        self._class_vectors: dict[tuple[str, ...], Tensor] = {}

    # ---- forward --------------------------------------------------------------------------------------
    def class_vectors(self, names: tuple[str, ...]) -> Tensor:
        """(K, hidden) prompt vectors of `names`; cached while the backbone is frozen."""
        if backbone_trains(self.model):
            return encode_class_prompts(self.model, self.tokenizer, list(names), self.head.config)
        if names not in self._class_vectors:
            with torch.no_grad():
                self._class_vectors[names] = encode_class_prompts(
                    self.model, self.tokenizer, list(names), self.head.config
                )
        return self._class_vectors[names].to(self.device)

    def logits(self, batch: dict[str, Any]) -> Tensor:
        """(B, classes, H, W) logits of a batch; for change (no change, change)."""
        frames = int(batch["frames"])
        with torch.set_grad_enabled(torch.is_grad_enabled() and backbone_trains(self.model)):
            features = image_features(
                self.model, batch["inputs"], self.head.config.early_layer, frames=frames
            )
        if self.task == "change":
            return self.head(features, 0, frames - 1)
        return self.head(features, self.class_vectors(tuple(batch["classes"])))

    # ---- steps ----------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self.head.loss(self.logits(batch), batch["labels"])
        self.log("train/loss", loss.detach(), batch_size=batch["labels"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.logits(batch)
        self.log("val/loss", self.head.loss(logits, batch["labels"]), batch_size=batch["labels"].shape[0])
        self.score(logits, batch)

    def score(self, logits: Tensor, batch: dict[str, Any]) -> None:
        """Add a validation batch's decisions (argmax of `logits`) to its taxonomy's scores."""
        labels = batch["labels"]
        predicted = logits.argmax(1)
        k = self.taxonomies.index(tuple(batch["classes"]))
        self.metrics[k].update(predicted, labels)
        if self.per_class:
            self.per_class[k].update(predicted, labels)
        self.shapes[k].update(predicted.cpu().numpy()[0], labels.cpu().numpy()[0])

    def on_validation_epoch_start(self) -> None:
        self.shapes = [ShapeScores(len(t), self.task == "change") for t in self.taxonomies]

    def on_validation_epoch_end(self) -> None:
        """Log every score per taxonomy (`val/<k>/...` when several) and their mean as `val/...`."""
        per_taxonomy = []
        for k, (metrics, shapes) in enumerate(zip(self.metrics, self.shapes, strict=True)):
            scores = {name: float(value) for name, value in metrics.compute().items()}
            scores |= shapes.compute()
            per_taxonomy.append(scores)
            if len(self.taxonomies) > 1:
                self.scores |= {f"{k}/{name}": value for name, value in scores.items()}
            metrics.reset()
            if self.per_class:  # not logged: vocabulary.json records them
                for name, values in self.per_class[k].compute().items():
                    pairs = zip(self.taxonomies[k], values, strict=True)
                    self.class_scores |= {(c, name): float(v) for c, v in pairs}
                self.per_class[k].reset()
        for name in per_taxonomy[0]:
            self.scores[name] = float(torch.tensor([s[name] for s in per_taxonomy]).nanmean())
        self.log_dict({f"val/{name}": value for name, value in self.scores.items()})
        if (
            not self.trainer.sanity_checking
            and self.trainer.state.fn == "fit"
            and self.scores["f1"] > self.best
        ):
            self.best, self.best_epoch = self.scores["f1"], self.current_epoch

    def on_train_epoch_start(self) -> None:
        """The training chips of this epoch are drawn with its number (a resumed run draws the same)."""
        dataset = self.trainer.train_dataloader.dataset
        if hasattr(dataset, "epoch"):
            dataset.epoch = self.current_epoch

    # ---- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW: the head at `lr`, trainable backbone parameters at `backbone_lr`; warm-up, cosine decay."""
        s = self.settings
        head = [p for p in self.head.parameters() if p.requires_grad]
        backbone = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": float(s["lr"])}]
        if backbone:
            groups.append({"params": backbone, "lr": float(s["backbone_lr"])})
        optimizer = torch.optim.AdamW(groups, weight_decay=float(s["weight_decay"]))
        total = int(s["max_epochs"]) * int(s["steps_per_epoch"])
        factor = partial(budget_cosine, warmup_steps=int(s["warmup_steps"]), total_steps=total,
                         min_ratio=float(s["min_lr_ratio"]), spent=self.spent)  # fmt: skip
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- checkpoints: plain types only (rsneo.train.checkpoint) -----------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RSNEO_KEY] = self.record | {
            "head_config": self.head.to_json(), "task": self.task, "best": [self.best, self.best_epoch],
        }  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best, self.best_epoch = (checkpoint.get(RSNEO_KEY) or {}).get("best", [float("-inf"), None])
