"""`rsneo convert qwen3|neo SRC DST`: turn a base checkpoint into an rsneo model folder."""

from __future__ import annotations

from pathlib import Path

import typer

from rsneo.cli.app import app

convert_app = typer.Typer(
    help="Convert a Hugging Face Qwen3 or a NEO release folder into an rsneo folder (safetensors shards).",
    no_args_is_help=True,
)
app.add_typer(convert_app, name="convert")


def _progress(total: int):
    from rich.progress import Progress

    progress = Progress(transient=True)
    task = progress.add_task("converting shards", total=total + 1)
    return progress, lambda name: progress.update(task, advance=1, description=f"converting {name}")


@convert_app.command("qwen3")
def convert_qwen3_command(
    src: Path = typer.Argument(
        ..., help="Hugging Face Qwen3 folder: config.json, safetensors, tokenizer files."
    ),
    dst: Path = typer.Argument(..., help="Output rsneo folder (created)."),
    prebuffer_layers: int | None = typer.Option(
        None,
        "--prebuffer-layers",
        help="Pre-buffer depth; default: NEO's for Qwen3-1.7B (12) / Qwen3-8B (6).",
    ),
    vision_hidden: int | None = typer.Option(
        None, "--vision-hidden", help="Patch embedding width (default 1024)."
    ),
) -> None:
    """Qwen3 layer i becomes layer i + pre-buffer depth; H/W/S projections start as NEO starts them."""
    from rsneo.model.convert import convert_qwen3, source_shards

    progress, advance = _progress(len(source_shards(src)) if src.is_dir() else 0)
    with progress:
        cfg = convert_qwen3(src, dst, prebuffer_layers, vision_hidden, progress=advance)
    typer.echo(
        f"wrote {dst}: {cfg.num_layers} layers ({cfg.prebuffer_layers} pre-buffer), vocab {cfg.vocab_size}"
    )


@convert_app.command("neo")
def convert_neo_command(
    src: Path = typer.Argument(
        ..., help="NEO release folder (NEO key names, llm_config/vision_config, tokenizer files)."
    ),
    dst: Path = typer.Argument(..., help="Output rsneo folder (created)."),
    prebuffer_layers: int | None = typer.Option(
        None,
        "--prebuffer-layers",
        help="Pre-buffer depth; default: extra_num_layers, else NEO-2.2B's 12 / NEO-9B's 6 by size.",
    ),
) -> None:
    """A NEO checkpoint as an rsneo model: same numbers, plus a spectral axis whose gate starts shut."""
    from rsneo.model.convert import convert_neo, source_shards

    progress, advance = _progress(len(source_shards(src)) if src.is_dir() else 0)
    with progress:
        cfg = convert_neo(src, dst, prebuffer_layers, progress=advance)
    typer.echo(
        f"wrote {dst}: {cfg.num_layers} layers ({cfg.prebuffer_layers} pre-buffer), vocab {cfg.vocab_size}"
    )
