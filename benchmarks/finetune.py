"""`rsneo finetune` against TorchGeo's own trainers: same data, chips and CPU seconds, same held-out test.

Sets (../shared/data; nothing here is shipped, LEVIR-CD is for academic research only):
- levir: the 8 LEVIR-CD crops (256^2 RGB pairs, 0.5 m, building change), leave-two-pairs-out rotated over
  all 8 (4 folds, pairs sorted by name: fold k tests pairs 2k and 2k+1 and trains on the other 6). Peers:
  `ChangeDetectionTask` with `fcsiamdiff` (ResNet-18 encoder) and `changevit` (ViT-Tiny/16 with its ResNet-18
  detail-capture branch), random init.
- s2 / s1: the Sen1Floods11 chip Spain_7370579 (hand-labelled water; Sentinel-2 L1C 13 bands / Sentinel-1
  VV+VH), spatial split: train on the left half (columns 0-255), test on the right half (256-511), which the
  bundled model never saw. Peer: `SemanticSegmentationTask` U-Net (ResNet-18 encoder), random init.

Protocol, identical for every method of a fold: the labelled training samples are normalised once
(`rsneo.train.finetune_data.prepare`, the sensor's statistics), validation is held out of them by the same
seeded split (`split_samples` with `finetune.val=auto`: one whole training pair of LEVIR's six, spatial
blocks of the one Sen1Floods11 half; the test data are never seen), the training chips are the
same seeded draws with the same dihedral augmentation (`TrainingChips`), validation runs every epoch, the best
checkpoint by validation F1 is kept, early stopping has the same patience, and training stops at the same CPU
budget of this process (`CpuBudget`; one thread each, validation included). rsneo is `rsneo.train.finetune.
finetune` (the command's run) from the bundled model, scored through the products (`rsneo change` /
`rsneo segment` on the written model folder); the peers are TorchGeo's models with their own loss
(cross-entropy, ignoring unlabelled pixels), optimizer and schedule (AdamW 1e-3, ReduceLROnPlateau on the
validation loss), scored on the same whole test images. Scores: F1, IoU, precision, recall and kappa of the
change (water) class, boundary F1 (2 px) and recall of objects smaller than one 32 x 32 token; per fold and
pooled over all test pixels.

Every choice of rsneo's defaults (head sizes, loss, learning rate, epochs) was made on inner validation of
fold 0's training pairs only, and the whole-pair validation on folds 1-3; see docs/training.md for what that
means. `s2dev` / `s1dev` train on the top and test on the bottom of the training half alone (`--folds 1`: the
other way round): an inner split for trying a change (`--override KEY=VALUE`) without the held-out right half.

Run from the repository root (results are appended to --results, finished runs are skipped when run again):
    python benchmarks/finetune.py [--sets levir,s2,s1] [--folds 0,1,2,3] [--methods rsneo,peers]
                                  [--cpu-seconds 600] [--seed 0] [--override KEY=VALUE ...]
                                  [--results benchmarks/finetune_results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from finetune_report import report  # beside this script
from torch import nn

from rsneo.data.frames import model_band_groups
from rsneo.data.labelled import ClassTable, Sample, change_pairs, mask_chips
from rsneo.heads.features import frame_pixels
from rsneo.heads.system import load_system
from rsneo.train.config import load_config
from rsneo.train.finetune import CpuBudget, build_trainer, finetune, loader, training_pairs
from rsneo.train.finetune_data import TrainingChips, ValidationSamples, prepare, split_samples
from rsneo.train.finetune_metrics import ShapeScores, best_cut, metric_collection
from rsneo.train.finetune_module import FinetuneModule

DATA = Path(os.environ.get("RSNEO_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
WATER = "0=land,1=water"
PEERS = {
    "levir": ("fcsiamdiff", "changevit"),
    "s2": ("unet",),
    "s1": ("unet",),
    "s2dev": ("unet",),
    "s1dev": ("unet",),
}
SETTINGS = {
    "levir": {"tile": 256, "batch": 4},
    "s2": {"tile": 128, "batch": 4},
    "s1": {"tile": 128, "batch": 4},
}
SETTINGS |= {f"{name}dev": SETTINGS[name] for name in ("s2", "s1")}


# ---- data ------------------------------------------------------------------------------------------------


def levir_fold(fold: int, work: Path) -> tuple[Path, list[str]]:
    """A change folder of links to the 6 training pairs of `fold`, and the 2 test pair names."""
    names = sorted(p.stem for p in (DATA / "levir_cd" / "A").glob("*.png"))
    test = names[2 * fold : 2 * fold + 2]
    root = work / f"levir_fold{fold}"
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            link = root / folder / f"{name}.png"
            if name not in test and not link.exists():
                link.symlink_to(DATA / "levir_cd" / folder / f"{name}.png")
    return root, test


def flood_halves(sensor: str, work: Path, dev: bool = False, fold: int = 0) -> dict[str, Path]:
    """The chip's image and label cut into left (train) and right (test) GeoTIFFs. `dev`: the training half
    alone cut into its top (train) and bottom (test), under the same keys, for choosing rsneo's defaults
    without the held-out right half; dev `fold` 1 swaps them (train on the bottom, test on the top)."""
    import rasterio
    from rasterio.windows import Window

    folder = DATA / "sen1floods11"
    sources = {
        "image": next((folder / sensor.upper()).glob("*.tif")),
        "label": next((folder / "Labels").glob("*.tif")),
    }
    top, bottom = Window(0, 0, 256, 256), Window(0, 256, 256, 256)
    windows = (
        {"left": (bottom if fold else top), "right": (top if fold else bottom)}
        if dev
        else {"left": Window(0, 0, 256, 512), "right": Window(256, 0, 256, 512)}
    )
    out = {}
    for half, window in windows.items():
        for kind, path in sources.items():
            target = work / f"{sensor}{f'_dev{fold}' if dev else ''}_{half}_{kind}.tif"
            if not target.exists():
                with rasterio.open(path) as src:
                    profile = {k: v for k, v in src.profile.items()
                               if k not in ("blockxsize", "blockysize", "tiled")}  # fmt: skip
                    profile |= {"width": window.width, "height": window.height,
                                "transform": src.window_transform(window)}  # fmt: skip
                    with rasterio.open(target, "w", **profile) as dst:
                        dst.write(src.read(window=window))
                        dst.descriptions = src.descriptions
            out[f"{half}_{kind}"] = target
    return out


# ---- scoring ---------------------------------------------------------------------------------------------


class Scores:
    """Pooled confusion counts of the class of interest (1) and the shape scores, over test images."""

    def __init__(self) -> None:
        self.metrics = metric_collection(2, binary=True)
        self.shapes = ShapeScores(2, binary=True)
        self.counts = np.zeros(4)  # tp, fp, fn, tn

    def update(self, predicted: np.ndarray, reference: np.ndarray) -> None:
        self.metrics.update(torch.from_numpy(predicted).long(), torch.from_numpy(reference).long())
        self.shapes.update(predicted, reference)
        known = reference >= 0
        p, t = predicted[known] == 1, reference[known] == 1
        self.counts += [(p & t).sum(), (p & ~t).sum(), (~p & t).sum(), (~p & ~t).sum()]

    def compute(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.metrics.compute().items()} | self.shapes.compute()


# ---- the peer, in the same loop --------------------------------------------------------------------------


class PeerModule(FinetuneModule):
    """A TorchGeo task's model, loss, optimizer and schedule, trained and validated in rsneo's loop (the same
    chips, validation scores, checkpointing and budget)."""

    def __init__(self, task: nn.Module, kind: str, classes: tuple[str, ...]) -> None:
        super().__init__(nn.Module(), task.model, None, kind, [classes], {})
        self.peer = task

    def logits(self, batch: dict) -> torch.Tensor:
        frames, samples = int(batch["frames"]), batch["labels"].shape[0]
        pixels, _ = frame_pixels(batch["inputs"].images, samples, frames)  # (B, frames, bands, H, W)
        return self.peer(pixels if self.task == "change" else pixels[:, 0])  # (B, 2, H, W)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.peer.criterion(self.logits(batch), batch["labels"])
        self.log("train/loss", loss.detach(), batch_size=batch["labels"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.logits(batch)
        self.log("val_loss", self.peer.criterion(logits, batch["labels"]), batch_size=1)  # its scheduler's
        self.score(logits, batch)

    def configure_optimizers(self):
        return self.peer.configure_optimizers()  # TorchGeo's: AdamW, ReduceLROnPlateau on val_loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rsneo"] = {"peer": True}


def peer_task(name: str, bands: int) -> nn.Module:
    from torchgeo.trainers import ChangeDetectionTask, SemanticSegmentationTask

    common = {"weights": None, "in_channels": bands, "task": "multiclass", "num_classes": 2, "loss": "ce",
              "ignore_index": -1}  # fmt: skip
    if name == "unet":
        return SemanticSegmentationTask(model="unet", backbone="resnet18", **common)
    backbone = "resnet18" if name == "fcsiamdiff" else "vit_tiny_patch16_224"
    return ChangeDetectionTask(model=name, backbone=backbone, **common)


# ---- one run ---------------------------------------------------------------------------------------------


def run_config(
    set_name: str, data: dict, budget: float, work: Path, seed: int, overrides: tuple[str, ...] = ()
) -> object:
    """The fine-tune config of this run (the rsneo run itself; the peers read its data and loop settings)."""
    s = SETTINGS[set_name]
    common = [f"out_dir={work / 'run'}", f"finetune.out={work / 'model'}", "finetune.overwrite=true",
              f"finetune.cpu_seconds={budget}", "finetune.max_minutes=null", "finetune.max_epochs=1000",
              "trainer.threads=1", "trainer.progress_bar=false", f"data.tile={s['tile']}",
              f"data.batch_size={s['batch']}", f"seed={seed}", *overrides]  # fmt: skip
    if set_name == "levir":
        return load_config(["experiment=finetune_change", f"data.root={data['root']}", *common])
    entry = f"[{{images: {data['left_image']}, masks: {data['left_label']}, classes: '{WATER}', ignore: -1}}]"
    return load_config(["experiment=finetune_segment", f"finetune.segment={entry}", *common])


def samples_of(set_name: str, data: dict) -> list[Sample]:
    if set_name == "levir":
        return training_pairs(Path(data["root"]))
    return mask_chips(data["left_image"], data["left_label"], ClassTable.parse(WATER, -1))


def train_peer(name: str, set_name: str, cfg, samples: list[Sample]) -> tuple[PeerModule, float]:
    """The peer trained on the very chips and validation split rsneo's run used; returns it and its CPU s."""
    from rsneo.train.config import run_config as plain

    config = plain(cfg)
    ft, data = config["finetune"], config["data"]
    system = load_system(None)  # for the token size, image ids and band grouping prediction uses
    items = [prepare(s, model_band_groups(system.config), system.config.token_size) for s in samples]
    items, _ = split_samples(items, [s.split for s in samples], ft["val"], ft["val_share"], ft["val_block"],
                             ft["val_margin"], config["seed"])  # fmt: skip
    chips = TrainingChips(items, system.config, data["tile"], data["batch_size"], ft["steps_per_epoch"],
                          config["seed"])  # fmt: skip
    task = peer_task(name, items[0].pixels.shape[1])
    kind = "change" if set_name == "levir" else "segment"
    module = PeerModule(task, kind, items[0].classes)
    budget = CpuBudget(ft["cpu_seconds"])
    run_dir = Path(config["out_dir"]).with_name(f"peer_{name}")
    trainer = build_trainer(config, run_dir, budget)
    validation = loader(ValidationSamples(items, system.config))
    trainer.fit(module, train_dataloaders=loader(chips), val_dataloaders=validation)
    best = trainer.checkpoint_callback.best_model_path
    if best:
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    module.eval()
    if kind == "change":  # rsneo's calibration, given to the peer too: the cut of its best validation F1
        with torch.no_grad():
            pairs = [(peer_logit(module.logits(b)), b["labels"]) for b in validation]
        module.cut = best_cut(
            torch.cat([p.flatten() for p, _ in pairs]), torch.cat([t.flatten() for _, t in pairs])
        )
    return module, budget.used()


def peer_logit(logits: torch.Tensor) -> torch.Tensor:
    """A two-class output as one change logit (softmax of two = sigmoid of their difference)."""
    return logits[:, 1] - logits[:, 0]


@torch.no_grad()
def peer_predict(module: PeerModule, item, config, cut: float | None = None) -> np.ndarray:
    """The peer's decision: TorchGeo's argmax, or the change logit above `cut`."""
    from rsneo.train.finetune_data import chip_batch

    logits = module.logits(chip_batch([item], [(item.pixels, item.train)], config))
    decision = logits.argmax(1) if cut is None else (peer_logit(logits) > cut).long()
    return decision[0].numpy()


def score_rsneo(
    set_name: str, model: Path, data: dict, test: list[str], work: Path
) -> tuple[Scores, dict[str, float]]:
    """rsneo through its products on the model folder it wrote: `rsneo change` / `rsneo segment`; and, for
    segmentation, the share of the labelled test pixels the map left as "none of these" (scored as not
    water: the peers never abstain, so a reader of the scores should see how much rsneo did)."""
    import rasterio

    from rsneo.predict.change import detect_change
    from rsneo.predict.requests import ChangeRequest, SegmentRequest
    from rsneo.predict.segment import segment_raster

    system = load_system(model)
    scores = Scores()
    if set_name == "levir":
        for name in test:
            pair = [DATA / "levir_cd" / d / f"{name}.png" for d in ("A", "B")]
            out = detect_change(system, ChangeRequest(rasters=tuple(pair), out=work / f"change_{name}"))
            with rasterio.open(out.cog) as src:
                predicted = src.read(1).astype(np.int64)
            label = change_pairs_label(name)
            scores.update(predicted, label)
        return scores, {}
    request = SegmentRequest(raster=data["right_image"], classes=("land", "water"), out=work / "segment",
                             confidence=False)  # fmt: skip
    out = segment_raster(system, request)
    with rasterio.open(out.cog) as src:
        predicted = src.read(1).astype(np.int64)  # 0 land, 1 water, 2 none of these (counted as wrong)
    label = flood_label(data["right_label"])
    scores.update(np.where(predicted == 1, 1, 0), label)
    return scores, {"abstained": float((predicted[label >= 0] == 2).mean())}


def change_pairs_label(name: str) -> np.ndarray:
    return LEVIR_LABELS.setdefault(
        name, next(s for s in change_pairs(DATA / "levir_cd") if s.name == name).mask
    )


LEVIR_LABELS: dict[str, np.ndarray] = {}


def flood_label(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return ClassTable.parse(WATER, -1).indices(src.read(1).astype(np.float32), path)


def score_peer(
    module: PeerModule, set_name: str, data: dict, test: list[str], cut: float | None = None
) -> Scores:
    system = load_system(None)
    groups, token = model_band_groups(system.config), system.config.token_size
    scores = Scores()
    if set_name == "levir":
        tests = [s for s in change_pairs(DATA / "levir_cd") if s.name in test]
    else:
        tests = mask_chips(data["right_image"], data["right_label"], ClassTable.parse(WATER, -1))
    for sample in tests:
        item = prepare(sample, groups, token)
        h, w = sample.mask.shape
        scores.update(peer_predict(module, item, system.config, cut)[:h, :w], sample.mask)
    return scores


def one_run(
    set_name: str,
    fold: int,
    method: str,
    budget: float,
    work: Path,
    seed: int,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Train `method` on `fold` of `set_name` and score it on the held-out data."""
    torch.manual_seed(seed)
    if set_name == "levir":
        root, test = levir_fold(fold, work)
        data = {"root": root}
    else:
        dev = set_name.endswith("dev")
        data = flood_halves(set_name.removesuffix("dev"), work, dev, fold)
        test = [f"{'top' if fold else 'bottom'} of the training half" if dev else "right half"]
    cfg = run_config(set_name, data, budget, work / f"{set_name}{fold}_{method}", seed, overrides)
    started = time.process_time()
    if method == "rsneo":
        result = finetune(cfg)
        cpu = result.cpu_seconds
        scores, abstained = score_rsneo(set_name, result.out, data, test, work / f"{set_name}{fold}_{method}")
        extra = {"epochs": result.epochs, "best_epoch": result.best_epoch, "validation": result.scores,
                 **abstained}  # fmt: skip
    else:
        module, cpu = train_peer(method, set_name, cfg, samples_of(set_name, data))
        scores = score_peer(module, set_name, data, test)
        cut = getattr(module, "cut", None)
        if cut is not None:
            calibrated = score_peer(module, set_name, data, test, cut)
            extra_cut = {"scores_cut": calibrated.compute(), "counts_cut": calibrated.counts.tolist()}
        best_epoch = None if module.best_epoch is None else module.best_epoch + 1
        extra = (extra_cut if cut is not None else {}) | {
            "epochs": module.current_epoch, "best_epoch": best_epoch, "validation": {"f1": module.best},
        }  # fmt: skip
    shutil.rmtree(work / f"{set_name}{fold}_{method}", ignore_errors=True)  # checkpoints and model copies
    return {
        "set": set_name, "fold": fold, "method": method, "test": test, "train_cpu_s": round(cpu, 1),
        "total_cpu_s": round(time.process_time() - started, 1), "scores": scores.compute(),
        "counts": scores.counts.tolist(), **extra,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="levir,s2,s1")
    parser.add_argument(
        "--folds",
        default="0,1,2,3",
        help="LEVIR folds; s1dev/s2dev: 0 (train top), 1 (train bottom); s1 and s2 have one",
    )
    parser.add_argument("--methods", default="rsneo,peers", help="rsneo and/or peer names; 'peers': all")
    parser.add_argument("--cpu-seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        default=[Path("benchmarks/finetune_results.jsonl")],
        help="the results file runs append to; with --report, any number of them",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a config override of rsneo's run (and the loop settings the peers share)",
    )
    parser.add_argument("--report", action="store_true", help="only print the tables of --results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    done = [json.loads(line) for f in args.results if f.is_file() for line in f.read_text().splitlines()]
    if not args.report:
        if len(args.results) > 1:
            parser.error("--results: runs append to one file; several are for --report")
        warnings.simplefilter("ignore")
        work = Path(tempfile.mkdtemp(prefix="rsneo-finetune-bench-"))
        for set_name in args.sets.split(","):
            folds = [int(f) for f in args.folds.split(",")]
            if set_name != "levir":
                folds = [f for f in folds if f < 2] if set_name.endswith("dev") else [0]
            methods = [m for m in args.methods.split(",") if m != "peers"]
            methods += list(PEERS[set_name]) if "peers" in args.methods.split(",") else []
            for fold in folds:
                for method in methods:
                    if method != "rsneo" and method not in PEERS[set_name]:
                        continue
                    run = (set_name, fold, method, args.seed, args.override)
                    if any(
                        (r["set"], r["fold"], r["method"], r.get("seed", 0), r.get("overrides", [])) == run
                        for r in done
                    ):
                        continue
                    print(
                        f"{set_name} fold {fold} {method}: training ({os.getloadavg()[0]:.1f} load)",
                        flush=True,
                    )
                    row = one_run(set_name, fold, method, args.cpu_seconds, work, args.seed,
                                  tuple(args.override))  # fmt: skip
                    row |= {"seed": args.seed, "overrides": args.override}
                    row["load_average"] = round(os.getloadavg()[0], 1)
                    print(json.dumps(row), flush=True)
                    with args.results[0].open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    done.append(row)
    print(report(done))


if __name__ == "__main__":
    main()
