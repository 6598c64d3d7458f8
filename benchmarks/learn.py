"""`rsneo learn` against a random forest on the same labelled pixels, on real labelled imagery.

For each set, N labelled points per class (N = 5, 20, 100) are drawn from the training region; rsneo's head
(`rsneo.train.learn_holdout.choose_features` then `rsneo.train.learn_fit.fit_head`, exactly what `rsneo learn`
trains: "auto" chooses between the backbone context with the raw bands and the raw bands only by inner spatial
hold-outs of these training points, never the scored region) and a scikit-learn RandomForest (200 trees,
on the same pixels' normalised band values) learn from them, and both are scored on every labelled pixel of
a spatially separate hold-out region (IoU and F1 per class; rsneo's "none of these" counts as wrong, as in
`segment`). Several seeds per N; the table gives the mean.

Sets (see ../shared/data/README.md; nothing here is shipped):
- sen1floods11-s2 / sen1floods11-s1: the Spain chip's hand-labelled surface water on Sentinel-2 L1C (13
  bands) and on Sentinel-1 (VV, VH). Train: left half; hold-out: right half. Note: the bundled model was
  trained on the left half of this chip's S2/S1 water labels (its model card holds out the right half).
- levir-b: LEVIR-CD "new building" masks on the B (after) image, RGB, 0.5 m. Train on 4 crops, hold out the
  other 4 (whole images). LEVIR-CD is for academic research: test data only, never shipped.
Not used: the eo-learn LULC patch (its land-use labels come with NDVI and DEM only, no band rsneo reads) and
the Taizhou Landsat pair (change, not class, references).

Run from the repository root:
    python benchmarks/learn.py [--sets sen1floods11-s2,levir-b] [--seeds 4] [--steps 300] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

DATA = Path(os.environ.get("RSNEO_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
LEVIR_TRAIN = ["test_102_0512_0000", "test_2_0000_0000", "test_7_0256_0512", "train_36_0512_0512"]
LEVIR_TEST = ["test_121_0768_0256", "test_55_0256_0000", "train_386_0512_0768", "train_412_0512_0768"]


@dataclass
class Scene:
    raster: Path
    labels: np.ndarray  # (H, W) class index, -1 no data
    train: np.ndarray  # (H, W) bool: the region training points are drawn from
    test: np.ndarray  # (H, W) bool: the hold-out region


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def load_set(name: str) -> tuple[list[str], list[Scene]]:
    """Class names (as a user would type them) and the scenes of one benchmark set."""
    import rasterio

    if name.startswith("sen1floods11"):
        folder = DATA / "sen1floods11"
        with rasterio.open(folder / "Labels" / "Spain_7370579_LabelHand.tif") as src:
            label = src.read(1).astype(np.int64)  # -1 no data, 0 not water, 1 water
        left = np.zeros(label.shape, bool)
        left[:, : label.shape[1] // 2] = True
        sub = "S2/Spain_7370579_S2Hand.tif" if name.endswith("s2") else "S1/Spain_7370579_S1Hand.tif"
        return ["land", "water"], [Scene(folder / sub, label, left, ~left)]
    if name == "levir-b":
        scenes = []
        for stem in LEVIR_TRAIN + LEVIR_TEST:
            label = (_png(DATA / "levir_cd" / "label" / f"{stem}.png") > 0).astype(np.int64)
            train = np.full(label.shape, stem in LEVIR_TRAIN)
            scenes.append(Scene(DATA / "levir_cd" / "B" / f"{stem}.png", label, train, ~train))
        return ["other", "new building"], scenes
    raise SystemExit(f"unknown set {name!r}; expected sen1floods11-s2, sen1floods11-s1 or levir-b")


def cache_pixels(system, scenes: list[Scene]):
    """Every labelled pixel is its own feature (id = running pixel index); returns the cached windows and,
    per feature, its class, whether it lies in the training or the hold-out region, and its centre (x, y)
    in pixels (for `rsneo learn`'s inner spatial hold-out that chooses what the head reads)."""
    from rsneo.data.frames import band_layout
    from rsneo.train.learn_pixels import LabelledRaster, labelled_windows

    rasters, classes, region, centres = [], [], [], []
    offset = 0
    for i, scene in enumerate(scenes):
        labelled = scene.labels >= 0
        feature = np.full(scene.labels.shape, -1, np.int64)
        feature[labelled] = offset + np.arange(labelled.sum())
        offset += int(labelled.sum())
        classes.append(scene.labels[labelled])
        rows, cols = np.nonzero(labelled)  # row-major, as the feature ids; scenes side by side, 1 px apart
        centres.append(np.stack([cols + i * (scene.labels.shape[1] + 1), -rows], axis=1).astype(float))
        region.append(np.where(scene.train[labelled], 0, np.where(scene.test[labelled], 1, 2)))
        classes_map = np.where(labelled, scene.labels, -1)
        rasters.append(LabelledRaster(scene.raster, band_layout(scene.raster), classes_map, feature))
    windows = labelled_windows(system, rasters, 256)
    return windows, np.concatenate(classes), np.concatenate(region), np.concatenate(centres)


def sample_points(classes: np.ndarray, region: np.ndarray, n: int, k: int, seed: int) -> np.ndarray:
    """Bool over features: n training-region pixels of each class."""
    rng = np.random.default_rng(seed)
    use = np.zeros(len(classes), bool)
    for c in range(k):
        pool = np.flatnonzero((classes == c) & (region == 0))
        use[rng.choice(pool, size=min(n, len(pool)), replace=False)] = True
    return use


def gather(windows, use: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Normalised band values (n, bands) and classes (n,) of the selected pixels, in window order."""
    xs, ys = [], []
    for w in windows:
        keep = use[w.feature]
        xs.append(w.pixels[:, keep].T.numpy())
        ys.append(w.classes[keep].numpy())
    return np.concatenate(xs), np.concatenate(ys)


def rf_scores(windows, train: torch.Tensor, test: torch.Tensor, names: list[str], seed: int):
    from sklearn.ensemble import RandomForestClassifier

    from rsneo.metrics import confusion_matrix
    from rsneo.train.learn_holdout import scores_from_confusion

    x, y = gather(windows, train)
    forest = RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1).fit(x, y)
    xt, yt = gather(windows, test)
    predicted = forest.predict(xt)
    return scores_from_confusion(confusion_matrix(yt, predicted, len(names), len(names) + 1), names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="sen1floods11-s2,sen1floods11-s1,levir-b")
    parser.add_argument("--points", default="5,20,100")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="default: rsneo learn's default")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--features", default=None, help="auto, all or pixels (default: rsneo learn's)")
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    from rsneo.heads.features import encode_class_prompts
    from rsneo.heads.system import load_system
    from rsneo.train.learn_config import LearnSettings
    from rsneo.train.learn_fit import fit_head
    from rsneo.train.learn_holdout import choose_features, holdout_scores

    system = load_system(args.model)
    settings = LearnSettings(select_rounds=2)  # the two inner splits its published table was measured with
    if args.steps is not None:
        settings.steps = args.steps
    if args.lr is not None:
        settings.lr = args.lr
    if args.features is not None:
        settings.features = args.features
    rows = []
    for set_name in args.sets.split(","):
        names, scenes = load_set(set_name)
        start = time.perf_counter()
        windows, classes, region, centres = cache_pixels(system, scenes)
        cache_s = time.perf_counter() - start
        test = torch.from_numpy(region == 1)
        with torch.no_grad():
            init = encode_class_prompts(system.model, system.tokenizer, names, system.segmentation.config)
        print(f"{set_name}: backbone pass {cache_s:.1f} s, hold-out {int(test.sum()):,} px", flush=True)
        for n in map(int, args.points.split(",")):
            results = {"rsneo": [], "random forest": []}
            times = {"rsneo": 0.0, "random forest": 0.0}
            chosen = {"all": 0, "pixels": 0}
            for seed in range(args.seeds):
                train = torch.from_numpy(sample_points(classes, region, n, len(names), seed))
                settings.seed = seed
                start = time.perf_counter()
                base = system.segmentation
                choice = choose_features(base, init.float().cpu(), windows, train, centres, classes, settings)
                chosen[choice.features] += 1
                fit = replace(settings, features=choice.features)
                head, vectors = fit_head(base, init.float().cpu(), windows, train, fit)
                times["rsneo"] += time.perf_counter() - start
                results["rsneo"].append(holdout_scores(head, vectors, windows, test, names, classes))
                start = time.perf_counter()
                results["random forest"].append(rf_scores(windows, train, test, names, seed))
                times["random forest"] += time.perf_counter() - start
            for method, runs in results.items():
                iou = {c: np.mean([r[c].iou for r in runs]) for c in names}
                f1 = {c: np.mean([r[c].f1 for r in runs]) for c in names}
                rows.append(
                    (set_name, n, method, iou, f1, np.mean(list(iou.values())), times[method] / args.seeds)
                )
                print(_row(rows[-1], names), flush=True)
            print(f"  head reads (seeds): {chosen}", flush=True)
    print()
    print("| set | points/class | method | IoU per class | F1 per class | mean IoU | fit s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(_row(row))


def _row(row, names=None) -> str:
    set_name, n, method, iou, f1, miou, seconds = row
    per_iou = ", ".join(f"{c} {v:.3f}" for c, v in iou.items())
    per_f1 = ", ".join(f"{c} {v:.3f}" for c, v in f1.items())
    return f"| {set_name} | {n} | {method} | {per_iou} | {per_f1} | {miou:.3f} | {seconds:.1f} |"


if __name__ == "__main__":
    main()
