"""`rsneo` commands: train, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsneo.cli.app import app, check_output_folder

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def config_groups() -> str:
    """The config groups of `rsneo train` and their options, read from the shipped config folder (no Hydra
    import); `learn_experiment` belongs to `rsneo learn --config`."""
    groups = sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "learn_experiment")
    return "; ".join(f"{g.name}=" + "|".join(sorted(f.stem for f in g.glob("*.yaml"))) for g in groups)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=f"Config groups: {config_groups()}. Examples: rsneo train experiment=smoke out_dir=runs/smoke | "
    "rsneo train model=demo data=sen1floods11 trainer.max_steps=500 | "
    "rsneo train experiment=smoke resume=runs/smoke/checkpoints/last.ckpt",
)
def train(
    ctx: typer.Context,
    show: Annotated[bool, typer.Option("--show", help="Print the composed config and exit.")] = False,
) -> None:
    """Train with Hydra overrides KEY=VALUE; any config value can be set, e.g. trainer.max_steps=50 or
    model.attn_backend=sdpa. Unknown keys and values of the wrong type are refused before the run starts (the
    keys and their types: rsneo/train/schema.py; --show lists them all).

    Writes OUT_DIR/metrics.csv, OUT_DIR/checkpoints/last.ckpt, TensorBoard logs and OUT_DIR/loss_curve.png.
    See docs/training.md.
    """
    from omegaconf import OmegaConf

    from rsneo.api import training_overrides
    from rsneo.train.config import load_config

    cfg = load_config(training_overrides(ctx.args, "rsneo train"))
    if show:
        typer.echo(OmegaConf.to_yaml(cfg))
        return
    if cfg.finetune.task:  # experiment=finetune_change|finetune_segment: the run of `rsneo finetune`
        from rsneo.cli.finetune import run_finetune

        run_finetune(cfg)
        return
    from rsneo.train.run import train as run_training

    run = run_training(cfg)
    typer.echo(f"trained {run.trainer.global_step} steps; outputs in {run.out_dir}")


@app.command()
def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="Lightning checkpoint written by `rsneo train` (.ckpt).")
    ],
    folder: Annotated[Path, typer.Argument(help="Folder to write (from_pretrained layout).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty FOLDER.")] = False,
) -> None:
    """Export a training checkpoint to a model folder: backbone, heads and tokenizer (safetensors, no
    pickle)."""
    from rsneo.train.export import export_checkpoint

    check_output_folder(folder)
    out = export_checkpoint(checkpoint, folder, overwrite)
    typer.echo(f"exported {checkpoint} to {out}")


if __name__ == "__main__":  # `python -m rsneo.cli.train KEY=VALUE ...`, for launchers such as torchrun
    import sys

    from rsneo.cli import run_app

    sys.exit(run_app(["train", *sys.argv[1:]]))
