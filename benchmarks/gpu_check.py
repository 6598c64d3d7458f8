"""One GPU check for the scale path, appended to benchmarks/RESULTS.md with the device named.

1. Golden NEO cases on the device in fp32 and bf16: largest logit and vision-embedding differences from the
   reference vectors (fp32 must stay within the golden README's 1e-4; bf16 is reported against fp32).
2. Attention backends on packed rows (one NativeAttention layer, forward + backward, bf16): Flex compiled,
   SDPA and flash-attn varlen at 4k-32k tokens, tokens/s and peak memory. Two head layouts: rsneo's
   (q/k 128 + 64 S-axis + ... = `qk_dim`, wider than flash-attn's 256 limit, so `flash` falls back and the
   table says what it ran as) and NEO's own (no S axis: q/k 256 wide, where flash-attn runs).
3. 200 training steps of a ~0.6B configuration (Qwen3-0.6B widths: hidden 1024, 28 layers, tied
   embeddings) in bf16 autocast: tokens/s, ms/step, peak memory and MFU.

    bash benchmarks/gpu_check.sh                 # on one H100/H200, under 8 minutes
    bash benchmarks/gpu_check.sh --cpu-dry-run   # every part at tiny sizes on a CPU, to a scratch file
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmark modules
REPO = HERE.parent
SHARED = REPO.parent / "shared"

# Qwen3-0.6B's widths on the NEO-2.2B layout: ~0.6B parameters with the 152k vocabulary (tied)
HALF_B = {"hidden_size": 1024, "intermediate_size": 3072, "num_layers": 28, "prebuffer_layers": 4,
          "num_heads": 16, "num_kv_heads": 8}  # fmt: skip


def golden(device: str, golden_dir: Path) -> list[str]:
    """Rows `| case | dtype | max logit diff | max vision diff |` for the golden cases on `device`."""
    from rsneo.model import RSNeoForCausalLM
    from rsneo.model.golden import CASES, golden_cases, golden_config, golden_inputs, golden_state

    config = golden_config(golden_dir)
    cases = golden_cases(golden_dir)
    state = golden_state(golden_dir, config)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        model = RSNeoForCausalLM(config)
        model.load_state_dict(state, strict=True)
        model = model.to(device, dtype).eval()
        for case in CASES:
            inputs = golden_inputs(cases, case, config, dtype).to(device)
            label = str(dtype).removeprefix("torch.")
            try:
                with torch.no_grad():
                    logits = model(inputs).logits[0].float().cpu()
                    vision = model.backbone.vision(inputs.images).float().cpu()
            except Exception as exc:  # a dtype the model cannot run yet is a finding, not a stop
                rows.append(f"| {case} | {label} | failed: {type(exc).__name__}: {str(exc)[:80]} | - |")
                continue
            d_logits = (logits - cases[f"{case}.logits"]).abs().max().item()
            d_vision = (vision - cases[f"{case}.vision_embeds"]).abs().max().item()
            rows.append(f"| {case} | {label} | {d_logits:.2e} | {d_vision:.2e} |")
    return rows


def attention(lengths: list[int], preset: str, backends: list[str], repeats: int) -> list[str]:
    """Rows `| heads | backend | ran as | tokens | tokens/s | peak MiB |`, one NativeAttention layer each."""
    import attention as bench

    from rsneo.model.config import PRESETS

    layouts = {"rsneo (S axis)": preset, "NEO (no S axis)": f"{preset}-neo"}
    PRESETS[f"{preset}-neo"] = replace(PRESETS[preset], spectral_head_dim=0)  # this process only
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for label, name in layouts.items():
        for backend in backends:
            for length in lengths:
                try:
                    r = bench.worker(backend, length, "scene", name, device, repeats, n_layers=1)
                    rows.append(
                        f"| {label} | {backend} | {r['ran_as']} | {r['length']} | {r['tokens_per_s']:,.0f} "
                        f"| {r['peak_mib']:,.0f} |"
                    )
                except Exception as exc:  # an out-of-memory or a missing kernel is a result, not a stop
                    why = f"{type(exc).__name__}: {str(exc)[:60]}"
                    rows.append(f"| {label} | {backend} | failed: {why} | {length} | - | - |")
                if device == "cuda":
                    torch.cuda.empty_cache()
    return rows


def training(preset: str, overrides: dict, steps: int, batch_size: int, tile: int, peak: float) -> list[str]:
    from learning import measure_throughput

    r = measure_throughput(preset, overrides, steps, batch_size, tile, peak)
    mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
    memory = "-" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
    return [
        f"| {r['params'] / 1e9:.3f}B | {steps} | {r['tokens_per_step']} | {r['ms_per_step']:.1f} "
        f"| {r['tokens_per_s']:,.0f} | {memory} | {mfu} |"
    ]


def section(title: str, header: list[str], make, lines: list[str]) -> None:
    """Run one part; its table (or its failure) goes to `lines`, so one broken part never hides the rest."""
    started = time.perf_counter()
    lines += ["", f"### {title}", ""]
    try:
        rows = make()
        lines += [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *rows]
    except Exception:
        lines.append("```\n" + traceback.format_exc(limit=4).strip() + "\n```")
    lines.append(f"\n({time.perf_counter() - started:.0f} s)")
    print(f"{title}: done in {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU, to --results")
    parser.add_argument("--results", default=None, help="markdown file to append to")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak (default: by name)")
    args = parser.parse_args()
    dry = args.cpu_dry_run
    cuda = torch.cuda.is_available()
    if not dry and not cuda:
        print("gpu_check: no CUDA device found; --cpu-dry-run checks the script on a CPU", file=sys.stderr)
        sys.exit(2)
    device = "cuda" if cuda and not dry else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    peak = args.peak_tflops or (989.0 if "H100" in name or "H200" in name else 312.0)  # dense bf16
    results = Path(args.results) if args.results else HERE / "RESULTS.md"
    if dry and not args.results:
        results = Path("/tmp") / "rsneo_gpu_check_dry_run.md"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "", f"## GPU check: {name}, {stamp}{' (CPU dry run, tiny sizes)' if dry else ''}", "",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}; command: `bash benchmarks/gpu_check.sh"
        f"{' --cpu-dry-run' if dry else ''}`; MFU against {peak:g} TFLOP/s dense bf16.",
    ]  # fmt: skip
    section(
        "1. Golden NEO cases on the device", ["case", "dtype", "max logit diff", "max vision-embed diff"],
        lambda: golden(device, SHARED / "golden"), lines,
    )  # fmt: skip
    lengths = [256, 512] if dry else [4096, 8192, 16384, 32768]
    section(
        "2. Attention, one layer on packed scene+text rows"
        + (" (CPU: forward only, fp32)" if device == "cpu" else ", forward + backward, bf16"),
        ["heads", "backend", "ran as", "tokens", "tokens/s", "peak MiB"],
        lambda: attention(lengths, "tiny" if dry else "neo-2.2b", ["flex", "sdpa", "flash"], 1 if dry else 3),
        lines,
    )  # fmt: skip
    section(
        "3. Training steps, bf16 autocast, AdamW",
        ["parameters", "steps", "tokens/step", "ms/step", "tokens/s", "peak MiB", "MFU"],
        lambda: training(*(("tiny", {}, 3, 2, 64) if dry else ("neo-2.2b", HALF_B, 200, 8, 512)), peak),
        lines,
    )  # fmt: skip
    with open(results, "a") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nappended to {results}")


if __name__ == "__main__":
    main()
