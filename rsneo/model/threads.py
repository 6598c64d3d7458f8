"""How many intra-op threads model work uses, chosen deliberately.

torch's default is every physical core, whatever else the machine runs. On a shared or busy machine its
OpenMP threads then wait on each other at every barrier while the scheduler runs someone else's work
(issue #25 measured `segment` 4.2x slower in wall time than with one thread). The order, first that is set:
`--threads N` (or the API's `threads=`), the `RSNEO_THREADS` environment variable, `OMP_NUM_THREADS` (the
standard setting users already know), then the policy: the cores this process may run on, shared by the
processes of one run, capped at `MAX_POLICY_THREADS`, less the cores other work keeps busy (the 1-minute
load average, capped by the tasks runnable right now), never below one (benchmarks/threads.py and
benchmarks/RESULTS.md: the measurements).
"""

from __future__ import annotations

import math
import os
import statistics
import time

import torch

from rsneo.errors import InputError

THREADS_ENV = "RSNEO_THREADS"
MAX_POLICY_THREADS = 8  # beyond 8 the windows' matrix products gain little and memory bandwidth is shared
RUN_QUEUE_SAMPLES = 9


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and `taskset` narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_cores() -> float:
    """Cores other work keeps busy: the 1-minute load average, but no more than the tasks runnable right now
    besides this one. The average alone lags: it still counts a command that ended seconds ago (a batch of
    commands, or a benchmark's previous run), and then an idle machine got one thread less than it has.
    0 where the system reports neither."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    others = running_others()
    return load if others is None else min(load, float(others))


def running_others(samples: int = RUN_QUEUE_SAMPLES) -> int | None:
    """Runnable tasks besides this process, now: the median of `samples` readings of /proc/stat's
    `procs_running` 2 ms apart (a single reading catches spinning threads of work that just ended). None where
    /proc/stat is not there (not Linux)."""
    readings = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                running = next((line for line in stat if line.startswith("procs_running")), None)
        except OSError:
            return None
        if running is None:
            return None
        readings.append(int(running.split()[1]))
        if i + 1 < samples:
            time.sleep(0.002)
    return max(0, int(statistics.median(readings)) - 1)  # less this process's own running thread


def policy_threads(cores: int | None = None, load: float | None = None, processes: int = 1) -> int:
    """The policy's count: the free cores of this process's share, at most MAX_POLICY_THREADS, at least 1.

    A core is counted free when less than half of it is busy on average (round half down), so a machine
    with a light background does not lose a thread to it.
    """
    cores = available_cores() if cores is None else cores
    load = busy_cores() if load is None else load
    share = max(1, cores // max(1, processes))
    free = share - math.floor(max(0.0, load) / max(1, processes) + 0.5)
    return max(1, min(share, free, MAX_POLICY_THREADS))


def parse_threads(value: int | str, source: str) -> int:
    """`value` as a positive thread count, or an InputError naming `source` (an option or variable)."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise InputError(f"{source} {value!r}: expected a whole number of threads, 1 or more")
    return int(text)


def resolve_threads(threads: int | str | None = None, option: str = "--threads", processes: int = 1) -> int:
    """The intra-op thread count: `threads` (named `option` in errors) > RSNEO_THREADS > OMP_NUM_THREADS >
    the policy. `processes`: how many processes of one run share the cores (training's devices)."""
    if threads is not None:
        return parse_threads(threads, option)
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        return parse_threads(env, THREADS_ENV)
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:  # torch's own reading of it; a malformed value is OpenMP's concern
        return int(omp)
    return policy_threads(processes=processes)


def use_threads(threads: int | str | None = None, option: str = "--threads", processes: int = 1) -> int:
    """Resolve the thread count (`resolve_threads`) and set it on torch; returns it."""
    count = resolve_threads(threads, option, processes)
    torch.set_num_threads(count)
    return count
