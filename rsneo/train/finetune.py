"""`rsneo finetune change|segment` and `rsneo train experiment=finetune_*`: labelled data -> a model folder.

The run: read the labelled samples (`rsneo.data.labelled`), normalise them as prediction does and split off
validation (`rsneo.train.finetune_data`), train a fine-tuned head (`rsneo.heads.finetuned`) with Lightning,
validating every epoch (F1, IoU, precision, recall, kappa, boundary F1, small-object recall), keeping the
best checkpoint by validation F1 and stopping early when it no longer improves. Then, for change, the cut
with the best validation F1 is moved to P = 0.5; the model folder is written (`finetune_export`).

`out_dir` holds the checkpoints and `metrics.csv`; starting the same run again resumes from its last
checkpoint (a changed config starts afresh).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig

from rsneo import atomic
from rsneo.data.frames import model_band_groups
from rsneo.data.labelled import ClassTable, Sample, change_pairs, mask_chips
from rsneo.errors import InputError
from rsneo.heads.finetuned import (
    FinetunedChangeHead,
    FinetunedChangeHeadConfig,
    FinetunedSegmentationHead,
    FinetunedSegmentationHeadConfig,
    is_finetuned,
)
from rsneo.heads.system import System, load_system
from rsneo.io.read import PixelUnitsWarning
from rsneo.train.callbacks import step_progress_bar
from rsneo.train.checkpoint import load_checkpoint
from rsneo.train.config import load_config, run_config
from rsneo.train.csvlog import ResumableCSVLogger
from rsneo.train.finetune_backbone import set_trainable
from rsneo.train.finetune_calibrate import calibrate, calibrate_abstention, said
from rsneo.train.finetune_data import TrainingChips, ValidationSamples, prepare, split_samples
from rsneo.train.finetune_export import HEAD_NAMES, write_model_folder
from rsneo.train.finetune_module import MONITOR, FinetuneModule
from rsneo.train.run import set_cpu_threads

RUN_CONFIG = "finetune_config.json"


@dataclass
class FinetuneResult:
    """What a fine-tune did and scored; `summary()` is what the command prints."""

    out: Path
    task: str
    trained: str
    samples: int
    validation: str
    scores: dict[str, float]
    epochs: int
    best_epoch: int | None  # counted from 1
    cpu_seconds: float
    class_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    continued: bool = False  # the head continued the starting folder's fine-tuned head
    abstention: dict[str, float] | None = None  # segmentation: `calibrate_abstention`'s record

    def summary(self) -> str:
        s = self.scores
        head = "change head" if self.task == "change" else "segmentation head"
        lines = [
            f"fine-tuned the {head}: {self.trained}; {self.samples} labelled sample(s), "
            f"{self.epochs} epoch(s) "
            f"(best {self.best_epoch}), {self.cpu_seconds:.0f} CPU s",
            f"validation ({self.validation}): F1 {s['f1']:.3f}, IoU {s['iou']:.3f}, precision "
            f"{s['precision']:.3f}, recall {s['recall']:.3f}, kappa {s['kappa']:.3f}, boundary F1 "
            f"{s['boundary_f1']:.3f}, small-object recall {s['small_object_recall']:.3f}",
        ]
        lines += [f"  {name}: IoU {v['iou']:.3f}, F1 {v['f1']:.3f}" for name, v in self.class_scores.items()]
        if self.abstention:
            lines.append(said(self.abstention))
        lines.append(f"model written to {self.out}")
        return "\n".join(lines)


class CpuBudget(L.Callback):
    """Stops training once the process has spent `seconds` of CPU time in `fit` (resumed runs count what the
    interrupted one spent): the equal budget of `benchmarks/finetune.py`; or at `stop_at_step`."""

    def __init__(self, seconds: float | None, stop_at_step: int | None = None) -> None:
        self.seconds, self.spent, self.started = seconds, 0.0, None
        self.stop_at_step = stop_at_step

    def used(self) -> float:
        return self.spent + (time.process_time() - self.started if self.started is not None else 0.0)

    def share(self) -> float:
        """The share of the budget used (0 without a budget): the learning-rate schedule decays with it."""
        return min(1.0, self.used() / self.seconds) if self.seconds else 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.seconds is not None and self.used() >= self.seconds:
            trainer.should_stop = True
        if self.stop_at_step is not None and trainer.global_step >= self.stop_at_step:
            trainer.should_stop = True  # `trainer.stop_at_step`: this invocation ends, the run resumes later

    def state_dict(self) -> dict[str, float]:
        return {"spent": self.used()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.spent = float(state["spent"])


def training_pairs(root: Path, **options: Any) -> list[Sample]:
    """The pairs of a change folder to fine-tune on. Splits come from `list/` only: a `test_` name prefix
    (how LEVIR-CD's crops are named, and what `rsneo evaluate` reads as the test split) does not keep a pair
    out of training in a folder the user gave to train on."""
    pairs = change_pairs(root, **options)
    if not (root / "list").is_dir():
        pairs = [replace(p, split=None) for p in pairs]
    return pairs


def load_samples(config: dict[str, Any]) -> list[Sample]:
    """The run's labelled samples: the change folder `data.root`, or every `finetune.segment` dataset."""
    ft, data = config["finetune"], config["data"]
    options = {"sensor": data["sensor"], "bands": data["file_bands"]}
    if ft["task"] == "change":
        if not data["root"]:
            raise InputError("data.root: expected the change folder (A/, B/, label/), got none")
        table = ClassTable.parse(ft["change_classes"]) if ft["change_classes"] else None
        if table is not None and len(table.names) != 2:
            raise InputError(
                f"--classes {ft['change_classes']!r}: the change head maps change against no change; "
                f"expected two classes (the unchanged value first), got {len(table.names)}"
            )
        return training_pairs(Path(data["root"]), pixel_size=ft["pixel_size"], classes=table, **options)
    if not ft["segment"]:
        raise InputError("finetune.segment: expected at least one dataset (images, masks, classes), got none")
    samples = []
    for entry in ft["segment"]:
        table = ClassTable.parse(entry["classes"], entry["ignore"])
        samples += mask_chips(Path(entry["images"]), Path(entry["masks"]), table, **options)
    return samples


def build_head(system: System, task: str, ft: dict[str, Any]) -> tuple[torch.nn.Module, bool]:
    """A new fine-tuned head, or the starting folder's own when it is a fine-tuned head of the same sizes (a
    second fine-tune continues it: True); a new segmentation head starts with the folder's class
    projection."""
    options = {
        "hidden_size": system.config.hidden_size, "widths": list(ft["widths"]), "tokens": ft["tokens"],
        "polarisation": True,
    }  # fmt: skip
    if task == "change":
        head = FinetunedChangeHead(FinetunedChangeHeadConfig(**options))
        old = system.change
    else:
        template = system.segmentation.config.prompt_template
        head = FinetunedSegmentationHead(FinetunedSegmentationHeadConfig(prompt_template=template, **options))
        old = system.segmentation
    same = is_finetuned(old) and all(getattr(old.config, k) == v for k, v in options.items())
    if same and HEAD_NAMES[task] in system.trained_heads:
        head.load_state_dict(old.state_dict())
        return head, True
    if task == "segment" and old.class_proj[0].in_features == system.config.hidden_size:
        head.class_proj.load_state_dict(old.class_proj.state_dict())
        head.log_scale.data.copy_(old.log_scale.data)
    return head, False


def build_trainer(config: dict[str, Any], run_dir: Path, budget: CpuBudget) -> L.Trainer:
    """Lightning's trainer: validation every epoch, the best checkpoint by validation F1 and the latest one,
    early stopping, a progress bar over all steps (with the time left), metrics.csv."""
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    ft, t = config["finetune"], config["trainer"]
    callbacks: list[Any] = [
        ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="best", monitor=MONITOR, mode="max",
                        save_top_k=1, auto_insert_metric_name=False),
        # every epoch's end, improved or not (Lightning's `save_last` only saves when `best` does): the
        # checkpoint a restarted run continues from
        ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="last", save_top_k=1,
                        enable_version_counter=False),
        EarlyStopping(monitor=MONITOR, mode="max", patience=int(ft["patience"])),
        LearningRateMonitor(logging_interval="epoch"),
        budget,
    ]  # fmt: skip
    if t["progress_bar"]:
        callbacks.append(step_progress_bar(int(ft["max_epochs"]) * int(ft["steps_per_epoch"]), 1))
    minutes = ft["max_minutes"]
    return L.Trainer(
        accelerator=t["accelerator"],
        devices=1,
        precision=t["precision"],
        max_epochs=int(ft["max_epochs"]),
        max_time={"minutes": float(minutes)} if minutes else None,
        gradient_clip_val=float(config["stage"]["grad_clip"] or 0) or None,
        log_every_n_steps=int(t["log_every_n_steps"]),
        num_sanity_val_steps=0,
        logger=ResumableCSVLogger(save_dir=str(run_dir), name="", version=""),
        callbacks=callbacks,
        enable_progress_bar=bool(t["progress_bar"]),
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )


def resume_point(config: dict[str, Any], run_dir: Path) -> str | None:
    """The checkpoint to continue from: `resume`, else the run folder's last checkpoint when the folder was
    written by this same config (anything else there is an older run: removed, and the run starts afresh)."""
    if config["resume"]:
        if not Path(config["resume"]).is_file():
            raise InputError(f"resume: {config['resume']}: expected a checkpoint file, found none")
        return str(config["resume"])
    last, stored = run_dir / "checkpoints" / "last.ckpt", run_dir / RUN_CONFIG
    same = stored.is_file() and json.loads(stored.read_text()) == comparable(config)
    if same and last.is_file():
        return str(last)
    for stale in ("checkpoints", "metrics.csv"):
        path = run_dir / stale
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return None


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that decide what a run computes (not where it writes, nor how it shows it)."""
    keep = {k: v for k, v in config.items() if k not in ("out_dir", "resume", "name")}
    keep["finetune"] = {
        k: v for k, v in config["finetune"].items() if k not in ("out", "overwrite", "max_minutes")
    }
    keep["trainer"] = {
        k: v for k, v in config["trainer"].items() if k not in ("progress_bar", "stop_at_step")
    }
    return json.loads(json.dumps(keep, default=str))


def finetune(cfg: DictConfig | dict[str, Any]) -> FinetuneResult:
    """Run the fine-tune a composed config describes and write its model folder."""
    config = run_config(cfg)
    ft = config["finetune"]
    if ft["task"] not in HEAD_NAMES:
        raise InputError(f"finetune.task: expected change or segment, got {ft['task']!r}")
    out = Path(ft["out"] or Path(config["out_dir"]) / "model").expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not ft["overwrite"]:
        raise InputError(
            f"{out}: expected a new or empty folder for the model, found files (use --overwrite)"
        )
    L.seed_everything(int(config["seed"]), workers=True, verbose=False)
    set_cpu_threads(config["trainer"])
    system = load_system(config["model"]["init_from"])
    samples = read_samples(config)
    items, validation = split(config, system, samples)
    trained = set_trainable(system.model, ft["train"], int(ft["lora_rank"]))
    head, continued = build_head(system, ft["task"], ft)
    stage = {k: config["stage"][k] for k in ("lr", "weight_decay", "warmup_steps", "min_lr_ratio")}
    taxonomies = list(dict.fromkeys(item.classes for item in items))
    module = FinetuneModule(system.model, head, system.tokenizer, ft["task"], taxonomies, settings=ft | stage,
                            record={"run_config": config})  # fmt: skip
    budget, calibration = fit(config, module, items, system.config)
    best_epoch = None if module.best_epoch is None else module.best_epoch + 1
    result = FinetuneResult(
        out, ft["task"], trained, len(samples), validation, dict(module.scores), module.trainer.current_epoch,
        best_epoch, budget.used(), per_class(module), continued, calibration,
    )  # fmt: skip
    write_model_folder(system, module.head, ft, samples, result, config)
    return result


def read_samples(config: dict[str, Any]) -> list[Sample]:
    """`load_samples`, with the rasters' missing georeference said once rather than once per file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PixelUnitsWarning)
        samples = load_samples(config)
    unreferenced = sum(not s.scene.attrs.get("crs") for s in samples)
    if unreferenced and config["finetune"]["pixel_size"] is None:
        warnings.warn(
            f"{unreferenced} of {len(samples)} labelled samples have no georeference: domain.json records no "
            "pixel size for them (give --pixel-size METRES to record one)",
            PixelUnitsWarning,
            stacklevel=3,
        )
    return samples


def split(config: dict[str, Any], system: System, samples: list[Sample]) -> tuple[list, str]:
    """The samples normalised as prediction reads their files, with their validation labels split off."""
    ft = config["finetune"]
    token, groups = system.config.token_size, model_band_groups(system.config)
    prepared = [prepare(s, groups, token, config["data"]["sensor"]) for s in samples]
    return split_samples(
        prepared, [s.split for s in samples], ft["val"], float(ft["val_share"]), int(ft["val_block"]),
        int(ft["val_margin"]), int(config["seed"]),
    )  # fmt: skip


def fit(
    config: dict[str, Any], module: FinetuneModule, items: list, model_config
) -> tuple[CpuBudget, dict[str, float] | None]:
    """Train (resuming the run folder's last checkpoint of the same config), load the best checkpoint, for
    change move the cut to the best validation F1, for segmentation calibrate "none of these"
    (`calibrate_abstention`, whose result it returns), and validate once more for the final scores."""
    ft, data = config["finetune"], config["data"]
    chips = TrainingChips(items, model_config, int(data["tile"]), int(data["batch_size"]),
                          int(ft["steps_per_epoch"]), int(config["seed"]))  # fmt: skip
    validation = loader(ValidationSamples(items, model_config))
    run_dir = Path(config["out_dir"]).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = resume_point(config, run_dir)
    atomic.write_text(run_dir / RUN_CONFIG, json.dumps(comparable(config), indent=1))
    budget = CpuBudget(ft["cpu_seconds"], config["trainer"]["stop_at_step"])
    module.spent = budget.share
    trainer = build_trainer(config, run_dir, budget)
    trainer.fit(module, train_dataloaders=loader(chips), val_dataloaders=validation, ckpt_path=resume,
                weights_only=True)  # fmt: skip
    best = trainer.checkpoint_callback.best_model_path
    if best:
        module.load_state_dict(load_checkpoint(best)["state_dict"])
    calibration = None
    if ft["task"] == "change":
        calibrate(module, validation)
    else:
        calibration = calibrate_abstention(module, validation)
    trainer.validate(module, dataloaders=validation, verbose=False)
    return budget, calibration


def loader(dataset) -> torch.utils.data.DataLoader:
    """Items are whole batches already (`chip_batch`)."""
    return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, collate_fn=as_is)


def as_is(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


def per_class(module: FinetuneModule) -> dict[str, dict[str, float]]:
    """Segmentation: {class name: {"iou": ..., "f1": ...}} of the last validation."""
    if module.task == "change":
        return {}
    out: dict[str, dict[str, float]] = {}
    for (name, metric), value in module.class_scores.items():
        out.setdefault(name, {})[metric] = value
    return out


# ---- benchmarks/gpu_check.py part 4: a short run of the LEVIR-CD recipe, for its speed --------------------
def synthetic_pairs(root: Path, pairs: int, size: int, seed: int = 0) -> Path:
    """`pairs` RGB PNG pairs in the change layout (A/ B/ label/): B is A plus bright squares, labelled 255."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        before = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
        after, label = before.copy(), np.zeros((size, size), np.uint8)
        for _ in range(6):
            side = int(rng.integers(size // 16, size // 6))
            row, col = rng.integers(0, size - side, 2)
            after[row : row + side, col : col + side] = rng.integers(180, 250, 3)
            label[row : row + side, col : col + side] = 255
        for folder, pixels in (("A", before), ("B", after), ("label", label)):
            Image.fromarray(pixels).save(root / folder / f"pair_{i}.png")
    return root


def gpu_check(device: str, dry_run: bool) -> Iterator[dict]:
    """One row per run: the recipe's settings, steps, seconds per step, chips per second, peak MiB."""
    cuda = device.startswith("cuda") and torch.cuda.is_available() and not dry_run
    tile, batch, steps = (256, 16, 20) if cuda else (64, 2, 2)
    with tempfile.TemporaryDirectory(prefix="rsneo-gpu-check-") as scratch:
        root = synthetic_pairs(Path(scratch) / "pairs", 8, 256 if cuda else 128)
        overrides = [
            "experiment=finetune_levircd" if cuda else "experiment=finetune_change",
            f"data.root={root}", f"out_dir={Path(scratch) / 'run'}",
            f"finetune.out={Path(scratch) / 'model'}",
            f"data.tile={tile}", f"data.batch_size={batch}", f"finetune.steps_per_epoch={steps}",
            "finetune.max_epochs=1", "finetune.val=blocks", "finetune.val_block=64", "finetune.train=lora",
            "trainer.progress_bar=false",
        ]  # fmt: skip
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = finetune(load_config(overrides))
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    precision = "bf16-mixed" if cuda else "CPU fp32 (dry run)"
    yield {
        "what": f"change, LoRA, {tile} px chips x {batch}, {precision}",
        "steps": steps, "s_per_step": round(seconds / steps, 3),
        "chips_per_s": round(steps * batch / seconds, 1),
        "peak_MiB": None if peak is None else round(peak), "val_f1": round(result.scores["f1"], 3),
        "note": "wall time includes reading the pairs, validation and writing the model folder",
    }  # fmt: skip
