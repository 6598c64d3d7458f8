"""The training step: one backbone pass serves every objective with the losses of separate passes, and the
device half of a step reads nothing back (no host sync)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode

from rsneo.heads.class_words import draw_class_names
from rsneo.heads.features import encode_class_prompts, image_features
from rsneo.train.change import build_change_head, change_batch
from rsneo.train.config import load_config
from rsneo.train.datamodule import RSNeoDataModule, collate
from rsneo.train.masking import apply_mask, choose_mask, image_token_slots, patchify
from rsneo.train.module import RSNeoTraining
from rsneo.train.run import build_segmentation_head
from rsneo.train.step import StepBatch

OBJECTIVES = {"masked_bands", "lm", "segmentation", "change"}


def all_objectives(model, tokenizer) -> RSNeoTraining:
    cfg = OmegaConf.to_container(load_config(["experiment=smoke", "stage=stage2"]), resolve=True)
    for name in OBJECTIVES:
        cfg["objectives"][name]["weight"] = 1.0
    return RSNeoTraining(
        model, cfg, tokenizer, build_segmentation_head(cfg, model), build_change_head(cfg, model)
    )


def separate_passes(module: RSNeoTraining, batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The step as it was before one pass: a backbone pass for the masked batch (reconstruction and LM), one
    for the chips, one for the class prompts, one for the change pairs; the generator drawn in the same
    order (masks, class names, then pairs)."""
    model, context = module.model, module.model.config.img_context_token_id
    inputs = batch.inputs
    mask = choose_mask(inputs, context, module.mask_ratio, generator)
    hidden = model.backbone(apply_mask(inputs, mask)).last_hidden_state
    total, count = torch.zeros(()), 0
    slots = image_token_slots(inputs, context)
    for image, grid, (row, col) in zip(inputs.images, mask.grids, slots, strict=True):
        hide = grid.reshape(-1)
        if hide.any():
            pred = module.band_decoder(hidden[row[hide], col[hide]], image.wavelengths)
            target = patchify(image.pixels, image.token_size)[hide]
            total = total + F.mse_loss(pred.float(), target.float(), reduction="sum")
            count += target.numel()
    targets = inputs.labels >= 0
    out = {
        "masked_bands": total / count,
        "lm": F.cross_entropy(model.lm_head(hidden[targets]).float(), inputs.labels[targets]),
    }
    seg, head = batch.segmentation, module.seg_head
    names = draw_class_names(list(seg.class_names), generator)
    classes = encode_class_prompts(model, module.tokenizer, names, head.config)
    logits = head(image_features(model, seg.inputs, head.config.early_layer), classes)
    out["segmentation"] = head.loss(logits, seg.labels)
    pairs = change_batch(list(batch.change) * module.change_pairs, generator, model.config)
    change = module.change_head
    features = image_features(model, pairs.inputs, change.config.early_layer, frames=2)
    out["change"] = change.loss(change(features, 0, 1), pairs.labels)
    return out


@pytest.fixture
def batch(flood_samples, image_tokens, tokenizer):
    """Four Sen1Floods11 samples: documents with text targets, labelled chips and change sources."""
    return collate(flood_samples[10:14], image_tokens, pad_id=tokenizer.pad_token_id)


def test_one_pass_gives_the_losses_of_separate_passes(tiny_model, tokenizer, batch):
    module = all_objectives(tiny_model, tokenizer)
    with torch.no_grad():
        expected = separate_passes(module, batch, torch.Generator().manual_seed(3))
        got = module.losses(batch, torch.Generator().manual_seed(3))
    assert set(got) == OBJECTIVES == set(expected)
    for name in OBJECTIVES:
        # the same states in another layout (other rows, padding, row widths): fp32 sums in another order,
        # about 1e-7 relative per operation over a few layers; a wrong token, row or mask moves a loss by
        # far more than 1e-4 of itself
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_lightning_plans_training_batches_on_the_host(tiny_model, tokenizer, batch):
    """The datamodule's `on_before_batch_transfer` (Lightning calls it before the transfer) hands training
    batches to the module's planner; validation batches pass as they are (their draws follow batch_idx)."""
    module = all_objectives(tiny_model, tokenizer)
    datamodule = RSNeoDataModule({}, Path("."), tokenizer, None, batches=1, seed=0, token_size=32)
    datamodule.trainer = SimpleNamespace(training=True, lightning_module=module)
    planned = datamodule.on_before_batch_transfer(batch, 0)
    assert (
        isinstance(planned, StepBatch) and planned.inputs.input_ids.shape[0] > batch.inputs.input_ids.shape[0]
    )
    assert isinstance(datamodule.transfer_batch_to_device(planned, torch.device("cpu"), 0), StepBatch)
    datamodule.trainer = SimpleNamespace(training=False, lightning_module=module)
    assert datamodule.on_before_batch_transfer(batch, 0) is batch


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_a_training_step_runs_the_backbone_once(tiny_model, tokenizer, batch):
    module = all_objectives(tiny_model, tokenizer)
    calls = []
    handle = module.model.backbone.register_forward_hook(lambda *args: calls.append(1))
    try:
        step = module.plan(batch, torch.Generator().manual_seed(0))
        assert {"masked_bands", "lm", "segmentation", "change"} == {
            name
            for name in OBJECTIVES
            if getattr(step, "masked" if name == "masked_bands" else name) is not None
        }
        module.training_step(step, 0).backward()
    finally:
        handle.remove()
    assert len(calls) == 1


def test_a_bf16_step_gives_finite_losses(tiny_model, tokenizer, batch):
    module = all_objectives(tiny_model, tokenizer).to(torch.bfloat16)
    losses = module.step_losses(module.plan(batch, torch.Generator().manual_seed(0)))
    assert set(losses) == OBJECTIVES
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(module.model.backbone.layers[0].mlp.up_proj.weight.grad.float()).all()


class HostReads(TorchDispatchMode):
    """Records the operators that hand a device value to the host: `_local_scalar_dense` (`.item()`,
    `int()`, `bool()` of a tensor), `nonzero` and other outputs whose shape depends on values, and indexing
    by a boolean mask (a `nonzero` inside the operator). On an accelerator each is a host sync."""

    DATA_DEPENDENT = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.unique")
    INDEXING = ("aten.index.", "aten.index_put", "aten._index_put_impl_")

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith(self.DATA_DEPENDENT):
            self.reads.append(name)
        elif name.startswith(self.INDEXING):
            indices = args[1] if len(args) > 1 else ()
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ()):
                self.reads.append(f"{name} by a boolean mask")
        return func(*args, **(kwargs or {}))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_the_device_half_of_a_step_reads_nothing_back(tiny_model, tokenizer, batch):
    module = all_objectives(tiny_model, tokenizer)
    step = module.plan(batch, torch.Generator().manual_seed(0))  # the host half, before the transfer
    assert isinstance(step, StepBatch)
    with HostReads() as recorder:
        loss = module.training_step(step, 0)
        loss.backward()
    assert recorder.reads == []
    # the recorder does see a sync where there is one
    with HostReads() as recorder:
        bool((batch.inputs.labels >= 0).any())
        batch.inputs.labels[batch.inputs.labels >= 0]
    assert len(recorder.reads) == 2


def test_moved_inputs_keep_the_wavelengths_on_the_host(batch):
    """The patch embedding picks kernels from the host copy: on an accelerator, reading the moved wavelengths
    back would be a host sync per band group and step. ('meta' stands in for a device: it holds no values.)"""
    moved = batch.inputs.to("meta")
    for before, after in zip(batch.inputs.images, moved.images, strict=True):
        assert after.wavelengths.is_meta and after.wavelengths_on_host.device.type == "cpu"
        assert torch.equal(after.wavelengths_on_host, before.wavelengths)
