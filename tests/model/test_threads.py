"""`rsneo.model.threads`: --threads > RSNEO_THREADS > OMP_NUM_THREADS > the policy (free cores, capped)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rsneo.errors import InputError
from rsneo.model import threads as threads_module
from rsneo.model.threads import (
    MAX_POLICY_THREADS,
    THREADS_ENV,
    parse_threads,
    policy_threads,
    resolve_threads,
    use_threads,
)


@pytest.fixture
def clean_env(monkeypatch):
    """No thread settings in the environment; a machine with 6 cores and no other work."""
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads_module, "available_cores", lambda: 6)
    monkeypatch.setattr(threads_module, "busy_cores", lambda: 0.0)
    return monkeypatch


@pytest.fixture
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_option_wins_over_both_variables_and_the_policy(clean_env):
    clean_env.setenv(THREADS_ENV, "3")
    clean_env.setenv("OMP_NUM_THREADS", "2")
    assert resolve_threads(5) == 5 and resolve_threads("4") == 4


def test_rsneo_threads_wins_over_omp_num_threads_and_the_policy(clean_env):
    clean_env.setenv(THREADS_ENV, " 3 ")
    clean_env.setenv("OMP_NUM_THREADS", "2")
    assert resolve_threads(None) == 3


def test_omp_num_threads_wins_over_the_policy_and_a_malformed_one_is_left_to_openmp(clean_env):
    clean_env.setenv("OMP_NUM_THREADS", "2")
    assert resolve_threads(None) == 2
    clean_env.setenv("OMP_NUM_THREADS", "2,1")  # OpenMP's nested syntax: not ours to judge
    assert resolve_threads(None) == 6


def test_policy_uses_the_available_cores_capped(clean_env):
    assert resolve_threads(None) == 6
    assert policy_threads(cores=64, load=0.0) == MAX_POLICY_THREADS
    assert policy_threads(cores=1, load=0.0) == 1


def test_policy_leaves_the_cores_other_work_keeps_busy(clean_env):
    assert policy_threads(cores=6, load=0.4) == 6  # a light background costs no thread
    assert policy_threads(cores=6, load=2.6) == 3
    assert policy_threads(cores=2, load=1.5) == 1
    assert policy_threads(cores=2, load=9.0) == 1  # never below one
    clean_env.setattr(threads_module, "busy_cores", lambda: 4.0)
    assert resolve_threads(None) == 2


def test_policy_shares_the_cores_between_a_runs_processes(clean_env):
    assert policy_threads(cores=6, load=0.0, processes=2) == 3
    assert policy_threads(cores=6, load=2.0, processes=2) == 2  # each process bears half the load
    assert policy_threads(cores=3, load=0.0, processes=4) == 1


def test_a_load_average_left_by_work_that_has_ended_costs_no_thread(monkeypatch):
    """The 1-minute average still counts a command that ended seconds ago; nothing else runs now."""
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (1.2, 0.8, 0.5))
    monkeypatch.setattr(threads_module, "running_others", lambda: 0)
    assert threads_module.busy_cores() == 0.0
    assert policy_threads(cores=2) == 2
    monkeypatch.setattr(threads_module, "running_others", lambda: 3)  # running now, averaged lower so far
    assert threads_module.busy_cores() == 1.2 and policy_threads(cores=2) == 1


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="procs_running is Linux's")
def test_running_others_counts_a_busy_process():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and runnable
        assert threads_module.running_others() >= 1
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.parametrize("value", [0, -1, "0", "abc", "", "1.5", True])
def test_a_bad_count_is_refused_naming_where_it_came_from(value):
    with pytest.raises(InputError, match=r"^--threads .*: expected a whole number of threads, 1 or more$"):
        parse_threads(value, "--threads")


def test_a_bad_variable_is_refused_naming_the_variable(clean_env):
    clean_env.setenv(THREADS_ENV, "abc")
    with pytest.raises(InputError, match=rf"^{THREADS_ENV} 'abc': expected a whole number of threads"):
        resolve_threads(None)
    assert resolve_threads(2) == 2  # the option wins, so the variable is never read


def test_use_threads_sets_torch(clean_env, restore_torch_threads):
    assert use_threads(1) == 1 and torch.get_num_threads() == 1
    clean_env.setenv(THREADS_ENV, "2")
    assert use_threads(None) == 2 and torch.get_num_threads() == 2


def test_the_api_applies_the_count_when_it_loads_a_model(tiny_model_dir, clean_env, restore_torch_threads):
    import rsneo

    rsneo.load(tiny_model_dir, threads=1)
    assert torch.get_num_threads() == 1
    clean_env.setenv(THREADS_ENV, "2")
    rsneo.load(tiny_model_dir)
    assert torch.get_num_threads() == 2
    with pytest.raises(InputError, match="^threads 0: expected a whole number"):
        rsneo.load(tiny_model_dir, threads=0)
