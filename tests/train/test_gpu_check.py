"""`benchmarks/gpu_check.py`: every part runs in the CPU dry run and appends its table as it finishes; a part
past its budget costs only itself; a device or precision the machine cannot run is one message and exit 2;
the device peak comes from the exact device name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def gpu_check(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def sections(text: str) -> dict[str, str]:
    parts = text.split("\n### ")[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


@pytest.mark.slow
def test_the_dry_run_exercises_every_part_and_writes_each_table(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# earlier results\n")
    done = gpu_check("--cpu-dry-run", "--results", str(results))
    assert done.returncode == 0, done.stderr[-3000:]
    text = results.read_text()
    assert text.startswith("# earlier results\n")  # appended, never rewritten
    assert "## GPU check: CPU" in text and "(CPU dry run, tiny sizes)" in text
    found = sections(text)
    assert [title.split(".")[0] for title in found] == ["1", "2", "3", "4"]
    golden, attention, training, finetune = found.values()
    assert "| packed | float32 |" in golden and "| packed | bfloat16 |" in golden
    for kernel in ("flex uncompiled", "sdpa per segment", "sdpa flash", "no flash plan"):
        assert kernel in attention, kernel  # every row names the kernel that ran
    assert sum(line.startswith("| ") for line in training.splitlines()) == 2  # the header, one row
    assert "change, LoRA, 64 px chips x 2" in finetune and '"steps": 2' in finetune  # the recipe ran
    assert all("budget)" in part for part in found.values())  # each finished within its own budget


@pytest.mark.slow
def test_a_part_past_its_budget_costs_only_itself(tmp_path):
    results = tmp_path / "RESULTS.md"
    done = gpu_check("--cpu-dry-run", "--results", str(results), "--parts", "golden", "finetune",
                     "--budget", "golden=0.5")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    golden, finetune = sections(results.read_text()).values()
    assert "stopped at its 0 s budget" in golden or "stopped at its 1 s budget" in golden
    assert "budget)" in finetune and "change, LoRA" in finetune  # the next part still ran


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cuda"], "--device cuda: no CUDA device is visible"),
        ([], "no CUDA device found; this check measures a GPU"),
        (["--cpu-dry-run", "--precision", "fp16"], "--precision fp16: the CPU dry run cannot train in fp16"),
        (["--cpu-dry-run", "--budget", "nope=3"], "--budget nope=3: expected PART=SECONDS"),
    ],
)
def test_what_this_machine_cannot_run_is_one_message_and_exit_2(args, message, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the refusals of a machine without a GPU")
    done = gpu_check(*args, "--results", str(tmp_path / "R.md"), timeout=300)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "R.md").exists()  # refused before anything was written


def test_a_gpu_without_bf16_is_refused_and_the_peak_is_looked_up_by_exact_name(monkeypatch):
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_check as module

    args = lambda *a: module.argparse.Namespace(  # noqa: E731
        cpu_dry_run=False, device="cuda", precision=a[0], peak_tflops=None
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    with pytest.raises(SystemExit) as stop:
        module.settings_of(args("bf16"))
    assert stop.value.code == 2
    assert module.settings_of(args("fp16")).peak_tflops is None  # not in the table: no MFU, no guess
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    for name, peak in (("NVIDIA H100 80GB HBM3", 989.5), ("NVIDIA H100 PCIe", 756.5), ("NVIDIA H200", 989.5)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, name=name: name)
        assert module.settings_of(args("bf16")).peak_tflops == peak
