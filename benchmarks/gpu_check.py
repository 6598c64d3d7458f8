"""The scale path on one GPU in one call; each part appends its table to benchmarks/RESULTS.md as it finishes.

Parts, in order, each in its own process with its own time budget (seconds; a part past its budget is
stopped and its rows so far are written with the reason, and the next part starts):
1. `golden` (60 s): the golden NEO cases on the device in fp32 and in the chosen precision: largest logit and
   vision-embedding differences from the reference vectors (fp32 must stay within the golden README's 1e-4).
2. `attention` (300 s): rsneo's own layout at NEO-2.2B widths (q/k 2 x 128 = 256, the S axis a phase: no
   extra width), one NativeAttention layer, forward + backward, at 4k-32k packed tokens: compiled Flex, SDPA
   and the variable-length flash kernels (torch's `varlen_attn`; flash-attn when installed), on image-only
   rows (document-blocked: the flash kernels apply) and on scene + text rows (no flash plan: Flex and SDPA
   only). tokens/s and peak memory; `ran as` names the kernel that actually ran.
3. `training` (180 s): 200 AdamW steps of Qwen3-0.6B's widths on the NEO-2.2B layout (~0.6B parameters,
   152k tied vocabulary), bf16 autocast: ms/step, tokens/s, peak memory and MFU.
4. `finetune` (120 s): a short version of the fine-tuning recipe of the labelled-archive issue:
   `rsneo.train.finetune.gpu_check(device, dry_run)` (rows of numbers) when that module exists, otherwise
   "skipped: not available".

MFU follows PaLM (Chowdhery et al. 2022, appendix B): model FLOPs per trained token = 6 N + the attention
term, N the non-embedding parameters (decoder layers and final norm; the LM head's 6 x vocab x width counted
for the tokens with a target only, the input embedding being a lookup), the attention term 6 x layers x heads
x (q/k width + value width) x the mean number of keys a query attends under the packed mask (PaLM's T, for
full causal rows). The peak is the dense (not sparse) 16-bit tensor throughput of the exact device name
(`PEAK_TFLOPS`); an unknown name gets no MFU unless `--peak-tflops` is given.

    bash benchmarks/gpu_check.sh                 # on one H100/H200: about 11 minutes at most
    bash benchmarks/gpu_check.sh --cpu-dry-run   # every part at tiny sizes on a CPU, to a scratch file
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmark modules
REPO = HERE.parent
SHARED = Path(os.environ.get("RSNEO_SHARED", REPO.parent / "shared"))

# Dense (not sparse) bf16/fp16 tensor-core peak by the exact `torch.cuda.get_device_name()`, TFLOP/s. NVIDIA
# datasheets quote "with sparsity"; dense is half. H100 SXM / PCIe / NVL: NVIDIA H100 Tensor Core GPU
# datasheet (BF16 1,979 / 1,513 / 1,671 with sparsity); H200 SXM / NVL: NVIDIA H200 datasheet (1,979 /
# 1,671 with sparsity); A100: NVIDIA A100 datasheet (BF16 312 dense).
PEAK_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.5,  # H100 SXM5
    "NVIDIA H100 PCIe": 756.5,
    "NVIDIA H100 NVL": 835.5,
    "NVIDIA H200": 989.5,  # H200 SXM
    "NVIDIA H200 NVL": 835.5,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
}
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# Qwen3-0.6B's widths on the NEO-2.2B layout: ~0.6B parameters with the 152k vocabulary (tied)
HALF_B = {"hidden_size": 1024, "intermediate_size": 3072, "num_layers": 28, "prebuffer_layers": 4,
          "num_heads": 16, "num_kv_heads": 8}  # fmt: skip


@dataclass(frozen=True)
class Settings:
    device: str
    dtype: torch.dtype
    dry: bool
    peak_tflops: float | None


@dataclass(frozen=True)
class Part:
    name: str
    title: str
    header: tuple[str, ...]
    budget_s: float
    rows: Callable[[Settings], Iterator[list[str]]]


# ---- 1. golden cases ---------------------------------------------------------------------------------------
def golden_rows(s: Settings) -> Iterator[list[str]]:
    from rsneo.model import RSNeoForCausalLM
    from rsneo.model.golden import CASES, golden_cases, golden_config, golden_inputs, golden_state

    folder = SHARED / "golden"
    config, cases = golden_config(folder), golden_cases(folder)
    state = golden_state(folder, config)
    for dtype in dict.fromkeys((torch.float32, s.dtype)):
        model = RSNeoForCausalLM(config)
        model.load_state_dict(state, strict=True)
        model = model.to(s.device, dtype).eval()
        label = str(dtype).removeprefix("torch.")
        for case in CASES:
            inputs = golden_inputs(cases, case, config, dtype).to(s.device)
            with torch.no_grad():
                logits = model(inputs).logits[0].float().cpu()
                vision = model.backbone.vision(inputs.images).float().cpu()
            d_logits = (logits - cases[f"{case}.logits"]).abs().max().item()
            d_vision = (vision - cases[f"{case}.vision_embeds"]).abs().max().item()
            yield [case, label, f"{d_logits:.2e}", f"{d_vision:.2e}"]


# ---- 2. attention kernels ----------------------------------------------------------------------------------
def attention_rows(s: Settings) -> Iterator[list[str]]:
    """rsneo's layout at NEO-2.2B widths (tiny in the dry run), one layer each, most telling rows first."""
    import attention as bench

    preset = "tiny" if s.dry else "neo-2.2b"
    lengths = [128, 256] if s.dry else [4096, 8192, 16384, 32768]
    plan = [("image", "flex"), ("scene", "flex"), ("image", "flash"), ("image", "sdpa"), ("scene", "sdpa")]
    for mix, backend in plan:
        for length in lengths:
            try:
                r = bench.worker(backend, length, mix, preset, s.device, 1 if s.dry else 3, 1, dtype=s.dtype)
                tokens, rate, peak = str(r["length"]), f"{r['tokens_per_s']:,.0f}", f"{r['peak_mib']:,.0f}"
                yield [mix, backend, r["ran_as"], tokens, rate, peak]
            except Exception as exc:  # an out-of-memory or a missing kernel is a result, not a stop
                yield [mix, backend, f"failed: {type(exc).__name__}: {str(exc)[:70]}", str(length), "-", "-"]
            if s.device == "cuda":
                torch.cuda.empty_cache()
    yield ["scene", "flash", "not run: no flash plan for image and text in one row (Flex, SDPA run it)", "-",
           "-", "-"]  # fmt: skip


# ---- 3. training steps and MFU (model FLOPs: `learning.training_flops`) ------------------------------------
def training_rows(s: Settings) -> Iterator[list[str]]:
    from learning import measure_throughput

    if s.dry:
        preset, overrides, steps, batch, tile = "tiny", {}, 3, 2, 64
    else:
        preset, overrides, steps, batch, tile = "neo-2.2b", HALF_B, 200, 8, 512
    r = measure_throughput(preset, overrides, steps, batch, tile, s.dtype)
    peak = s.peak_tflops
    mfu = "-" if peak is None or s.dtype == torch.float32 else f"{r['flops_per_s'] / (peak * 1e12):.1%}"
    memory = "-" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
    yield [
        f"{r['params'] / 1e9:.3f}B", f"{r['non_embedding'] / 1e9:.3f}B", str(steps),
        str(r["tokens_per_step"]),
        f"{r['ms_per_step']:.1f}", f"{r['tokens_per_s']:,.0f}", f"{r['flops_per_s'] / 1e12:.1f}", memory, mfu,
    ]  # fmt: skip


# ---- 4. the fine-tuning recipe (filled by `rsneo finetune`'s owner) ----------------------------------------
def finetune_rows(s: Settings) -> Iterator[list[str]]:
    """A short version of the labelled-archive fine-tuning recipe: `rsneo.train.finetune.gpu_check(device,
    dry_run)` returns rows (dicts of column -> value); until that module exists the part is skipped."""
    if importlib.util.find_spec("rsneo.train.finetune") is None:
        yield ["skipped: not available (no rsneo.train.finetune)", "-"]
        return
    from rsneo.train import finetune  # an optional module: imported only where it exists

    recipe = getattr(finetune, "gpu_check", None)
    if recipe is None:
        yield ["skipped: rsneo.train.finetune has no gpu_check(device, dry_run)", "-"]
        return
    for row in recipe(s.device, s.dry):
        yield [str(row.get("what", "")), json.dumps({k: v for k, v in row.items() if k != "what"})]


PARTS = (
    Part("golden", "1. Golden NEO cases on the device", ("case", "dtype", "max logit diff",
         "max vision-embed diff"), 60, golden_rows),
    Part("attention", "2. Attention at NEO-2.2B widths, one layer, forward + backward (CPU dry run: tiny, "
         "forward only)", ("mix", "backend",
         "ran as", "tokens", "tokens/s", "peak MiB"), 300, attention_rows),
    Part("training", "3. Training steps, AdamW", ("parameters", "non-embedding", "steps", "tokens/step",
         "ms/step", "tokens/s", "model TFLOP/s", "peak MiB", "MFU"), 180, training_rows),
    Part("finetune", "4. Short fine-tuning recipe", ("what", "numbers"), 120, finetune_rows),
)  # fmt: skip


# ---- running the parts -------------------------------------------------------------------------------------
def run_part(part: Part, settings: Settings, rows_file: Path) -> None:
    """In the part's own process: write each row to `rows_file` (one JSON list per line) as it is made."""
    with open(rows_file, "a") as handle:
        for row in part.rows(settings):
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def section(part: Part, rows: list[list[str]], status: str) -> str:
    lines = ["", f"### {part.title}", "", f"| {' | '.join(part.header)} |", f"|{'---|' * len(part.header)}"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join([*lines, "", status, ""])


def launch(part: Part, args: argparse.Namespace, budget: float, results: Path) -> None:
    """Run one part in a child process within its budget; append its section to `results` at once."""
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        command = [sys.executable, __file__, "--part", part.name, "--rows-file", str(rows_file),
                   *child_options(args)]  # fmt: skip
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=budget)
            seconds = time.perf_counter() - started
            status = f"({seconds:.0f} s of its {budget:.0f} s budget)"
            if done.returncode:
                tail = "\n".join(done.stderr.strip().splitlines()[-6:])
                status = f"failed after {seconds:.0f} s:\n```\n{tail}\n```"
        except subprocess.TimeoutExpired:
            status = f"stopped at its {budget:.0f} s budget; the rows above are what it measured by then"
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    with open(results, "a") as handle:
        handle.write(section(part, rows, status))
    print(f"{part.title}: {status.splitlines()[0]}", flush=True)


def child_options(args: argparse.Namespace) -> list[str]:
    options = ["--precision", args.precision, "--device", args.device]
    options += ["--cpu-dry-run"] if args.cpu_dry_run else []
    options += ["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else []
    return options


def refuse(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr)
    sys.exit(2)


def settings_of(args: argparse.Namespace) -> Settings:
    """The run's device, precision and peak; a device or precision this machine cannot run: exit 2."""
    cuda = torch.cuda.is_available()
    device = "cpu" if args.cpu_dry_run else ("cuda" if args.device in ("auto", "cuda") and cuda else "cpu")
    if args.device == "cuda" and not cuda and not args.cpu_dry_run:
        refuse("--device cuda: no CUDA device is visible to torch (see nvidia-smi); --cpu-dry-run checks the "
               "script on a CPU")  # fmt: skip
    if device == "cpu" and not args.cpu_dry_run:
        refuse("no CUDA device found; this check measures a GPU (--cpu-dry-run checks the script on a CPU)")
    if device == "cuda" and args.precision == "bf16" and not torch.cuda.is_bf16_supported():
        refuse(f"--precision bf16: {torch.cuda.get_device_name()} cannot run bfloat16; use --precision fp16")
    if device == "cpu" and args.precision == "fp16":
        refuse("--precision fp16: the CPU dry run cannot train in fp16 (autocast on CPUs takes bf16)")
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    return Settings(
        device, PRECISIONS[args.precision], args.cpu_dry_run, args.peak_tflops or PEAK_TFLOPS.get(name)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU, to --results")
    parser.add_argument("--results", default=None, help="markdown file to append to")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--precision", default="bf16", choices=list(PRECISIONS))
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="dense 16-bit peak (default: by name)"
    )
    parser.add_argument(
        "--parts", nargs="*", default=[p.name for p in PARTS], choices=[p.name for p in PARTS]
    )
    parser.add_argument("--budget", action="append", default=[], metavar="PART=SECONDS",
                        help="a part's time budget (default: the part's own)")  # fmt: skip
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = settings_of(args)
    parts = {p.name: p for p in PARTS}
    if args.part:  # a child: one part, its rows to --rows-file
        try:
            run_part(parts[args.part], settings, Path(args.rows_file))
        except Exception:
            traceback.print_exc(limit=6)
            sys.exit(1)
        return
    budgets = {p.name: p.budget_s for p in PARTS}
    for item in args.budget:
        name, _, seconds = item.partition("=")
        if name not in budgets:
            refuse(f"--budget {item}: expected PART=SECONDS with PART one of {list(budgets)}")
        budgets[name] = float(seconds)
    results = Path(args.results) if args.results else HERE / "RESULTS.md"
    if args.cpu_dry_run and not args.results:
        results = Path(tempfile.gettempdir()) / "rsneo_gpu_check_dry_run.md"
    name = (
        torch.cuda.get_device_name()
        if settings.device == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    peak = "no MFU (device not in the peak table)" if settings.peak_tflops is None else (
        f"MFU against {settings.peak_tflops:g} TFLOP/s dense 16-bit")  # fmt: skip
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        "", f"## GPU check: {name}, {stamp}{' (CPU dry run, tiny sizes)' if args.cpu_dry_run else ''}", "",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}; precision {args.precision}; command: "
        f"`bash benchmarks/gpu_check.sh{' --cpu-dry-run' if args.cpu_dry_run else ''}`; {peak}.", "",
    ]  # fmt: skip
    with open(results, "a") as handle:
        handle.write("\n".join(header))
    for part_name in args.parts:
        launch(parts[part_name], args, budgets[part_name], results)
    print(f"appended to {results}")


if __name__ == "__main__":
    main()
