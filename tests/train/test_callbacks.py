"""Loss curves from a metrics.csv as Lightning's CSV logger writes it."""

from __future__ import annotations

from rsneo.train.callbacks import plot_loss_curves, read_metrics


def test_loss_curve_png_from_sparse_metrics_rows(tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(
        "epoch,lr-AdamW/pg1,step,train/loss,train/lm_loss\n"
        ",0.001,0,,\n0,,0,4.5,3.0\n,0.001,1,,\n0,,1,4.0,2.5\n"
    )
    series = read_metrics(metrics)
    assert series["train/loss"] == [(0, 4.5), (1, 4.0)] and series["lr-AdamW/pg1"] == [(0, 0.001), (1, 0.001)]
    png = plot_loss_curves(metrics, tmp_path / "loss_curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".*"))


def test_cpu_runs_set_their_thread_count_deliberately(monkeypatch):
    import os

    import torch

    from rsneo.model import threads
    from rsneo.train.run import set_cpu_threads

    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)  # an idle machine: the policy is the fair share
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)

    before = torch.get_num_threads()
    try:
        assert set_cpu_threads({"accelerator": "cpu", "devices": 1, "threads": 1}) == 1
        assert torch.get_num_threads() == 1
        cores = len(os.sched_getaffinity(0))
        env = os.environ.pop("OMP_NUM_THREADS", None)
        try:
            fair = min(max(1, cores // 2), threads.MAX_POLICY_THREADS)
            assert set_cpu_threads({"accelerator": "cpu", "devices": 2, "threads": None}) == fair
            os.environ["OMP_NUM_THREADS"] = "1"
            assert set_cpu_threads({"accelerator": "cpu", "devices": 1, "threads": None}) == 1
        finally:
            os.environ.pop("OMP_NUM_THREADS", None)
            if env is not None:
                os.environ["OMP_NUM_THREADS"] = env
        assert set_cpu_threads({"accelerator": "gpu", "devices": 1}) is None  # torch's default on GPUs
    finally:
        torch.set_num_threads(before)
