"""The Lightning module: one backbone, the run's objectives, stage freezing, optimizer and schedule.

A step: the host plans it (`rsneo.train.step.plan_step`, in `on_before_batch_transfer`: band groups to
hide, text targets, simulated change pairs, every objective's rows packed into one input), the device runs
the backbone once over all of it and sums the weighted losses (masked band-group reconstruction on image
tokens, language modelling on text with labels, label-as-text segmentation where masks exist, the change
head on simulated change pairs) without reading a device value back (no host sync; Lightning reads the
logged losses every `log_every_n_steps`). Every random choice of a step comes from a generator seeded by
(seed, global step, rank), so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from rsneo.errors import InputError
from rsneo.heads.features import gather_features
from rsneo.train.batch import TrainBatch
from rsneo.train.checkpoint import RSNEO_KEY, tokenizer_files
from rsneo.train.config import run_config as config_of_run
from rsneo.train.freezing import apply_stage
from rsneo.train.masking import BandDecoder, masked_band_loss
from rsneo.train.objectives import language_model_loss
from rsneo.train.scale import (
    average_replicated_grads,
    clip_grad_norm,
    compile_layers,
    enable_activation_checkpointing,
    fsdp_options,
    is_sharded,
    shard_training_module,
)
from rsneo.train.schedule import build_optimizer
from rsneo.train.step import HeadTargets, StepBatch, plan_step


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

    def plan(self, batch: TrainBatch, generator: torch.Generator) -> StepBatch:
        """The host half of a step on `batch` (CPU tensors): see `rsneo.train.step.plan_step`."""
        if self.seg_head is not None and batch.segmentation is not None:
            self.segmentation_classes.update(dict.fromkeys(batch.segmentation.class_names))
        step = plan_step(
            batch,
            self.model.config,
            generator,
            mask_ratio=self.mask_ratio if self.band_decoder is not None else None,
            lm=self.weights.get("lm", 0) > 0,
            segmentation=self.seg_head.config if self.seg_head is not None else None,
            tokenizer=self.tokenizer,
            change_pairs=self.change_pairs if self.change_head is not None else 0,
            pad_id=int(getattr(self.tokenizer, "pad_token_id", None) or 0),
        )
        width, limit = step.inputs.input_ids.shape[1], int(self.run_config["model"]["max_tokens"])
        if width > limit:
            raise InputError(
                f"model.max_tokens: a training step packs rows of {width} tokens, more than the {limit} "
                "allowed; use smaller tiles or batches, or raise model.max_tokens (and model.flex_lengths "
                "with it)"
            )
        return step

    def step_losses(self, step: StepBatch) -> dict[str, Tensor]:
        """The device half: one backbone pass over the planned rows, every loss gathered at positions fixed
        by the plan (no value is read back from the device)."""
        heads = step.segmentation is not None or step.change is not None
        backend = getattr(self.model.config, "attn_backend", None) or "auto"
        if backend == "auto":  # the plan knows whether flash could apply: no test of the ids on the device
            backend = "auto" if step.flash else ("flex" if step.inputs.input_ids.is_cuda else "sdpa")
        out = self.model.backbone(
            step.inputs, output_hidden_states=heads, attn_backend=backend, check_inputs=False
        )
        last = out.last_hidden_state  # (rows, tokens, hidden), after the final norm
        losses: dict[str, Tensor] = {}
        if step.masked is not None:
            losses["masked_bands"] = masked_band_loss(last, step.masked, self.band_decoder)
        if step.lm is not None:
            rows, cols, targets = step.lm
            losses["lm"] = language_model_loss(self.model.lm_head, last[rows, cols], targets)
        if step.segmentation is not None:
            seg = step.segmentation
            features = self.head_features(out, seg, self.seg_head.config.early_layer)
            classes = last[seg.prompt_rows, seg.prompt_cols]  # (K, hidden) each prompt's last token
            losses["segmentation"] = self.seg_head.loss(self.seg_head(features, classes), seg.labels)
        if step.change is not None:
            features = self.head_features(out, step.change, self.change_head.config.early_layer)
            losses["change"] = self.change_head.loss(self.change_head(features, 0, 1), step.change.labels)
        return losses

    @staticmethod
    def head_features(out: Any, targets: HeadTargets, early_layer: int) -> Any:
        return gather_features(
            out.last_hidden_state, out.hidden_states[early_layer], targets.rows, targets.cols, targets.grid,
            targets.pixels, targets.wavelengths,
        )  # fmt: skip

    def losses(self, batch: TrainBatch, generator: torch.Generator) -> dict[str, Tensor]:
        """The unweighted losses of the objectives that apply to `batch` (planned here, on its device)."""
        return self.step_losses(self.plan(batch.to("cpu"), generator).to(self.device))

    def weighted_total(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(
            (self.weights[name] * value for name, value in losses.items()),
            torch.zeros((), device=self.device),
        )

    def plan_training_batch(self, batch: Any) -> Any:
        """A training batch planned on the host, before it moves to the device (called by the datamodule's
        `on_before_batch_transfer`, Lightning's hook for this, which the datamodule owns)."""
        if isinstance(batch, TrainBatch):
            return self.plan(batch, self.step_generator())
        return batch

    def training_step(self, batch: StepBatch | TrainBatch, batch_idx: int) -> Tensor:
        step = batch if isinstance(batch, StepBatch) else self.plan(batch.to("cpu"), self.step_generator())
        losses = self.step_losses(step.to(self.device))
        total = self.weighted_total(losses)
        if self._trainer is not None and self.trainer.world_size > 1 and not is_sharded(self):
            # Every trainable parameter joins the graph (with weight 0), so that under DDP every rank reduces
            # the same gradients even when its batch has no chip for the head or no radar band (FSDP gives
            # unused parameters zero gradients itself: `rsneo.train.scale`).
            total = total + sum(p.sum() * 0.0 for p in self.parameters() if p.requires_grad)
        for name, value in losses.items():
            self.log(f"train/{name}_loss", value.detach(), batch_size=step.size)
        # not on the progress bar: Lightning turns progress-bar values into numbers after every batch (a host
        # sync per step); the bar shows the loss when it is logged (`rsneo.train.callbacks`)
        self.log("train/loss", total.detach(), batch_size=step.size)
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

    # ---- sharding and optimisation -----------------------------------------------------------------------
    def configure_model(self) -> None:
        """Under FSDP (`trainer=fsdp`: Lightning's ModelParallelStrategy) shard the model and fill each rank's
        shard, from `model.init_from` or a fresh initialisation (`rsneo.train.scale`); otherwise nothing."""
        if self.device_mesh is None or is_sharded(self):
            return
        options = fsdp_options(self.run_config["trainer"]["fsdp"])
        shard_training_module(
            self, self.device_mesh["data_parallel"], self.trainer.strategy.root_device, "step_losses",
            self.run_config["model"]["init_from"], options["reshard_after_forward"], options["cpu_offload"],
        )  # fmt: skip

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        if is_sharded(self):  # the parameters FSDP keeps whole on every rank (0-d scalars of the heads)
            average_replicated_grads(self.parameters())

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """The norm over every gradient; under FSDP summed from each rank's shards (`clip_grad_norm`)."""
        if not gradient_clip_val:
            return
        if is_sharded(self):
            clip_grad_norm([p for p in self.parameters() if p.requires_grad], float(gradient_clip_val))
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

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
