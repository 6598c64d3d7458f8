"""How the bundled model treats paraphrases of its trained classes, on data it never trained on.

Each name is typed in place of "water" (`rsneo segment --classes "NAME, land"` on the whole Sen1Floods11 chip,
through `segment_raster`) and scored as water IoU against the hand labels on the chip's right half (columns
256-511, held out from training; see benchmarks/model_card.py). Beside each: the name's nearest trained class
and cosine similarity in the model's text space (`rsneo.heads.vocabulary.match_classes`) and whether rsneo
calls it trained, and whether the name itself was taught (one of the class's `synonyms` in `vocabulary.json`,
`rsneo.heads.class_words`) or is left for the model to generalise to. Also printed: the held-out IoU of both
trained classes (what `vocabulary.json` records; `--write` records them there).

Usage: python benchmarks/vocabulary.py [--model rsneo/assets/model] [--json out.json] [--write]
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
from rsneo.predict.requests import SegmentRequest

HELD_OUT = Window(col_off=256, row_off=0, width=256, height=512)  # as benchmarks/model_card.py
PARAPHRASES = ["water", "river and lakes", "surface water", "open water", "lake", "flood water", "water body"]
# and the paraphrases never taught (rsneo.heads.class_words.UNTAUGHT_PARAPHRASES) not listed above
OTHER_NAMES = ["land", "dry land", "vegetation", "forest", "built-up", "urban area", "cropland", "banana"]


def read(path: Path, window: Window) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as src:
            return src.read(1, window=window)


def write_held_out(folder: Path, vocabulary, scores: dict[str, float]) -> None:
    """Record the held-out IoU of each trained class measured here in the folder's vocabulary.json."""
    from dataclasses import replace

    from rsneo.heads.vocabulary import save_vocabulary

    data = (
        "Sen1Floods11 Spain_7370579 right half (columns 256-511, never trained on), hand labels"
        "{}; benchmarks/vocabulary.py"
    )
    classes = tuple(
        replace(c, held_out={"iou": round(scores[c.name], 3),
                             "data": data.format(" (not water)" if c.name == "land" else "")})
        if c.name in scores else c
        for c in vocabulary.classes
    )  # fmt: skip
    path = save_vocabulary(folder, replace(vocabulary, classes=classes))
    print(f"wrote the held-out scores into {path}")


def main() -> None:
    from rsneo.heads.system import load_system
    from rsneo.heads.vocabulary import match_classes
    from rsneo.predict.segment import segment_raster

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="record the held-out IoUs in vocabulary.json")
    args = parser.parse_args()
    system = load_system(args.model)
    samples = bundled_samples()
    label = read(samples.water_label, HELD_OUT)  # (512, 256): 1 water, 0 land, -1 no data
    valid = label != -1
    from rsneo.heads.class_words import UNTAUGHT_PARAPHRASES

    names = PARAPHRASES + [n for n in UNTAUGHT_PARAPHRASES if n not in PARAPHRASES]
    matches = {m.name: m for m in match_classes(system, names + OTHER_NAMES) or []}
    vocabulary = system.vocabulary
    taught = {w for c in vocabulary.classes for w in (c.name, *c.synonyms)} if vocabulary else set()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, name in enumerate(names):
            start = time.perf_counter()
            out = segment_raster(
                system,
                SegmentRequest(
                    raster=samples.sentinel2, classes=[name, "land"], out=Path(tmp) / str(i), confidence=False
                ),
            )
            classes = read(out.cog, HELD_OUT)
            row = {"name": name, "water_iou": baselines.iou(classes == 0, label == 1, valid)}
            if name == "water":
                row["land_iou"] = baselines.iou(classes == 1, label == 0, valid)
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
    reference = rows[0]["water_iou"]
    print(f"held-out IoU of the trained classes: water {reference:.3f}, land {rows[0]['land_iou']:.3f}")
    print(
        "\nname typed instead of 'water' | taught | water IoU (right half) | minus 'water' | "
        "nearest trained, cosine"
    )
    for row in rows:
        m = matches.get(row["name"])
        near = f"{m.nearest} {m.similarity:.3f} ({'trained' if m.trained else 'untrained'})" if m else "-"
        row["taught"] = row["name"] in taught
        print(
            f"{row['name']:18s} | {'yes' if row['taught'] else 'no':3s} | {row['water_iou']:.3f} | "
            f"{row['water_iou'] - reference:+.3f} | {near}"
        )
    print("\nother names: nearest trained class, cosine")
    for name in OTHER_NAMES:
        m = matches.get(name)
        if m:
            print(f"{name:18s} {m.nearest:6s} {m.similarity:.3f} {'trained' if m.trained else 'untrained'}")
    if args.write and vocabulary is not None:
        write_held_out(args.model, vocabulary, {"water": reference, "land": rows[0]["land_iou"]})
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "matches": {k: vars(v) for k, v in matches.items()}}, indent=1)
        )


if __name__ == "__main__":
    main()
