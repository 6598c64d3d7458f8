"""Training-step throughput of the smoke experiment: steps/s of `RSNeoTraining` with every objective on real
samples (the tiny model, `experiment=smoke`'s data), and how many backbone passes a step makes.

Each step is what Lightning runs: the losses of one batch (`RSNeoTraining.losses`, whose signature is the same
before and after issue 14's one-pass step, so two checkouts compare by `PYTHONPATH`), backward, AdamW. Prints
one line per round. On a shared machine compare the CPU time per step (one thread): wall time moves with
the load.

    PYTHONPATH=. .venv/bin/python benchmarks/train_step.py --steps 12 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per round (after 2 warm-up steps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--data-root", default=None, help="sample archives (default: the configured root)")
    args = parser.parse_args()

    import tempfile

    import torch

    import rsneo
    from rsneo.train.config import load_config
    from rsneo.train.run import build_run

    overrides = ["experiment=smoke", f"out_dir={tempfile.mkdtemp(prefix='rsneo-step-')}"]
    if args.data_root:
        overrides.append(f"data_root={args.data_root}")
    run = build_run(load_config(overrides))  # the smoke run's tokenizer, model, objectives and data
    torch.set_num_threads(args.threads)
    module, model = run.module, run.module.model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.datamodule.setup("fit")
        loader = run.datamodule.train_dataloader()
        batches = list(loader)  # the smoke run's own batches (max_steps of them)
    optimizer = module.configure_optimizers()["optimizer"]
    passes = []
    model.backbone.register_forward_hook(lambda *a: passes.append(1))

    def step(index: int) -> None:
        losses = module.losses(batches[index % len(batches)], torch.Generator().manual_seed(index))
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for i in range(2):
        step(i)
    print(f"rsneo from {Path(rsneo.__file__).parent}, {args.threads} thread(s)")
    for r in range(args.rounds):
        passes.clear()
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(args.steps):
            step(i)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(
            f"round {r}: {args.steps / seconds:.2f} steps/s, {1000 * seconds / args.steps:.0f} ms/step wall, "
            f"{1000 * cpu / args.steps:.0f} ms/step CPU, "
            f"{len(passes) / args.steps:.1f} backbone passes/step, {torch.get_num_threads()} thread(s), "
            f"load average {load:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
