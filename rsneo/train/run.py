"""`rsneo train`: from a composed config to a finished Lightning run in `out_dir`.

Writes `out_dir/metrics.csv` (CSV logger), `out_dir/tensorboard/`, `out_dir/checkpoints/last.ckpt` (plus
every `checkpoint_every_n_steps`), `out_dir/tokenizer/`, `out_dir/config.yaml` and
`out_dir/loss_curve.png`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from rsneo import atomic
from rsneo.errors import InputError
from rsneo.heads.segmentation import SegmentationHead, SegmentationHeadConfig
from rsneo.model.causal_lm import RSNeoForCausalLM
from rsneo.model.config import RSNeoConfig
from rsneo.model.flex import FlexBuckets, FlexOptions
from rsneo.model.positions import ImageTokens
from rsneo.model.threads import use_threads
from rsneo.model.tokenizer import image_token_ids, load_tokenizer, train_tokenizer
from rsneo.train.callbacks import LossCurve, TokenThroughput, step_progress_bar
from rsneo.train.change import build_change_head
from rsneo.train.checkpoint import RSNEO_KEY, is_checkpoint, load_checkpoint, write_tokenizer_files
from rsneo.train.config import REPO_DIR, resolve_data_root, run_config
from rsneo.train.corpus import corpus_texts
from rsneo.train.csvlog import ResumableCSVLogger
from rsneo.train.datamodule import RSNeoDataModule
from rsneo.train.module import RSNeoTraining
from rsneo.train.scale import build_strategy, fsdp_builds_on_meta, meta_model

BUNDLED_TOKENIZER = Path(__file__).resolve().parents[1] / "assets" / "tokenizer"


@dataclass
class TrainingRun:
    """Everything a run is made of, built but not yet fitted (tests and benchmarks drive it step by step)."""

    config: dict[str, Any]
    tokenizer: Any
    module: RSNeoTraining
    datamodule: RSNeoDataModule
    trainer: L.Trainer
    out_dir: Path


def build_tokenizer(tokenizer: str | None, init_from: str | None, root: Path, vocab_size: int):
    """The run's tokenizer: `tokenizer` (a folder or `bundled`), else the `model.init_from` folder's, else a
    small byte-level BPE trained offline on the corpus texts."""
    if tokenizer == "bundled":
        return load_tokenizer(BUNDLED_TOKENIZER)
    if tokenizer:
        path = Path(tokenizer).expanduser()
        if not path.is_absolute() and not path.exists() and (REPO_DIR / path).exists():
            path = REPO_DIR / path  # a path relative to the repository, as the shipped configs write it
        return load_tokenizer(path)
    if init_from and (Path(init_from) / "tokenizer.json").is_file():
        return load_tokenizer(init_from)  # the vocabulary the starting weights were trained with
    return train_tokenizer(corpus_texts(root), vocab_size - 8)  # a few ids to spare below the model's size


def checkpoint_tokenizer(path: str | Path):
    """The tokenizer stored in a training checkpoint (as plain text files)."""
    import tempfile

    files = load_checkpoint(path, weights=False)[RSNEO_KEY]["tokenizer_files"]
    with tempfile.TemporaryDirectory() as folder:
        write_tokenizer_files(files, Path(folder))
        return load_tokenizer(folder)


def build_model(model_cfg: dict[str, Any], tokenizer, sharded: bool = False) -> torch.nn.Module:
    """The backbone with a vocabulary that fits the tokenizer and its image token ids; from `init_from` if
    set. `model_cfg` is a run config's `model` section (rsneo.train.schema.ModelConfig). `sharded`: the model
    is being built on the meta device for FSDP, which reads `init_from`'s weights rank by rank later
    (`rsneo.train.scale`): only its config is read here."""
    overrides = dict(model_cfg["overrides"])
    unknown = sorted(set(overrides) - {f.name for f in fields(RSNeoConfig)})
    if unknown:
        raise InputError(f"model.overrides: {unknown} are not RSNeoConfig fields (rsneo/model/config.py)")
    ids = image_token_ids(tokenizer)
    backend = str(model_cfg["attn_backend"])
    if model_cfg["init_from"]:
        folder = Path(model_cfg["init_from"])
        if sharded:
            model = RSNeoForCausalLM(RSNeoConfig.load(folder / "config.json"))
        else:
            model = RSNeoForCausalLM.from_pretrained(folder).train()  # loads in eval mode
        model.config.attn_backend = backend  # read at each forward by the backbone (the same object)
        if len(tokenizer) > model.config.vocab_size or model.config.img_context_token_id != ids.context:
            raise InputError(
                f"model.init_from {model_cfg['init_from']}: its vocabulary ({model.config.vocab_size}, "
                f"<IMG_CONTEXT> = {model.config.img_context_token_id}) does not match the tokenizer "
                f"({len(tokenizer)} tokens, <IMG_CONTEXT> = {ids.context}); pass its own tokenizer"
            )
        return model
    preset = RSNeoConfig.from_preset(model_cfg["preset"])
    config = RSNeoConfig.from_preset(
        model_cfg["preset"],
        **{
            "vocab_size": max(preset.vocab_size, len(tokenizer)),
            "img_start_token_id": ids.start,
            "img_end_token_id": ids.end,
            "img_context_token_id": ids.context,
            "eos_token_id": tokenizer.eos_token_id,
            "attn_backend": backend,
            **overrides,
        },
    )
    return RSNeoForCausalLM(config)


def flex_options(model_cfg: dict[str, Any]) -> FlexOptions:
    """The run's Flex bucket ladder; refused (one message, exit 2) when it cannot hold `model.max_tokens`."""
    buckets = FlexBuckets(tuple(model_cfg["flex_lengths"]), tuple(model_cfg["flex_rows"]))
    buckets.check_holds(int(model_cfg["max_tokens"]))
    return FlexOptions(buckets=buckets)


def build_segmentation_head(cfg: dict[str, Any], model: torch.nn.Module) -> torch.nn.Module | None:
    if float(cfg["objectives"]["segmentation"]["weight"]) <= 0:
        return None
    options = {k: v for k, v in cfg["objectives"]["segmentation"]["head"].items() if v is not None}
    return SegmentationHead(SegmentationHeadConfig(hidden_size=model.config.hidden_size, **options))


def build_trainer(cfg: dict[str, Any], out_dir: Path) -> L.Trainer:
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    t = cfg["trainer"]
    loggers: list[Any] = [ResumableCSVLogger(save_dir=str(out_dir), name="", version="")]
    if t["tensorboard"]:
        loggers.append(
            TensorBoardLogger(save_dir=str(out_dir), name="tensorboard", version="", default_hp_metric=False)
        )
    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=str(out_dir / "checkpoints"),
            filename="step{step:06d}",
            auto_insert_metric_name=False,
            every_n_train_steps=int(t["checkpoint_every_n_steps"]),
            save_top_k=-1,
            save_last=True,
        ),
        LearningRateMonitor(logging_interval="step"),
        TokenThroughput(int(t["log_every_n_steps"])),
    ]
    if t["progress_bar"]:
        callbacks.append(step_progress_bar(int(t["max_steps"]), int(t["log_every_n_steps"])))
    if cfg["loss_curve"]:
        callbacks.append(LossCurve(out_dir))
    return L.Trainer(
        accelerator=t["accelerator"],
        devices=t["devices"],
        num_nodes=int(t["num_nodes"]),
        strategy=build_strategy(t),
        precision=t["precision"],
        max_steps=int(t["stop_at_step"] or t["max_steps"]),
        max_epochs=-1,  # the run is bounded by max_steps (the data stream is exactly that long)
        accumulate_grad_batches=int(t["accumulate_grad_batches"]),
        gradient_clip_val=float(cfg["stage"]["grad_clip"] or 0) or None,
        log_every_n_steps=int(t["log_every_n_steps"]),
        **validation_options(t),
        num_sanity_val_steps=0,
        logger=loggers,
        callbacks=callbacks,
        enable_progress_bar=bool(t["progress_bar"]),
        enable_model_summary=False,
        default_root_dir=str(out_dir),
        deterministic=t["accelerator"] == "cpu",
        use_distributed_sampler=False,  # StepSampler gives each rank its own share of the stream
    )


def set_cpu_threads(t: dict[str, Any]) -> int | None:
    """CPU runs use `trainer.threads` intra-op threads, else the product commands' policy with the cores
    shared by the run's `devices` processes (rsneo.model.threads), set deliberately: torch's default
    over-subscribes a shared machine. GPU runs keep torch's default."""
    if t["accelerator"] != "cpu":
        return None
    devices = int(t["devices"]) if str(t["devices"]).isdigit() else 1
    return use_threads(t["threads"], "trainer.threads", processes=devices)


def validation_options(t: dict[str, Any]) -> dict[str, Any]:
    """Trainer options for the validation loop: `val_batches` held-out batches every `val_every_n_steps`."""
    every = int(t["val_every_n_steps"])
    if every <= 0:
        return {"limit_val_batches": 0}
    accumulate = int(t["accumulate_grad_batches"])
    return {
        "limit_val_batches": int(t["val_batches"]),
        "val_check_interval": every * accumulate,  # counted in batches
        "check_val_every_n_epoch": None,
    }


def build_run(cfg: DictConfig | dict[str, Any]) -> TrainingRun:
    """Tokenizer, model, objectives, data and trainer for a composed config (or a dict of the same keys)."""
    config = run_config(cfg)
    flex = flex_options(config["model"])  # a ladder that cannot hold max_tokens stops here, before any output
    L.seed_everything(int(config["seed"]), workers=True, verbose=False)
    set_cpu_threads(config["trainer"])
    root = resolve_data_root(config["data_root"])
    out_dir = Path(config["out_dir"]).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    model_cfg = config["model"]
    if config["resume"]:  # the vocabulary the checkpoint was trained with travels inside it
        tokenizer = checkpoint_tokenizer(config["resume"])
    else:
        vocab_size = RSNeoConfig.from_preset(model_cfg["preset"]).vocab_size
        tokenizer = build_tokenizer(config["tokenizer"], model_cfg["init_from"], root, vocab_size)
    on_meta = fsdp_builds_on_meta(config["trainer"])
    with meta_model(on_meta):  # FSDP fills each rank's own shard (rsneo.train.scale)
        model = build_model(model_cfg, tokenizer, sharded=on_meta)
    model.backbone.flex = flex
    # prediction groups bands as the model was trained (rsneo.data.frames.model_band_groups)
    model.config.band_groups = config["data"]["band_groups"]
    module = RSNeoTraining(
        model, config, tokenizer, build_segmentation_head(config, model), build_change_head(config, model)
    )
    datamodule = RSNeoDataModule(
        config["data"], root, tokenizer, ImageTokens.of(model.config),
        int(config["trainer"]["max_steps"]) * int(config["trainer"]["accumulate_grad_batches"]),
        int(config["seed"]), policy=model.config.mask_policy,
        num_workers=int(config["trainer"]["num_workers"]),
        val_batches=validation_options(config["trainer"]).get("limit_val_batches", 0),
        token_size=model.config.token_size,
    )  # fmt: skip
    trainer = build_trainer(config, out_dir)
    return TrainingRun(config, tokenizer, module, datamodule, trainer, out_dir)


def train(cfg: DictConfig | dict[str, Any]) -> TrainingRun:
    """Build and fit a run; resumes from `cfg.resume` (a Lightning checkpoint) when set.

    A run that fails before its first checkpoint (corrupt shards, a bad option found late) leaves its output
    folder as it found it: nothing of it is worth keeping or resuming from.
    """
    out_dir = Path(str(cfg["out_dir"])).expanduser().resolve()
    before = set(out_dir.iterdir()) if out_dir.is_dir() else None
    try:
        run = build_run(cfg)
        if run.trainer.is_global_zero:
            atomic.write_text(run.out_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(run.config)))
            run.tokenizer.save_pretrained(str(run.out_dir / "tokenizer"))
        resume = run.config["resume"]
        if resume and not is_checkpoint(resume):
            raise InputError(
                f"resume: {resume}: expected a Lightning checkpoint (file, or FSDP folder), found none"
            )
        run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=resume or None, weights_only=True)
    except BaseException:
        if int(os.environ.get("RANK", "0")) == 0:
            _remove_what_this_run_wrote(out_dir, before)
        raise
    return run


def _remove_what_this_run_wrote(out_dir: Path, before: set[Path] | None) -> None:
    """Undo a failed run's outputs unless it saved a checkpoint (then they are the run to resume)."""
    import shutil

    if not out_dir.is_dir() or any((out_dir / "checkpoints").glob("*.ckpt")):
        return
    if before is None:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for path in set(out_dir.iterdir()) - before:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
