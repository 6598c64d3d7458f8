"""Proof that training learns: a small model on Sen1Floods11, validation water IoU next to MNDWI baselines.

The chip is split spatially: tiles of the left half train, tiles of the right half validate. The model
trains with all objectives (label-as-text segmentation on "land"/"water", masked band groups,
water-share sentences) through `rsneo train` (the same code path as the CLI), then segments the
validation tiles. Baselines on the same pixels: MNDWI > 0 (Xu 2006) and MNDWI above Otsu's threshold.
Prints a table and writes the run's metrics.csv and loss_curve.png under --out.

    .venv/bin/python benchmarks/learning.py                    # about 1 CPU min, one thread
    .venv/bin/python benchmarks/learning.py --steps 40         # a quick look
    .venv/bin/python benchmarks/learning.py --throughput       # tokens/s (and MFU on a GPU) for --preset
    .venv/bin/python benchmarks/learning.py --band-groups fold # all bands of a frame in one group
    .venv/bin/python benchmarks/learning.py --spectral channels  # the legacy S-channel layout (vs phase-all)
    .venv/bin/python benchmarks/learning.py --scene-cost --preset demo   # tokens, forward time per grouping
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np


def water_baselines(s2_path: Path, chips) -> dict[str, float]:
    """MNDWI water IoU over the validation chips' labelled pixels (threshold 0 and Otsu)."""
    import rasterio

    from rsneo.baselines import mndwi, otsu_threshold
    from rsneo.train.evaluate import class_iou

    with rasterio.open(s2_path) as src:  # 13 bands B1..B12 with B8A after B8: green = 3, swir16 = 12
        green, swir = src.read(3).astype(np.float64), src.read(12).astype(np.float64)
    index = mndwi(green, swir)
    size = chips[0].labels.shape[0]
    windows = [index[r : r + size, c : c + size] for r, c in (chip.origin for chip in chips)]
    labelled = np.concatenate([w[chip.labels.numpy() >= 0] for w, chip in zip(windows, chips, strict=True)])
    cut = otsu_threshold(labelled)
    return {
        "MNDWI > 0": class_iou([(w > 0).astype(int) for w in windows], chips, 1),
        f"MNDWI > Otsu ({cut:.3f})": class_iou([(w > cut).astype(int) for w in windows], chips, 1),
    }


SPECTRAL = ("phase-all", "phase-t", "phase-hw", "phase-none")


def spectral_overrides(choice: str, unit: float = 1.0) -> str:
    """`model.overrides` for an S-axis layout: the phase on all / T / H+W rotary pairs (or none)."""
    pairs = choice.removeprefix("phase-")
    return f"{{spectral_layout:phase,spectral_pairs:{pairs},spectral_unit:{unit}}}"


def learning(args: argparse.Namespace) -> None:
    import torch

    from rsneo.data.documents import DocumentBuilder
    from rsneo.model.positions import ImageTokens
    from rsneo.train.callbacks import read_metrics
    from rsneo.train.config import load_config
    from rsneo.train.corpus import sen1floods11
    from rsneo.train.datamodule import apply_band_groups
    from rsneo.train.evaluate import class_iou, predict_chips
    from rsneo.train.run import train

    overrides = [
        f"model={args.preset}", "data=sen1floods11", "data.split=train", f"data.tile={args.tile}",
        f"data.batch_size={args.batch_size}", "stage=stage2", f"stage.lr={args.lr}", "stage.warmup_steps=20",
        "objectives=all", f"trainer.max_steps={args.steps}", f"trainer.checkpoint_every_n_steps={args.steps}",
        "trainer.progress_bar=true", f"out_dir={args.out}", f"seed={args.seed}", "name=learning",
        f"data.band_groups={args.band_groups}", f"trainer.threads={args.threads}",
        f"+model.overrides={spectral_overrides(args.spectral, args.spectral_unit)}",
    ]  # fmt: skip
    if args.data_root:
        overrides.append(f"data_root={args.data_root}")
    cfg = load_config(overrides)
    started, cpu = time.perf_counter(), time.process_time()
    run = train(cfg)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    module = run.module
    root = run.datamodule.root
    builder = lambda: DocumentBuilder(run.tokenizer, ImageTokens.of(module.model.config))  # noqa: E731
    tokens = ImageTokens.of(module.model.config)
    val = sen1floods11(root, builder, args.tile, split="val")
    val_chips = [apply_band_groups(s, args.band_groups, tokens).chip for s in val]
    train_chips = [s.chip for s in run.datamodule.samples]
    predicted = predict_chips(module.model, module.seg_head, run.tokenizer, val_chips)
    scores = {"rsneo (trained, val half)": class_iou(predicted, val_chips, 1)}
    scores["rsneo (trained, train half)"] = class_iou(
        predict_chips(module.model, module.seg_head, run.tokenizer, train_chips), train_chips, 1
    )
    s2 = next((root / "sen1floods11" / "S2").glob("*_S2Hand.tif"))
    scores.update(water_baselines(s2, val_chips))
    params = sum(p.numel() for p in module.model.parameters())
    print(
        f"\nSen1Floods11 water IoU ({len(train_chips)} train tiles, "
        f"{len(val_chips)} val tiles of {args.tile} px)"
    )
    print(f"model {args.preset} ({params / 1e6:.2f}M parameters, S axis {args.spectral}, unit "
          f"{args.spectral_unit:g}), {args.steps} steps "
          f"in {seconds:.0f} s wall, {cpu:.0f} s CPU, {torch.get_num_threads()} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    trained = sum(len(s.document) for s in run.datamodule.samples)
    image = sum(s.document.ids.count(tokens.context) for s in run.datamodule.samples)
    rates = [v for _, v in read_metrics(run.out_dir / "metrics.csv").get("train/tokens_per_s", [])]
    print(
        f"band groups {args.band_groups}: {image / len(run.datamodule.samples):.0f} image tokens per "
        f"{args.tile} px tile ({trained / len(run.datamodule.samples):.0f} tokens per document); "
        f"{np.median(rates) if rates else float('nan'):,.0f} trained tokens/s (median of the logged rates)"
    )
    for name, value in scores.items():
        print(f"  {name:32s} {value:.3f}")
    print(f"loss curve: {run.out_dir / 'loss_curve.png'}; metrics: {run.out_dir / 'metrics.csv'}")


def throughput(args: argparse.Namespace) -> None:
    """Training tokens/s of `--preset` on a synthetic packed batch (bf16 on CUDA), and MFU on a GPU."""
    import torch
    from gpu_check import PEAK_TFLOPS

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    r = measure_throughput(args.preset, {}, args.steps, args.batch_size, args.tile, dtype)
    print(
        f"{args.preset}: {r['params'] / 1e9:.3f}B parameters "
        f"({r['non_embedding'] / 1e9:.3f}B non-embedding), "
        f"{r['tokens_per_step']} tokens/step, {r['ms_per_step']:.1f} ms/step"
    )
    print(
        f"  {r['tokens_per_s']:,.0f} tokens/s on {r['device']}, {r['flops_per_s'] / 1e12:.2f} model TFLOP/s"
    )
    peak = args.peak_tflops or PEAK_TFLOPS.get(r["device"])
    if peak and torch.cuda.is_available():
        print(
            f"  model FLOPs utilisation {r['flops_per_s'] / (peak * 1e12):.1%} of {peak} TFLOP/s "
            "(PaLM, dense peak)"
        )


def scene_cost(args: argparse.Namespace) -> None:
    """Image tokens and forward time of one real 512 x 512 Sentinel-2 scene (13 bands) per band grouping."""
    import torch

    from rsneo.data.frames import fold_groups, scene_frames
    from rsneo.io.scene import read_scene
    from rsneo.model.causal_lm import RSNeoForCausalLM
    from rsneo.model.config import RSNeoConfig
    from rsneo.model.positions import ImageTokens, pack_documents
    from rsneo.train.config import resolve_data_root

    root = resolve_data_root(args.data_root or "../shared/data")
    scene = read_scene(next((root / "sen1floods11" / "S2").glob("*_S2Hand.tif")))
    [frame] = scene_frames(scene)
    config = RSNeoConfig.from_preset(args.preset)
    model = RSNeoForCausalLM(config).eval()
    tokens = ImageTokens.of(config)
    size = f"{scene.sizes['y']} x {scene.sizes['x']}"
    threads = torch.get_num_threads()
    bands = scene.sizes["band"]
    print(f"one {size} Sentinel-2 scene, {bands} bands; model {args.preset}, best of 3 forward passes "
          f"on {threads} CPU threads")  # fmt: skip
    for mode, groups in (("sensor", frame.groups), ("fold", fold_groups(frame.groups))):
        n = sum(g.num_tokens for g in groups)
        ids = torch.tensor([tokens.start] + [tokens.context] * n + [tokens.end])
        inputs = pack_documents([[(ids, groups)]], config)
        times = []
        with torch.no_grad():
            for _ in range(3):
                started = time.perf_counter()
                model.backbone(inputs)
                times.append(time.perf_counter() - started)
        print(f"  {mode:6s} {len(groups)} group(s), {n:5d} image tokens, forward {min(times) * 1e3:7.1f} ms, "
              f"{n / min(times):,.0f} tokens/s")  # fmt: skip


def training_flops(model, inputs, targets: int) -> float:
    """Model FLOPs of one training step (forward + backward) after PaLM (Chowdhery et al. 2022, appendix B):
    6 x non-embedding parameters per token (decoder layers and final norm), the LM head's 6 x vocab x width
    per token with a target, and the attention term 6 x layers x heads x (q/k width + value width) per
    attended (query, key) pair of the packed mask (PaLM's T: the keys a query attends)."""
    from rsneo.model.masks import dense_mask

    config = model.config
    tokens = inputs.input_ids.numel()
    layers = sum(p.numel() for p in model.backbone.layers.parameters()) + model.backbone.norm.weight.numel()
    pairs = 0
    for row in range(inputs.doc_ids.shape[0]):
        doc, block = inputs.doc_ids[row : row + 1].cpu(), inputs.block_ids[row : row + 1].cpu()
        pairs += int(dense_mask(doc, block, doc, block).sum())
    attention = 6 * config.num_layers * config.num_heads * (config.qk_dim + config.head_dim) * pairs
    return 6 * layers * tokens + attention + 6 * config.vocab_size * config.hidden_size * targets


def measure_throughput(preset: str, overrides: dict, steps: int, batch_size: int, tile: int, dtype) -> dict:
    """Train `steps` optimizer steps of the preset (with config `overrides`) on one synthetic packed batch,
    autocast to `dtype` (fp32: none): tokens/s, ms/step, peak memory (CUDA) and model FLOP/s
    (`training_flops`)."""
    import torch

    from rsneo.model.causal_lm import RSNeoForCausalLM
    from rsneo.model.config import RSNeoConfig
    from rsneo.model.inputs import ImageInput
    from rsneo.model.positions import ImageTokens, pack_documents
    from rsneo.model.tokenizer import train_tokenizer
    from rsneo.train.objectives import language_model_loss, lm_targets

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    tokenizer = train_tokenizer(["a satellite image of water and land"], 300)
    config = RSNeoConfig.from_preset(preset, **overrides)
    model = RSNeoForCausalLM(config).to(device)
    params = sum(p.numel() for p in model.parameters())
    embedding = model.backbone.embed_tokens.weight.numel()
    embedding += 0 if config.tie_word_embeddings else model.lm_head.weight.numel()
    tokens = ImageTokens.of(config)
    grid = tile // 32
    rows = []
    for _ in range(batch_size):
        groups = [
            ImageInput(
                torch.randn(3, tile, tile), torch.tensor([0.665, 0.56, 0.49]), ("red", "green", "blue")
            ),
            ImageInput(torch.randn(2, tile, tile), torch.tensor([0.842, 1.61]), ("nir", "swir16")),
        ]
        text = tokenizer("a satellite image of water and land")["input_ids"] * 8
        ids = [tokens.start] + [tokens.context] * (2 * grid * grid) + [tokens.end] + text
        rows.append([(torch.tensor(ids), groups)])
    inputs = pack_documents(rows, config)
    target_rows, target_cols, targets = (t.to(device) for t in lm_targets(inputs.input_ids.roll(-1, 1)))
    flops = training_flops(model, inputs, int(targets.numel()))
    inputs = inputs.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=cuda)
    autocast = torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)
    n_tokens = int(inputs.input_ids.numel())

    def step() -> None:
        with autocast:
            hidden = model.backbone(inputs, check_inputs=False).last_hidden_state
            loss = language_model_loss(model.lm_head, hidden[target_rows, target_cols], targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - started) / steps
    return {
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)",
        "params": params,
        "non_embedding": params - embedding,
        "tokens_per_step": n_tokens,
        "ms_per_step": per_step * 1e3,
        "tokens_per_s": n_tokens / per_step,
        "flops_per_s": flops / per_step,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", help="model preset (tiny, demo, neo-2.2b, neo-9b)")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1, help="training's intra-op threads")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--band-groups", default="sensor", choices=["sensor", "fold"])
    parser.add_argument("--spectral", default="phase-all", choices=SPECTRAL, help="S-axis layout (see above)")
    parser.add_argument(
        "--spectral-unit", type=float, default=1.0, help="phase layout: S units per phase unit"
    )
    parser.add_argument("--scene-cost", action="store_true", help="tokens and forward time per band grouping")
    parser.add_argument("--throughput", action="store_true", help="measure training tokens/s instead")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="dense 16-bit peak (default: by name)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="rasterio")
    (scene_cost if args.scene_cost else throughput if args.throughput else learning)(args)


if __name__ == "__main__":
    main()
