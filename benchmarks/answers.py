"""Do `rsneo ask`'s answers agree with what the model itself maps, and does it abstain when it should?

Question/reference pairs on real samples in ../shared/data (Sen1Floods11 chip and its halves, Landsat pairs
and series, NAIP, LEVIR-CD RGB pairs). References:
- share, area, presence of a class: the class's share of the valid pixels in `rsneo segment`'s map of the same
  raster (`segment_raster`, classes "water, land"); an answer agrees when its value is within 5 percentage
  points (presence: the same yes/no at 0.5 %);
- change: the changed share of the compared area in `rsneo change`'s map of the same dates (`detect_change`);
- buildings ("are there new buildings?"): the new-building share in `rsneo change --of buildings`'s map of the
  same dates (LEVIR-CD: `--pixel-size 0.5`, as `rsneo ask --pixel-size 0.5` is asked);
- abstain: a change question over one date, a class the model was never trained on, a question of a kind it
  was not trained for; the answer agrees when it says it cannot answer.
Printed: every question with its answer and reference, then agreement (quantitative answers within 5 points)
and abstention rates (abstained when it should / when it should not). Hand labels are shown beside the
Sen1Floods11 answers for context: the model's map is the reference here, not the truth.

Usage: python benchmarks/answers.py [--model rsneo/assets/model] [--max-side 512] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_card import crop, read_band_file  # noqa: E402  (the benchmarks' shared helpers)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLASSES = ["water", "land"]
TOLERANCE = 5.0  # percentage points


PUCALLPA = {"sensor": "landsat5_tm", "bands": ["B5", "B4", "B3", "B2"]}  # as rsneo/train/corpus.py reads it


LEVIR_PIXEL_M = 0.5  # LEVIR-CD's ground sampling distance; its PNG crops carry no georeference


def options(key: str) -> dict:
    """Sensor and band names for rasters whose metadata does not say (the Pucallpa composites)."""
    return PUCALLPA if key.startswith("pucallpa") else {}


def ask_options(key: str) -> dict:
    """`options`, and the pixel size of the LEVIR-CD crops (new buildings are measured in metres)."""
    return options(key) | ({"pixel_size": LEVIR_PIXEL_M} if key.startswith("levir") else {})


def inputs(tmp: Path) -> dict[str, list[Path]]:
    """Named rasters (one date) and pairs (two dates)."""
    s2 = DATA / "sen1floods11" / "S2" / "Spain_7370579_S2Hand.tif"
    levir = lambda name: [DATA / "levir_cd" / "A" / name, DATA / "levir_cd" / "B" / name]  # noqa: E731
    pucallpa = DATA / "timeseries" / "landsat_pucallpa"
    naip = sorted((DATA / "timeseries" / "naip_m4709963").glob("*.tif"))
    taizhou = [DATA / "landsat_change_taizhou" / "2000TM", DATA / "landsat_change_taizhou" / "2003TM"]
    return {
        "flood chip": [s2],
        "flood right half": [crop(s2, Window(256, 0, 256, 512), tmp / "right_half.tif")],
        "flood left half": [crop(s2, Window(0, 0, 256, 512), tmp / "left_half.tif")],
        "pucallpa 1985": [pucallpa / "1985.tif"],
        "pucallpa 2020": [pucallpa / "2020.tif"],
        "naip 2009": naip[:1],
        "levir test_2 A": levir("test_2_0000_0000.png")[:1],
        "taizhou 2000": taizhou[:1],
        "taizhou pair": taizhou,
        "levir test_2": levir("test_2_0000_0000.png"),
        "levir test_7": levir("test_7_0256_0512.png"),
        "levir test_55": levir("test_55_0256_0000.png"),
        "pucallpa 1985-2020": [pucallpa / "1985.tif", pucallpa / "2020.tif"],
        "naip 2009-2010": naip[:2],
    }


# (input, question, expected): "share:CLASS", "area:CLASS", "presence:CLASS", "describe", "change",
# "buildings", "abstain"
QUESTIONS = [
    ("flood chip", "How much of this image is water?", "share:water"),
    ("flood chip", "What percentage of the image is covered by land?", "share:land"),
    ("flood chip", "How large is the water area?", "area:water"),
    ("flood chip", "Is there any water in this image?", "presence:water"),
    ("flood right half", "How much of this image is water?", "share:water"),
    ("flood right half", "What fraction of this image is open water?", "share:water"),
    ("flood right half", "How much land is in this image?", "share:land"),
    ("flood right half", "How many hectares of water are there?", "area:water"),
    ("flood right half", "Describe this image.", "describe"),
    ("flood left half", "How much of this image is water?", "share:water"),
    ("flood left half", "What share of the scene is surface water?", "share:water"),
    ("flood left half", "Does this image contain water?", "presence:water"),
    ("pucallpa 2020", "How much of this image is water?", "share:water"),
    ("pucallpa 1985", "Is there any water in this image?", "presence:water"),
    ("naip 2009", "How much of this image is water?", "share:water"),
    ("levir test_2 A", "How much of this image is water?", "share:water"),
    ("taizhou 2000", "What percentage of the image is water?", "share:water"),
    ("taizhou pair", "What changed between these images?", "change"),
    ("taizhou pair", "How much of the area changed?", "change"),
    ("taizhou pair", "Describe the changes between these images.", "change"),
    ("levir test_2", "What changed between these images?", "change"),
    ("levir test_7", "How much of this image changed?", "change"),
    ("levir test_55", "What percentage of the area changed between the dates?", "change"),
    ("pucallpa 1985-2020", "What changed between these images?", "change"),
    ("naip 2009-2010", "How much changed between these dates?", "change"),
    ("flood chip", "What changed between these images?", "abstain"),
    ("flood right half", "Are there new buildings?", "abstain"),
    ("taizhou 2000", "How much forest was lost?", "abstain"),
    ("levir test_2", "Are there new buildings?", "buildings"),
    ("levir test_55", "Were new buildings built between the dates?", "buildings"),
    ("levir test_7", "Are there any new houses?", "buildings"),
    ("taizhou pair", "Are there new buildings?", "abstain"),
    ("flood right half", "How much of this image is forest?", "abstain"),
    ("flood right half", "What percentage of the image is built-up?", "abstain"),
    ("flood right half", "How much of this image is river and lakes?", "share:water"),  # a paraphrase
    ("flood right half", "How much of this image is banana?", "abstain"),
    ("flood chip", "Tell me a joke.", "abstain"),
    ("flood chip", "What is the capital of France?", "abstain"),
    ("levir test_2 A", "How many cars are there?", "abstain"),
]


def main() -> None:
    from rsneo.heads.system import BUNDLED_MODEL, load_system
    from rsneo.io.vector import class_areas
    from rsneo.predict.ask import ask
    from rsneo.predict.buildings import map_new_buildings
    from rsneo.predict.change import detect_change
    from rsneo.predict.requests import AskRequest, BuildingsRequest, ChangeRequest, SegmentRequest
    from rsneo.predict.segment import segment_raster

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--max-side", type=int, default=512, help="as `rsneo ask --max-side`")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    system = load_system(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        rasters = inputs(tmp)
        maps: dict[str, dict[str, float]] = {}
        changes: dict[tuple, float] = {}

        def map_shares(key: str) -> dict[str, float]:
            if key not in maps:
                folder = tmp / f"seg{len(maps)}"
                raster, opts = rasters[key][-1], options(key)
                out = segment_raster(
                    system,
                    SegmentRequest(raster=raster, classes=CLASSES, out=folder, confidence=False, **opts),
                )
                areas = class_areas(out.cog)
                maps[key] = {k: 100 * v / areas[""] for k, v in areas.items() if k}
            return maps[key]

        def change_share(key: str, buildings: bool = False) -> float:
            if (key, buildings) not in changes:
                folder = tmp / f"change{len(changes)}"
                if buildings:
                    request = BuildingsRequest(rasters[key], folder, LEVIR_PIXEL_M, **options(key))
                    out = map_new_buildings(system, request)
                else:
                    out = detect_change(system, ChangeRequest(rasters[key], folder, **options(key)))
                changes[(key, buildings)] = 100 * out.changed_area / out.compared_area
            return changes[(key, buildings)]

        for key, question, expected in QUESTIONS:
            start = time.perf_counter()
            answer = ask(
                system,
                AskRequest(
                    rasters=rasters[key], question=question, max_side=args.max_side, **ask_options(key)
                ),
            )
            seconds = time.perf_counter() - start
            kind, _, cls = expected.partition(":")
            row = dict(input=key, question=question, expected=expected, answer=answer.text, seconds=seconds,
                       abstained=answer.abstained, value=answer.value)  # fmt: skip
            if kind == "abstain":
                row["agrees"] = answer.abstained
                row["reference"] = "abstain"
            elif kind in ("change", "buildings"):
                ref = change_share(key, buildings=kind == "buildings")
                row["reference"] = ref
                row["agrees"] = answer.value is not None and abs(answer.value - ref) <= TOLERANCE
            elif kind == "describe":
                ref = map_shares(key)["water"]
                found = re.search(r"(\d+)% water", answer.text)
                row["reference"] = ref
                row["value"] = float(found.group(1)) if found else None
                row["agrees"] = found is not None and abs(float(found.group(1)) - ref) <= TOLERANCE
            else:
                ref = map_shares(key)[cls]
                row["reference"] = ref
                if kind == "presence":
                    row["agrees"] = answer.text.startswith("Yes") == (ref >= 0.5)
                else:
                    row["agrees"] = answer.value is not None and abs(answer.value - ref) <= TOLERANCE
            rows.append(row)
        labels = {}
        for key, window in (("flood chip", None), ("flood right half", Window(256, 0, 256, 512)),
                            ("flood left half", Window(0, 0, 256, 512))):  # fmt: skip
            label = read_band_file(DATA / "sen1floods11" / "Labels" / "Spain_7370579_LabelHand.tif", window)
            label = label[0]
            labels[key] = 100 * float(np.mean(label[label != -1] == 1))

    print(f"{'input':20s} | {'question':55s} | reference | answer")
    for r in rows:
        ref = r["reference"] if isinstance(r["reference"], str) else f"{r['reference']:.1f}%"
        mark = "ok" if r["agrees"] else "NO"
        print(f"{r['input']:20s} | {r['question']:55s} | {ref:>9s} | {mark} {r['answer']}")
    print("\nhand labels, water share (context; the reference above is the model's own map):")
    for key, share in labels.items():
        print(f"  {key}: {share:.1f}% water")
    quantitative = [r for r in rows if r["expected"] != "abstain"]
    should = [r for r in rows if r["expected"] == "abstain"]
    agree = sum(r["agrees"] for r in quantitative)
    print(f"\n{len(rows)} questions: {len(quantitative)} answerable, {len(should)} to abstain on")
    print(f"agreement with the model's own map (within {TOLERANCE:.0f} points / same yes-no): "
          f"{agree}/{len(quantitative)} = {agree / len(quantitative):.0%}")  # fmt: skip
    abstained = sum(r["abstained"] for r in should)
    wrongly = sum(r["abstained"] for r in quantitative)
    print(f"abstention where it should: {abstained}/{len(should)} = {abstained / len(should):.0%}; "
          f"where it should not: {wrongly}/{len(quantitative)}")  # fmt: skip
    errors = [abs(r["value"] - r["reference"]) for r in quantitative if r["value"] is not None]
    print(f"largest difference from the map: {max(errors):.2f} points; mean {np.mean(errors):.2f}")
    print(f"seconds per answer: median {np.median([r['seconds'] for r in rows]):.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
