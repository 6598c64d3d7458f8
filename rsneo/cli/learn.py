"""`rsneo learn`: teach a model new classes from polygons or points drawn in a GIS.

The same run can be described as a Hydra config (`rsneo/configs/learn.yaml`, experiments in
`rsneo/configs/learn_experiment/`): `--config NAME|FILE` and KEY=VALUE overrides; options typed on the command
line win over the config. Every default is the schema's (`rsneo.train.learn_config`), shown in `--help`.
Heavy modules are imported inside the command so `rsneo --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rsneo.cli.app import app, check_output_folder, err_console, reported_warnings
from rsneo.cli.products import ScoresJsonOption, ThreadsOption
from rsneo.errors import InputError
from rsneo.train.learn_config import LearnConfig, LearnSettings

RUN, TRAIN = LearnConfig(), LearnSettings()  # the defaults the options show (typed: they win over --config)
# command-line option -> key of the learn config (rsneo.train.learn_config.LearnConfig)
OPTION_KEYS = {
    "labels": "labels", "class_field": "class_field", "out": "out", "model": "model", "sensor": "sensor",
    "bands": "bands", "device": "device", "threads": "threads", "overwrite": "overwrite",
    "steps": "settings.steps", "lr": "settings.lr", "folds": "settings.folds",
    "window": "settings.window", "seed": "settings.seed", "features": "settings.features",
}  # fmt: skip


@app.command("learn")
def learn_command(
    ctx: typer.Context,
    rasters: Annotated[
        list[str] | None,
        typer.Argument(help="The raster(s) the labels were drawn on; KEY=VALUE items override the config."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Polygons or points (GeoPackage, Shapefile, GeoJSON; any CRS)."),
    ] = RUN.labels,
    class_field: Annotated[
        str | None, typer.Option("--class-field", help="The field holding each feature's class.")
    ] = RUN.class_field,
    out: Annotated[
        Path | None, typer.Option("--out", help="Model folder to write (a new or empty folder).")
    ] = RUN.out,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="A learn experiment (rsneo/configs/learn_experiment/NAME.yaml) or a YAML file with the keys "
            "of rsneo/configs/learn.yaml; options given here win over it.",
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Model folder to start from. Default: the bundled model.")
    ] = RUN.model,
    sensor: Annotated[
        str | None, typer.Option("--sensor", help="Sensor name when the raster's metadata does not tell.")
    ] = RUN.sensor,
    bands: Annotated[
        str | None, typer.Option("--bands", help="The raster's band names in file order, e.g. B5,B4,B3,B2.")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Training steps of the head.")] = TRAIN.steps,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = TRAIN.lr,
    folds: Annotated[
        int,
        typer.Option(
            "--folds",
            help="Spatial k-fold score: every feature held out once, by a head trained without its fold "
            "(0: no score).",
        ),
    ] = TRAIN.folds,
    features: Annotated[
        str,
        typer.Option(
            "--features",
            help="What the head reads: all (backbone context and raw bands), pixels (raw bands only), or "
            "auto (the better of the two on inner spatial hold-outs of the training features).",
        ),
    ] = TRAIN.features,
    window: Annotated[
        int, typer.Option("--window", help="Window size in pixels (a multiple of 32).")
    ] = TRAIN.window,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the hold-out split and the training.")
    ] = TRAIN.seed,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")
    ] = RUN.overwrite,
    device: Annotated[
        str, typer.Option("--device", help="Device of the backbone pass: cpu, cuda, ...")
    ] = RUN.device,
    threads: ThreadsOption = RUN.threads,
    as_json: ScoresJsonOption = False,
) -> None:
    """Learn new classes from a few polygons or points; writes a model folder for segment/change/ask --model.

    The backbone stays frozen; the segmentation head and one vector per class train in minutes on a CPU.
    Scored by spatial k-fold over whole features (IoU, F1 per class; a class with fewer than 3 features on
    either side of a fold is warned about), then trained on every feature.
    Then: rsneo segment RASTER --model OUT --classes "<the learnt class names>".
    The same run as a Hydra config: --config NAME|FILE [KEY=VALUE ...] (docs/training.md).
    """
    from rsneo.api import learn
    from rsneo.model.threads import use_threads

    values = dict(locals())  # (a comprehension has its own locals before Python 3.12)
    given = {
        name: value
        for name, value in values.items()
        if name in OPTION_KEYS and ctx.get_parameter_source(name).name != "DEFAULT"
    }
    items = list(rasters or [])
    overrides = [a for a in items if "=" in a and not Path(a).exists()]
    paths = [a for a in items if a not in overrides]
    run = learn_run(config, overrides, paths, given)
    check_output_folder(run.out)
    run.threads = use_threads(run.threads)  # resolved once: `learn` loads the model with this count
    with reported_warnings() as warned:
        result = learn(run, show_progress=not as_json)
    if as_json:
        typer.echo(_document(result, warned))
        return
    _print_result(result)


def _document(result: Any, warned: list[str]) -> str:
    """`rsneo learn --json`: the model folder, its classes and hold-out scores (rsneo.cli.documents)."""
    from dataclasses import asdict

    from rsneo.cli.documents import completed

    holdout = result.record["holdout"]
    scores = {name: asdict(score) for name, score in result.scores.items()}
    return completed(
        "learn", warned, model=str(result.out), classes=list(result.classes),
        scores={n: {k: s[k] for k in ("iou", "f1", "pixels", "features")} for n, s in scores.items()},
        mean_iou=holdout["mean_iou"], mean_f1=holdout["mean_f1"],
        features=result.record["features"]["features"], record=str(Path(result.out) / "learn.json"),
    )  # fmt: skip


def _print_result(result: Any) -> None:
    """The hold-out score per class, the feature choice, the vocabulary kept, and how to use the folder."""
    from rich.console import Console
    from rich.table import Table

    holdout_info = result.record["holdout"]
    table = Table(title=f"hold-out score ({holdout_info['method']})")
    for column in ("class", "IoU", "F1", "held-out pixels", "held-out features", "trained on (fewest)"):
        table.add_column(column, justify="left" if column == "class" else "right")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    for name, score in result.scores.items():
        trained = "n/a" if score.trained_on is None else f"{score.trained_on:,}"
        counts = (f"{score.pixels:,}", f"{score.features:,}", trained)
        table.add_row(name, fmt(score.iou), fmt(score.f1), *counts)
    if result.scores:
        Console().print(table)
        typer.echo(f"mean IoU {fmt(holdout_info['mean_iou'])}, mean F1 {fmt(holdout_info['mean_f1'])}")
    else:
        err_console.print("[yellow]warning:[/] --folds 0: the learnt classes are not scored", highlight=False)
    choice = result.record["features"]
    inner = ", ".join(f"{k} {v:.3f}" for k, v in choice["inner_loss"].items())
    typer.echo(f"head reads: {choice['features']}" + (f" (inner hold-out loss: {inner})" if inner else ""))
    base = result.record["base_classes"]
    if base["kept"] or base["dropped"]:
        kept = ", ".join(base["kept"]) or "none"
        dropped = ", ".join(base["dropped"]) or "none"
        typer.echo(f"starting model's classes kept in the vocabulary: {kept}; left out: {dropped}")
    typer.echo(f"model folder: {result.out} ({holdout_info['written_model']})")
    names = ", ".join(result.classes)
    typer.echo(f'use it: rsneo segment RASTER --model {result.out} --classes "{names}"')


def learn_run(
    config: str | None, overrides: list[str], rasters: list[str], given: dict[str, Any]
) -> LearnConfig:
    """The run: the learn config (`config`: an experiment name or a YAML file; KEY=VALUE `overrides`), then
    the rasters and options typed on the command line (`given`) on top, as the typed schema."""
    from omegaconf import OmegaConf

    cfg = learn_config(config, overrides)
    for name, value in given.items():
        if name == "bands" and isinstance(value, str):
            value = [b.strip() for b in value.split(",") if b.strip()]
        OmegaConf.update(cfg, OPTION_KEYS[name], str(value) if isinstance(value, Path) else value)
    if rasters:
        cfg.rasters = list(rasters)
    missing = [
        key for key in ("labels", "class_field", "out") if OmegaConf.is_missing(cfg, key) or cfg[key] is None
    ]
    if not cfg.rasters:
        missing.insert(0, "RASTER")
    if missing:
        raise InputError(
            f"rsneo learn: missing {', '.join(missing)} (give RASTER --labels --class-field --out, or a "
            "--config that sets rasters, labels, class_field and out)"
        )
    return OmegaConf.to_object(cfg)


def learn_config(config: str | None, overrides: list[str]):
    """The composed learn config: the schema, the experiment or YAML file `config`, the overrides."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from rsneo.train.config import CONFIG_DIR, load_config

    path = Path(config) if config is not None else None
    if path is not None and (path.suffix in (".yaml", ".yml") or path.exists()):
        if not path.is_file():
            raise InputError(f"--config {config}: file not found")
        cfg = load_config([], config_name="learn")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
        except yaml.YAMLError as exc:  # a syntax error, or a tag such as !!python/object that is never run
            raise InputError(
                f"--config {config}: not plain YAML ({' '.join(str(exc).split())}); expected the keys of "
                "rsneo/configs/learn.yaml as plain values"
            ) from None
        except (OmegaConfBaseException, ValueError) as exc:
            raise InputError(f"--config {config}: cannot apply it ({str(exc).splitlines()[0]})") from None
        return cfg
    if config is not None and not (CONFIG_DIR / "learn_experiment" / f"{config}.yaml").is_file():
        names = sorted(p.stem for p in (CONFIG_DIR / "learn_experiment").glob("*.yaml"))
        raise InputError(
            f"--config {config}: no such learn experiment (expected one of {names} or a YAML file)"
        )
    experiment = [f"learn_experiment={config}"] if config is not None else []
    return load_config([*experiment, *overrides], config_name="learn")
