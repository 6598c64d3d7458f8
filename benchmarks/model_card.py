"""The model card's numbers: the bundled model against simple baselines on data it never trained on.

Water: the Sen1Floods11 chip segmented whole with the classes "water, land" through `rsneo segment`'s code
path, scored as water IoU against the hand labels on its right half (columns 256-511; `experiment=demo` trains
on tiles of the left half only), next to MNDWI > 0 and MNDWI > Otsu's threshold. The left half's score (seen
in training) and the score of the right half segmented alone (its own normalisation statistics, no context)
are printed too, and the held-out score through the training code's own evaluation
(`rsneo.train.evaluate`: 64-pixel tiles standardised with the sensor's statistics, as in training).
Change: the Taizhou Landsat-7 pair (never trained on), mapped through `rsneo change`'s code path, scored on
the sparse reference (change.bmp / unchanged.bmp) next to change-vector analysis with Otsu's threshold.
Answers: a few questions through `rsneo ask`'s code path (the held-out right half, the Taizhou pair), with the
reference value beside each, so the card shows real answers rather than chosen ones.

Usage: python benchmarks/model_card.py [--model rsneo/assets/model] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from rsneo import baselines
from rsneo.demo import BUNDLED_MODEL, bundled_samples
from rsneo.predict.requests import AskRequest, ChangeRequest, SegmentRequest

HELD_OUT = Window(col_off=256, row_off=0, width=256, height=512)  # right half of the 512 x 512 chip
WATER_CLASSES = ["water", "land"]


def crop(src_path: Path, window: Window, dst_path: Path) -> Path:
    """Write `window` of a raster with its georeference, band names and tags (so its sensor is known)."""
    with rasterio.open(src_path) as src:
        data = src.read(window=window)
        profile = src.profile | {"width": window.width, "height": window.height}
        profile["transform"] = src.window_transform(window)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(data)
            dst.update_tags(**src.tags())
            for i, name in enumerate(src.descriptions, start=1):
                if name:
                    dst.set_band_description(i, name)
    return dst_path


def read_band_file(path: Path, window: Window | None = None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(window=window)


def water_scores(system, workdir: Path) -> dict[str, float]:
    from rsneo.predict.segment import segment_raster

    samples = bundled_samples()
    s2 = read_band_file(samples.sentinel2, HELD_OUT)  # (13, 512, 256)
    label = read_band_file(samples.water_label, HELD_OUT)[0]  # (512, 256)
    valid, water = label != -1, label == 1
    index = baselines.mndwi(s2[2], s2[11])  # B3 green, B11 swir16
    scores = {
        "MNDWI > 0": baselines.iou(index > 0, water, valid),
        "MNDWI > Otsu": baselines.iou(index > baselines.otsu_threshold(index[valid]), water, valid),
    }
    if system is not None:
        water_class = WATER_CLASSES.index("water")
        whole = segment_raster(
            system, SegmentRequest(raster=samples.sentinel2, classes=WATER_CLASSES, out=workdir / "whole")
        )
        predicted = read_band_file(whole.cog, HELD_OUT)[0] == water_class
        scores["rsneo segment, whole chip"] = baselines.iou(predicted, water, valid)
        seen = Window(col_off=0, row_off=0, width=256, height=512)
        label_seen = read_band_file(samples.water_label, seen)[0]
        predicted_seen = read_band_file(whole.cog, seen)[0] == water_class
        scores["rsneo segment, left half (trained)"] = baselines.iou(
            predicted_seen, label_seen == 1, label_seen != -1
        )
        alone = crop(samples.sentinel2, HELD_OUT, workdir / "held_out_S2.tif")
        predicted_alone = read_band_file(
            segment_raster(
                system, SegmentRequest(raster=alone, classes=WATER_CLASSES, out=workdir / "alone")
            ).cog
        )[0]
        scores["rsneo segment, right half alone"] = baselines.iou(
            predicted_alone == water_class, water, valid
        )
        scores["rsneo, training pipeline"] = training_pipeline_iou(system, samples.sentinel2.parents[2])
    return scores


def training_pipeline_iou(system, root: Path) -> float:
    """Held-out water IoU as training sees the data: right-half 64-px tiles, sensor statistics, the model's
    band groups."""
    from rsneo.train.corpus import WATER_CLASSES as TRAINED
    from rsneo.train.evaluate import class_iou, predict_chips
    from rsneo.train.teach_words import flood_chips

    chips = flood_chips(system, root, split="val")
    predicted = predict_chips(system.model, system.segmentation, system.tokenizer, chips)
    return class_iou(predicted, chips, TRAINED.index("water"))


def change_scores(system, workdir: Path) -> dict[str, dict[str, float]]:
    from rsneo.predict.change import detect_change

    samples = bundled_samples()
    before, after = read_band_file(samples.landsat_before), read_band_file(samples.landsat_after)
    changed = read_band_file(samples.changed_reference)[0] > 0
    unchanged = read_band_file(samples.unchanged_reference)[0] > 0
    scores = {"CVA + Otsu": baselines.binary_scores(baselines.cva_otsu(before, after), changed, unchanged)}
    if system is not None:
        outputs = detect_change(
            system,
            ChangeRequest(rasters=[samples.landsat_before, samples.landsat_after], out=workdir / "change"),
        )
        predicted = read_band_file(outputs.cog)[0] == 1  # 0 no change, 1 change, 255 no data
        scores["rsneo"] = baselines.binary_scores(predicted, changed, unchanged)
    return scores


def answers(system, workdir: Path) -> list[dict[str, str]]:
    """The model's answers to fixed questions on held-out data, with what the labels say."""
    from rsneo.heads.generation import CAPTION_QUESTION, CHANGE_QUESTION
    from rsneo.predict.ask import ask

    samples = bundled_samples()
    label = read_band_file(samples.water_label, HELD_OUT)[0]
    water = 100 * float((label == 1).sum() / max(1, (label != -1).sum()))
    alone = crop(samples.sentinel2, HELD_OUT, workdir / "held_out_S2_ask.tif")
    pair = [samples.landsat_before, samples.landsat_after]
    changed = read_band_file(samples.changed_reference)[0] > 0
    unchanged = read_band_file(samples.unchanged_reference)[0] > 0
    share = 100 * float(changed.sum() / max(1, changed.sum() + unchanged.sum()))
    asked = [
        ([alone], "How much of this image is water?", f"hand labels: {water:.0f}% water"),
        ([alone], CAPTION_QUESTION, f"hand labels: {water:.0f}% water"),
        (pair, CHANGE_QUESTION, f"sparse reference: {share:.0f}% of the checked pixels changed"),
    ]
    return [
        {
            "input": ", ".join(p.name for p in rasters),
            "question": question,
            "answer": ask(system, AskRequest(rasters=rasters, question=question, max_side=256)).text,
            "reference": reference,
        }
        for rasters, question, reference in asked
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="model folder (default: bundled)")
    parser.add_argument("--baselines-only", action="store_true", help="skip the model")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    system = None
    if not args.baselines_only:
        from rsneo.heads.system import load_system

        system = load_system(args.model)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        water = water_scores(system, Path(tmp))
        change = change_scores(system, Path(tmp))
        asked = answers(system, Path(tmp)) if system is not None else []
    print(f"model: {'none' if system is None else args.model}")
    print("water IoU, Sen1Floods11 Spain_7370579 right half (held out), hand labels:")
    for name, value in water.items():
        print(f"  {name:34s} {value:.3f}")
    print("change, Taizhou Landsat-7 2000/2003, sparse reference (4,227 changed / 17,163 unchanged px):")
    print(
        f"  {'method':14s} "
        + " ".join(f"{k:>9s}" for k in ("accuracy", "kappa", "precision", "recall", "f1"))
    )
    for name, s in change.items():
        print(
            f"  {name:14s} "
            + " ".join(f"{s[k]:9.3f}" for k in ("accuracy", "kappa", "precision", "recall", "f1"))
        )
    for item in asked:
        print(f"ask {item['input']}: {item['question']!r} -> {item['answer']!r} ({item['reference']})")
    print(f"({time.perf_counter() - start:.1f} s)")
    if args.json:
        numbers = {"model": str(args.model), "water_iou": water, "change": change, "answers": asked}
        args.json.write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
