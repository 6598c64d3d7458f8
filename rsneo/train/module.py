"""The Lightning module: one backbone, the run's objectives, stage freezing, optimizer and schedule.

A step: hide band groups of the batch's images, run the backbone once on the masked batch, and sum the
weighted losses (masked band-group reconstruction on image tokens, language modelling on text with
labels, label-as-text segmentation where masks exist, the change head on simulated change pairs). Every
random choice of a step comes from a generator seeded by (seed, global step, rank), so a resumed run draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from rsneo.train.batch import TrainBatch
from rsneo.train.change import change_batch, change_loss
from rsneo.train.checkpoint import RSNEO_KEY, tokenizer_files
from rsneo.train.config import run_config as config_of_run
from rsneo.train.freezing import apply_stage
from rsneo.train.masking import BandDecoder, apply_mask, choose_mask, image_token_slots, masked_band_loss
from rsneo.train.objectives import backbone_forward, language_model_loss, segmentation_loss
from rsneo.train.scale import compile_layers, enable_activation_checkpointing
from rsneo.train.schedule import build_optimizer


class RSNeoTraining(L.LightningModule):
    """Trains `model` (an `RSNeoForCausalLM`) with the objectives of `run_config` (a composed config or a dict
    of its keys)."""

    def __init__(
        self,
        model: nn.Module,
        run_config: dict[str, Any],
        tokenizer: Any,
        seg_head: nn.Module | None = None,
        change_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        run_config = config_of_run(run_config)  # every key of the schema, plain types (saved in checkpoints)
        self.model = model
        self.run_config = run_config
        self.tokenizer = tokenizer
        objectives = run_config["objectives"]
        self.weights = {name: float(spec["weight"]) for name, spec in objectives.items()}
        self.mask_ratio = float(objectives["masked_bands"]["mask_ratio"])
        self.band_decoder = (
            BandDecoder(model.config.hidden_size, model.config.token_size)
            if self.weights["masked_bands"] > 0
            else None
        )
        self.seg_head = seg_head if self.weights.get("segmentation", 0) > 0 else None
        self.change_head = change_head if self.weights.get("change", 0) > 0 else None
        # several simulated pairs per source and step: pairs are cheap (two small frames, no text)
        self.change_pairs = int(objectives["change"]["pairs_per_source"])
        # the class words the segmentation objective saw, in order (export's vocabulary.json)
        self.segmentation_classes: dict[str, None] = {}
        stage = run_config["stage"]
        apply_stage(model, stage["trainable"])
        if run_config["model"]["activation_checkpointing"]:
            enable_activation_checkpointing(model)
        if run_config["model"]["compile"] and torch.cuda.is_available():
            compile_layers(model)

    # ---- one step ---------------------------------------------------------------------------------------
    def step_generator(self) -> torch.Generator:
        seed = int(self.run_config["seed"]) * 1_000_003 + self.global_step * 101 + self.global_rank
        return torch.Generator().manual_seed(seed)

    def losses(self, batch: TrainBatch, generator: torch.Generator) -> dict[str, Tensor]:
        """The unweighted losses of the objectives that apply to `batch`."""
        inputs = batch.inputs
        context_id = self.model.config.img_context_token_id
        use_masking = self.band_decoder is not None and len(inputs.images) > 0
        mask = choose_mask(inputs, context_id, self.mask_ratio, generator) if use_masking else None
        seen = apply_mask(inputs, mask) if mask is not None else inputs
        hidden = backbone_forward(self.model, seen)  # (batch, tokens, hidden)
        out: dict[str, Tensor] = {}
        if mask is not None and mask.num_hidden > 0:
            slots = image_token_slots(inputs, context_id)
            out["masked_bands"] = masked_band_loss(hidden, inputs.images, mask, slots, self.band_decoder)
        if self.weights.get("lm", 0) > 0 and inputs.labels is not None and bool((inputs.labels >= 0).any()):
            out["lm"] = language_model_loss(self.model.lm_head, hidden, inputs.labels)
        if self.seg_head is not None and batch.segmentation is not None:
            self.segmentation_classes.update(dict.fromkeys(batch.segmentation.class_names))
            out["segmentation"] = segmentation_loss(
                self.seg_head, self.model, self.tokenizer, batch.segmentation, generator
            )
        if self.change_head is not None and batch.change:
            pairs = change_batch(list(batch.change) * self.change_pairs, generator, self.model.config)
            if pairs is not None:
                out["change"] = change_loss(self.change_head, self.model, pairs.to(self.device))
        return out

    def weighted_total(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(
            (self.weights[name] * value for name, value in losses.items()),
            torch.zeros((), device=self.device),
        )

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        losses = self.losses(batch, self.step_generator())
        total = self.weighted_total(losses)
        if self._trainer is not None and self.trainer.world_size > 1:
            # Every trainable parameter joins the graph (with weight 0), so that under DDP every rank reduces
            # the same gradients even when its batch has no chip for the head or no radar band.
            total = total + sum(p.sum() * 0.0 for p in self.parameters() if p.requires_grad)
        size = batch.inputs.input_ids.shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}_loss", value.detach(), batch_size=size)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=size)
        return total

    def validation_step(self, batch: TrainBatch, batch_idx: int) -> None:
        """Held-out loss: the same objectives with the same draws (masks, simulated pairs) at every
        validation, so the curve moves only with the weights; averaged over the validation batches."""
        seed = int(self.run_config["seed"]) * 1_000_003 + 7919 * (batch_idx + 1) + self.global_rank
        losses = self.losses(batch, torch.Generator().manual_seed(seed))
        size = batch.inputs.input_ids.shape[0]
        for name, value in losses.items():
            self.log(f"val/{name}_loss", value, batch_size=size, sync_dist=True)
        self.log("val/loss", self.weighted_total(losses), batch_size=size, sync_dist=True)

    # ---- optimisation -----------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        stage = self.run_config["stage"]
        optimizer, scheduler = build_optimizer(
            self,
            lr=float(stage["lr"]),
            weight_decay=float(stage["weight_decay"]),
            betas=tuple(stage["betas"]),
            warmup_steps=int(stage["warmup_steps"]),
            total_steps=int(self.run_config["trainer"]["max_steps"]),
            min_lr_ratio=float(stage["min_lr_ratio"]),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- checkpoints: plain types only (see rsneo.train.checkpoint) -------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RSNEO_KEY] = {
            "run_config": self.run_config,
            "model_config": self.model.config.to_dict(),
            "tokenizer_files": tokenizer_files(self.tokenizer),
            "seg_head_config": self.seg_head.to_json() if self.seg_head is not None else None,
            "change_head_config": self.change_head.to_json() if self.change_head is not None else None,
            "segmentation_classes": list(self.segmentation_classes),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(RSNEO_KEY) or {}
        self.segmentation_classes.update(dict.fromkeys(meta.get("segmentation_classes") or ()))
