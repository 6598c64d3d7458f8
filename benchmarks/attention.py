"""Attention kernels on packed image/text rows: tokens/s, CPU seconds and peak memory, each row labelled by
the kernel that actually ran.

Each (backend, length, mix) runs in its own subprocess, so its peak memory is its own (CUDA: max allocated;
CPU: peak RSS growth). A row is packed with documents like the training mix: a Sentinel-2 scene of two dates
(RGB+NIR 256x256 -> 64 tokens, red edge and SWIR at 128x128 -> 16 tokens each, per frame) with a caption, and
text-only documents in between (`--mixes scene`; no flash plan exists for such rows: image and text mixed);
or image-only rows (`--mixes image`, pre-buffer self-supervision: every document one bidirectional block, so
the variable-length flash kernels apply). A stack of `--layers` NativeAttention layers (default: the preset's
depth) runs as a real forward does: the mask is built once per step and shared by every layer; forward +
backward on CUDA (bf16), forward only on CPU (fp32; Flex has no CPU backward). `ran as` is the kernel that
ran: `sdpa flash` / `sdpa efficient` / `sdpa math` (SDPA's own choice), `flex compiled` / `flex uncompiled`,
`torch varlen`, `flash-attn`, `sdpa per segment`.

`--values once|per-layer` (CPU): the CPU's fused SDPA kernel takes one head width for q, k and v, so rsneo's
values (head_dim, half the q/k width) are zero-padded: once per forward into a buffer every layer writes into
(inference), or by each layer (with gradients). `--values math` runs SDPA's math kernel on unpadded values
instead (what SDPA falls back to without the padding). Compare them in CPU seconds on an idle machine.
`--threads N` (CPU, default 1; 0: torch's default) is set on torch in each worker; the thread count that ran
and the 1-minute load average before each row are printed with it.

    python benchmarks/attention.py      # CPU: forward only, lengths up to 4096
    python benchmarks/attention.py --backends sdpa --mixes scene --values once per-layer math --repeats 5
    python benchmarks/attention.py --lengths 4096 8192 16384 32768 --preset neo-2.2b    # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import nullcontext

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
        return pack_documents([[image_doc] * max(1, length // 96)], config, policy="scene")
    docs, used = [], 0
    while used < length:
        doc = scene if len(docs) % 2 == 0 else text
        if len(doc[0]) > length - used:  # fill the rest of the row with one short text document
            doc = (torch.tensor([word] * (length - used)), [])
        docs.append(doc)
        used += len(doc[0])
    return pack_documents([docs], config, policy="scene")


def kernel_label(mask, layer, h, rope) -> str:
    """The kernel the layers ran: the mask's, or for dense SDPA the kernel SDPA picks for these inputs."""
    from rsneo.model.attention import sdpa_kernel_name

    if mask.backend != "sdpa":
        return mask.kernel
    with torch.no_grad():
        tables = rope.with_phase(layer.spectral_frequencies)
        q = layer._project(h, tables, rope, layer.config.num_heads, "q")
        k = layer._project(h, tables, rope, layer.config.num_kv_heads, "k")
        v = layer.v_proj(h).view(*h.shape[:2], layer.config.num_kv_heads, -1).transpose(1, 2)
        return sdpa_kernel_name(q, k.to(v.dtype), v, mask.dense, 1.0)


def worker(
    backend: str, length: int, mix: str, preset: str, device: str, repeats: int, n_layers: int | None,
    values: str = "once", dtype: torch.dtype | None = None,
) -> dict:  # fmt: skip
    """One (backend, length, mix) measurement in this process; `dtype` None: bf16 on CUDA, fp32 on CPU."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from rsneo.model import RSNeoConfig
    from rsneo.model.attention import NativeAttention
    from rsneo.model.backbone import RSNeoBackbone
    from rsneo.model.rope import NativeRopeTables

    config = RSNeoConfig.from_preset(preset)
    batch = packed_row(config, length, mix).to(device)
    length = batch.input_ids.shape[1]
    dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
    layers = [NativeAttention(config).to(device, dtype) for _ in range(n_layers or config.num_layers)]
    with torch.device("meta"):
        mask_builder = RSNeoBackbone(config)
    rope = NativeRopeTables.build(batch.positions, config, dtype)
    x = torch.randn(1, length, config.hidden_size, device=device, dtype=dtype, requires_grad=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    # FlexAttention has no CPU backward (it refuses inputs that require grad): forward only on CPU
    grad = device == "cuda"
    kernels = lambda: sdpa_kernel([SDPBackend.MATH]) if values == "math" else nullcontext()  # noqa: E731
    mask_seconds: list[float] = []
    masks: list = []

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        with torch.set_grad_enabled(grad), kernels():
            start = time.perf_counter()
            mask = mask_builder.attention_mask(batch, backend, dtype=dtype)  # once per step, for every layer
            if values != "once":  # each layer pads its own values (the path with gradients)
                mask.padded_values = None
            sync()
            mask_seconds.append(time.perf_counter() - start)
            masks[:] = [mask]
            h = x
            for layer in layers:
                h = h + layer(h, rope, mask)[0]
            if grad:
                h.float().sum().backward()

    step()  # warm-up (compiles Flex on CUDA)
    sync()
    mask_seconds.clear()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        step()
    sync()
    seconds, cpu = (time.perf_counter() - start) / repeats, (time.process_time() - cpu) / repeats
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    )
    with kernels():
        ran_as = kernel_label(masks[0], layers[0], x.detach(), rope)
    return {
        "backend": backend, "mix": mix, "values": values, "ran_as": ran_as, "length": length,
        "layers": len(layers), "tokens_per_s": length / seconds,
        "mask_s": sum(mask_seconds) / len(mask_seconds),
        "step_s": seconds, "cpu_s": cpu, "peak_mib": peak, "threads": torch.get_num_threads(),
    }  # fmt: skip


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
    parser.add_argument(
        "--values", nargs="*", default=["once"], choices=["once", "per-layer", "math"],
        help="CPU: values padded once per forward, by each layer, or unpadded on SDPA's math kernel",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (0: torch's default)")
    parser.add_argument(
        "--worker", nargs=4, metavar=("BACKEND", "LENGTH", "MIX", "VALUES"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        backend, length, mix, values = args.worker
        result = worker(backend, int(length), mix, args.preset, device, args.repeats, args.layers, values)
        print(json.dumps(result))
        return
    lengths = args.lengths or ([4096, 8192, 16384, 32768] if device == "cuda" else [1024, 2048, 4096])
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; preset {args.preset}; NativeAttention layers sharing one mask per step; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if device == "cpu":
        print("CPU run: forward only (the dense mask and uncompiled Flex materialise L x L booleans/scores)")
    print(f"{'mix':6} {'backend':8} {'values':9} {'ran as':17} {'tokens':>7} {'layers':>6} {'tokens/s':>10} "
          f"{'mask s':>7} {'step s':>7} {'CPU s':>7} {'peak MiB':>9} {'threads':>7} {'load':>5}")  # fmt: skip
    for mix in args.mixes:
        for backend in args.backends:
            for values in args.values:
                for length in lengths:
                    cmd = [sys.executable, __file__, "--worker", backend, str(length), mix, values,
                           "--preset", args.preset, "--repeats", str(args.repeats),
                           "--threads", str(args.threads)]  # fmt: skip
                    load = os.getloadavg()[0]
                    cmd += ["--layers", str(args.layers)] if args.layers else []
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode:
                        err = (proc.stderr.strip().splitlines() or ["?"])[-1][:80]
                        print(f"{mix:6} {backend:8} {values:9} {'failed':17} {length:>7}  {err}")
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    print(
                        f"{mix:6} {backend:8} {values:9} {r['ran_as']:17} {r['length']:>7} {r['layers']:>6} "
                        f"{r['tokens_per_s']:>10.0f} {r['mask_s']:>7.3f} {r['step_s']:>7.2f} "
                        f"{r['cpu_s']:>7.2f} {r['peak_mib']:>9.0f} {r['threads']:>7} {load:>5.1f}"
                    )


if __name__ == "__main__":
    main()
