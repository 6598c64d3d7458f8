"""Attention backends on packed image/text sequences: tokens/s and peak memory of Flex, SDPA and flash-attn.

Each (backend, length) runs in its own subprocess, so its peak memory is its own (CUDA: max allocated;
CPU: peak RSS growth). A row is packed with documents like the training mix: a Sentinel-2 scene of two
dates (RGB+NIR 256x256 -> 64 tokens, red edge and SWIR at 128x128 -> 16 tokens each, per frame) with a
caption, and text-only documents in between; or image-only rows (`--mixes image`). A stack of `--layers`
NativeAttention layers (default: the preset's depth) runs as a real forward does: the mask is built once
per step and shared by every layer; forward + backward on CUDA, forward only on CPU (Flex has no CPU
backward). `mask s` is the mask's share of a step. SDPA pads the values to the q/k width, so on CPU too
it runs the fused (flash) kernel rather than the math one that stores every head's L x L scores.

    python benchmarks/attention.py      # CPU: forward only, lengths up to 4096
    python benchmarks/attention.py --backends sdpa --mixes scene --lengths 16384 --layers 1 --repeats 1
    python benchmarks/attention.py --lengths 4096 8192 16384 32768 --preset neo-2.2b    # on a GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def packed_row(config, length: int, mix: str):
    from rsneo.model import ImageInput, pack_documents

    s, e, c = config.img_start_token_id, config.img_end_token_id, config.img_context_token_id

    def frame(t: float) -> list[ImageInput]:
        return [
            ImageInput(torch.zeros(4, 256, 256), torch.tensor([0.49, 0.56, 0.665, 0.842]),
                       ("blue", "green", "red", "nir"), t),
            ImageInput(torch.zeros(3, 128, 128), torch.tensor([0.705, 0.74, 0.783]), ("rededge",) * 3, t),
            ImageInput(torch.zeros(2, 128, 128), torch.tensor([1.61, 2.19]), ("swir16", "swir22"), t),
        ]  # fmt: skip

    block = [s] + [c] * 96 + [e]
    word = 100  # any ordinary text token
    scene = (torch.tensor([word, word, *block, word, *block] + [word] * 60), frame(0) + frame(30))
    text = (torch.tensor([word] * 120), [])
    if mix == "image":  # pre-buffer self-supervision: bare image documents, each one bidirectional block
        image_doc = (torch.tensor([c] * 96), frame(0))
        return pack_documents([[image_doc] * (length // 96)], config, policy="scene")
    docs, used = [], 0
    while used < length:
        doc = scene if len(docs) % 2 == 0 else text
        if len(doc[0]) > length - used:  # fill the rest of the row with one short text document
            doc = (torch.tensor([word] * (length - used)), [])
        docs.append(doc)
        used += len(doc[0])
    return pack_documents([docs], config, policy="scene")


def worker(
    backend: str, length: int, mix: str, preset: str, device: str, repeats: int, n_layers: int | None
) -> dict:
    from rsneo.model import RSNeoConfig
    from rsneo.model.attention import NativeAttention
    from rsneo.model.backbone import RSNeoBackbone
    from rsneo.model.rope import NativeRopeTables

    config = RSNeoConfig.from_preset(preset)
    batch = packed_row(config, length, mix).to(device)
    length = batch.input_ids.shape[1]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    layers = [NativeAttention(config).to(device, dtype) for _ in range(n_layers or config.num_layers)]
    with torch.device("meta"):
        mask_builder = RSNeoBackbone(config)
    rope = NativeRopeTables.build(
        batch.positions, config.head_dim, config.spectral_head_dim, config.rope_theta, config.rope_theta_hw,
        config.rope_theta_s, dtype,
    )  # fmt: skip
    x = torch.randn(1, length, config.hidden_size, device=device, dtype=dtype, requires_grad=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    # FlexAttention has no CPU backward (it refuses inputs that require grad): forward only on CPU
    grad = device == "cuda"
    mask_seconds = []

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        with torch.set_grad_enabled(grad):
            start = time.perf_counter()
            mask = mask_builder.attention_mask(batch, backend)  # once per step, shared by every layer
            sync()
            mask_seconds.append(time.perf_counter() - start)
            h = x
            for layer in layers:
                h = h + layer(h, rope, mask)[0]
            if grad:
                h.float().sum().backward()

    step()  # warm-up (compiles Flex on CUDA)
    sync()
    mask_seconds.clear()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    sync()
    seconds = (time.perf_counter() - start) / repeats
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    )
    with torch.set_grad_enabled(grad):
        used = mask_builder.attention_mask(batch, backend).backend
    return {
        "backend": backend,
        "mix": mix,
        "ran_as": used,
        "length": length,
        "layers": len(layers),
        "tokens_per_s": length / seconds,
        "mask_s": sum(mask_seconds) / len(mask_seconds),
        "step_s": seconds,
        "peak_mib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="*", default=None)
    parser.add_argument("--backends", nargs="*", default=["sdpa", "flex", "flash"])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=None, help="attention layers (default: the preset's)")
    parser.add_argument(
        "--mixes", nargs="*", default=["scene", "image"], help="scene+text packing, image-only"
    )
    parser.add_argument("--worker", nargs=3, metavar=("BACKEND", "LENGTH", "MIX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(
            json.dumps(
                worker(
                    args.worker[0],
                    int(args.worker[1]),
                    args.worker[2],
                    args.preset,
                    device,
                    args.repeats,
                    args.layers,
                )
            )
        )
        return
    lengths = args.lengths or ([4096, 8192, 16384, 32768] if device == "cuda" else [1024, 2048, 4096])
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; preset {args.preset}; NativeAttention layers sharing one mask per step")
    if device == "cpu":
        print("CPU run: forward only (the dense mask and eager Flex materialise L x L booleans/scores)")
    print(f"{'mix':6} {'backend':8} {'ran as':8} {'tokens':>7} {'layers':>6} {'tokens/s':>10} {'mask s':>7} "
          f"{'step s':>7} {'peak MiB':>9}")  # fmt: skip
    for mix in args.mixes:
        for backend in args.backends:
            for length in lengths:
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    backend,
                    str(length),
                    mix,
                    "--preset",
                    args.preset,
                    "--repeats",
                    str(args.repeats),
                ]
                cmd += ["--layers", str(args.layers)] if args.layers else []  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    err = (proc.stderr.strip().splitlines() or ["?"])[-1][:80]
                    print(f"{mix:6} {backend:8} {'failed':8} {length:>7}  {err}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(
                    f"{mix:6} {backend:8} {r['ran_as']:8} {r['length']:>7} {r['layers']:>6} "
                    f"{r['tokens_per_s']:>10.0f} {r['mask_s']:>7.3f} {r['step_s']:>7.2f} "
                    f"{r['peak_mib']:>9.0f}"
                )


if __name__ == "__main__":
    main()
