"""One rsneo command in its own fresh process, measured: the benchmarks that time whole commands share this.

CPU seconds are user + system of that child alone (os.wait4), the steady figure on a shared machine; wall
time depends on what else runs, so the 1-minute load average before the start is returned with it. The
thread variables are removed from the child's environment so that the command's own `--threads` (or its
policy) decides.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_rsneo(args: list[str], env: dict[str, str] | None = None) -> dict:
    """`python -m rsneo.cli ARGS` from this checkout: wall s, CPU s, peak RSS (MB) and the load before it.
    A failing command stops the benchmark with its stderr."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("RSNEO_THREADS", "OMP_NUM_THREADS")}
    child_env |= {"PYTHONPATH": str(REPO), **(env or {})}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "rsneo.cli", *args], env=child_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"rsneo {args[0]} failed ({status}): {child.stderr.read().decode()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "rss_mb": usage.ru_maxrss / 1024, "load": load}
