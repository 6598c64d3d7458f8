"""Part 4 of `benchmarks/gpu_check.py`: a short run of the LEVIR-CD fine-tuning recipe (`finetune_levircd`:
LoRA on the backbone, 256 px chips in batches of 16, bf16-mixed) on pairs made here, to measure what the
full recipe's hours rest on: seconds per step, chips per second and peak memory on the device.

The pairs are synthetic (a textured background, bright squares that appear in the second date, their mask as
the label): the part measures speed, not accuracy, and needs no dataset on the machine. `dry_run` runs the
same code on the CPU with 64 px chips, batches of 2 and two steps (what CI can check).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def synthetic_pairs(root: Path, pairs: int, size: int, seed: int = 0) -> Path:
    """`pairs` RGB PNG pairs in the change layout (A/ B/ label/): B is A plus bright squares, labelled 255."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        before = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
        after, label = before.copy(), np.zeros((size, size), np.uint8)
        for _ in range(6):
            side = int(rng.integers(size // 16, size // 6))
            row, col = rng.integers(0, size - side, 2)
            after[row : row + side, col : col + side] = rng.integers(180, 250, 3)
            label[row : row + side, col : col + side] = 255
        for folder, pixels in (("A", before), ("B", after), ("label", label)):
            Image.fromarray(pixels).save(root / folder / f"pair_{i}.png")
    return root


def gpu_check(device: str, dry_run: bool) -> Iterator[dict]:
    """One row per run: the recipe's settings, steps, seconds per step, chips per second, peak MiB."""
    import torch

    from rsneo.train.config import load_config
    from rsneo.train.finetune import finetune

    cuda = device.startswith("cuda") and torch.cuda.is_available() and not dry_run
    tile, batch, steps = (256, 16, 20) if cuda else (64, 2, 2)
    with tempfile.TemporaryDirectory(prefix="rsneo-gpu-check-") as scratch:
        root = synthetic_pairs(Path(scratch) / "pairs", 8, 256 if cuda else 128)
        overrides = [
            "experiment=finetune_levircd" if cuda else "experiment=finetune_change",
            f"data.root={root}", f"out_dir={Path(scratch) / 'run'}",
            f"finetune.out={Path(scratch) / 'model'}",
            f"data.tile={tile}", f"data.batch_size={batch}", f"finetune.steps_per_epoch={steps}",
            "finetune.max_epochs=1", "finetune.val=blocks", "finetune.val_block=64", "finetune.train=lora",
            "trainer.progress_bar=false",
        ]  # fmt: skip
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = finetune(load_config(overrides))
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    precision = "bf16-mixed" if cuda else "CPU fp32 (dry run)"
    yield {
        "what": f"change, LoRA, {tile} px chips x {batch}, {precision}",
        "steps": steps, "s_per_step": round(seconds / steps, 3),
        "chips_per_s": round(steps * batch / seconds, 1),
        "peak_MiB": None if peak is None else round(peak), "val_f1": round(result.scores["f1"], 3),
        "note": "wall time includes reading the pairs, validation and writing the model folder",
    }  # fmt: skip
