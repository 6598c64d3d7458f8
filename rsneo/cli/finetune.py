"""`rsneo finetune change|segment`: train a head on labelled data into a model folder for segment/change/ask.

The commands compose the same config as `rsneo train experiment=finetune_change|finetune_segment` (options
become its keys; KEY=VALUE items override any key) and run `rsneo.train.finetune.finetune`. Checkpoints go
to a hidden run folder beside --out: an interrupted run started again with the same options resumes there;
the folder is removed once the model is written (--keep-run keeps it).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from rsneo.cli.app import app, check_output_folder, reported_warnings
from rsneo.cli.products import ScoresJsonOption, ThreadsOption
from rsneo.errors import InputError

finetune_app = typer.Typer(
    help="Fine-tune a head on your labelled data: change pairs or image/mask rasters -> a model folder.",
    no_args_is_help=True,
)
app.add_typer(finetune_app, name="finetune")

TRAIN_HELP = (
    "What learns beside the head: heads (backbone frozen), prebuffer (patch embedding + pre-buffer layers), "
    "last-N (the last N layers), all, or lora (low-rank adapters, merged into the written model)."
)
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def run_folder(out: Path) -> Path:
    """Where a fine-tune keeps its checkpoints: a hidden folder beside the model folder."""
    out = out.expanduser().resolve()
    return out.parent / f".{out.name}.finetune-run"


def compose(task: str, values: dict[str, Any], overrides: list[str]):
    """The run's config: the experiment, KEY=VALUE `overrides`, then the command's options (`values`, config
    keys) on top (set as values, not parsed as overrides: paths may hold any character)."""
    from omegaconf import OmegaConf

    from rsneo.train.config import load_config

    bad = [a for a in overrides if "=" not in a]
    if bad:
        raise InputError(f"rsneo finetune {task}: unexpected arguments {bad} (KEY=VALUE overrides only)")
    cfg = load_config([f"experiment=finetune_{task}", *overrides])
    for key, value in values.items():
        if value is not None:
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def common_values(out: Path, model: Path | None, train: str, sensor: str | None, bands: str | None,
                  epochs: int | None, device: str, threads: int | None,
                  overwrite: bool) -> dict[str, Any]:  # fmt: skip
    from rsneo.model.threads import resolve_threads

    threads = resolve_threads(threads)  # resolved once; a bad --threads or RSNEO_THREADS: exit 2 here
    return {
        "finetune.out": str(out),
        "out_dir": str(run_folder(out)),
        "model.init_from": str(model) if model else None,
        "finetune.train": train,
        "data.sensor": sensor,
        "data.file_bands": [b.strip() for b in bands.split(",") if b.strip()] if bands else None,
        "finetune.max_epochs": epochs,
        "finetune.overwrite": overwrite or None,
        "trainer.accelerator": "gpu" if device.startswith("cuda") else None,
        "trainer.precision": "bf16-mixed" if device.startswith("cuda") else None,
        "trainer.threads": threads,
    }


def quiet(as_json: bool) -> dict[str, Any]:
    """With --json stdout holds the document alone: no progress bar."""
    return {"trainer.progress_bar": False} if as_json else {}


def run_finetune(cfg, as_json: bool = False) -> None:
    """Fine-tune, print what trained and its validation score (`rsneo finetune` and `rsneo train
    experiment=finetune_*`), or its JSON document; rsneo's warnings once each, Lightning's device and tip
    lines left out."""
    from rsneo.train.finetune import finetune

    if cfg.finetune.out:
        check_output_folder(Path(cfg.finetune.out))
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with reported_warnings() as warned:
        result = finetune(cfg)
    typer.echo(_document(result, warned) if as_json else result.summary())


def _document(result: Any, warned: list[str]) -> str:
    """`rsneo finetune --json`: the model folder and its validation scores (rsneo.cli.documents)."""
    from dataclasses import asdict

    from rsneo.cli.documents import completed
    from rsneo.train.finetune_export import FINETUNE_JSON

    fields = {k: v for k, v in asdict(result).items() if k != "out"}
    return completed(
        "finetune", warned, model=str(result.out), record=str(Path(result.out) / FINETUNE_JSON), **fields
    )


def run(cfg, out: Path, keep_run: bool, as_json: bool) -> None:
    """`run_finetune`, then the run folder beside `out` is removed unless `keep_run`."""
    run_finetune(cfg, as_json)
    if not keep_run:
        shutil.rmtree(run_folder(out), ignore_errors=True)


ModelOption = Annotated[
    Path | None, typer.Option("--model", help="Model folder to start from (default: bundled).")
]
TrainOption = Annotated[str, typer.Option("--train", help=TRAIN_HELP)]
SensorOption = Annotated[
    str | None, typer.Option("--sensor", help="Sensor name when the metadata does not tell.")
]
BandsOption = Annotated[
    str | None, typer.Option("--bands", help="The files' band names in order, e.g. B4,B3,B2.")
]
EpochsOption = Annotated[int | None, typer.Option("--epochs", help="At most this many epochs (default 40).")]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, or cuda (bf16 mixed precision).")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")]
KeepOption = Annotated[bool, typer.Option("--keep-run", help="Keep the checkpoints and metrics.csv.")]
OutOption = Annotated[Path, typer.Option("--out", help="Model folder to write (a new or empty folder).")]


@finetune_app.command("change", context_settings=EXTRA)
def change_command(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="Change folder: A/, B/, label/ (and optionally list/*.txt).")
    ],
    out: OutOption,
    model: ModelOption = None,
    train: TrainOption = "heads",
    classes: Annotated[
        str | None,
        typer.Option("--classes", help='Label values, e.g. "0=no change,1=change" (default 0/1, 0/255).'),
    ] = None,
    pixel_size: Annotated[
        float | None, typer.Option("--pixel-size", help="Metres per pixel of images without georeference.")
    ] = None,
    sensor: SensorOption = None,
    bands: BandsOption = None,
    epochs: EpochsOption = None,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    overwrite: OverwriteOption = False,
    keep_run: KeepOption = False,
    as_json: ScoresJsonOption = False,
) -> None:
    """Fine-tune the change head on labelled pairs (LEVIR-CD, WHU-CD, DSIFN, S2Looking, CDD layout).

    Validation: the pairs of list/val.txt, else spatial blocks of every pair. Then: rsneo change BEFORE AFTER
    --model OUT (the map comes from the fine-tuned head). KEY=VALUE items set any key of
    `rsneo train experiment=finetune_change` (docs/training.md).
    """
    values = common_values(out, model, train, sensor, bands, epochs, device, threads, overwrite) | {
        "data.root": str(folder), "finetune.change_classes": classes, "finetune.pixel_size": pixel_size,
    }  # fmt: skip
    run(compose("change", values | quiet(as_json), list(ctx.args)), out, keep_run, as_json)


@finetune_app.command("segment", context_settings=EXTRA)
def segment_command(
    ctx: typer.Context,
    data: Annotated[
        list[str], typer.Argument(help="IMAGES MASKS (files, or folders matched by name), repeatable.")
    ],
    out: OutOption,
    classes: Annotated[
        list[str],
        typer.Option("--classes", help='Mask values per dataset, e.g. "1=water,2=forest" (repeat).'),
    ],
    ignore: Annotated[
        list[int] | None, typer.Option("--ignore", help="The mask value of unlabelled pixels (per dataset).")
    ] = None,
    model: ModelOption = None,
    train: TrainOption = "heads",
    sensor: SensorOption = None,
    bands: BandsOption = None,
    epochs: EpochsOption = None,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = None,
    overwrite: OverwriteOption = False,
    keep_run: KeepOption = False,
    as_json: ScoresJsonOption = False,
) -> None:
    """Fine-tune the label-as-text segmentation head on image and mask rasters.

    Several IMAGES MASKS pairs, each with its --classes, train one head on all their class names (datasets
    with different taxonomies); vocabulary.json records every class with its validation scores. Then:
    rsneo segment RASTER --model OUT --classes "<names>".
    """
    overrides = [a for a in data if "=" in a and not Path(a).exists()] + list(ctx.args)
    paths = [a for a in data if a not in overrides]
    if len(paths) % 2 or not paths:
        raise InputError(f"rsneo finetune segment: expected IMAGES MASKS pairs, got {len(paths)} path(s)")
    pairs = list(zip(paths[::2], paths[1::2], strict=True))
    if len(classes) not in (1, len(pairs)):
        raise InputError(
            f"--classes: expected one class table per IMAGES MASKS pair ({len(pairs)}), got {len(classes)}"
        )
    ignores = list(ignore or [None])
    if len(ignores) not in (1, len(pairs)):
        raise InputError(f"--ignore: expected one value, or one per IMAGES MASKS pair ({len(pairs)})")
    from rsneo.train.finetune_config import SegmentData

    entries = [  # typed entries: the schema's list of SegmentData takes no plain dicts
        SegmentData(images, masks, classes[i % len(classes)], ignores[i % len(ignores)])
        for i, (images, masks) in enumerate(pairs)
    ]
    values = common_values(out, model, train, sensor, bands, epochs, device, threads, overwrite) | {
        "finetune.segment": entries
    }
    run(compose("segment", values | quiet(as_json), overrides), out, keep_run, as_json)
