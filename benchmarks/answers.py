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

Then growth and from-to questions on a learnt model (issue #22): `rsneo learn` teaches the bundled model
built-up, cropland, forest and water on the Pucallpa 1985 and 2020 Landsat composites, from 3 x 3-pixel
squares drawn where both dates show the class (`pucallpa_labels`: the city core, open water, closed forest,
cleared fields, read off their colours in both dates). References are the rows of the change_table.csv that
`rsneo change --classes "built-up, cropland, forest, water"` writes for the same pair: "how much X became Y"
is the row X -> Y, "how much X was added" the rows Y -> X (Y not X), "lost" the rows X -> Y, "how has X
changed" gained minus lost, "what changed" the changed share. Each question is asked at the default
`--max-side 512` (an overview of the 697-pixel rasters: within 5 points) and at full resolution (`--max-side
0`: the same map, so within the CSV's rounding, 0.01 points).

Usage: python benchmarks/answers.py [--model rsneo/assets/model] [--max-side 512] [--json out.json]
                                    [--learnt DIR (a learnt Pucallpa model: reused when it exists)]
                                    [--part both|bundled|learnt]
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


LEARNT = ["built-up", "cropland", "forest", "water"]
PUCALLPA_DIR = DATA / "timeseries" / "landsat_pucallpa"
PAIRS = {
    "pucallpa 1985-2020": [PUCALLPA_DIR / "1985.tif", PUCALLPA_DIR / "2020.tif"],
    "pucallpa 1985-2000": [PUCALLPA_DIR / "1985.tif", PUCALLPA_DIR / "2000.tif"],
    "pucallpa 2000-2020": [PUCALLPA_DIR / "2000.tif", PUCALLPA_DIR / "2020.tif"],
    "pucallpa 2020": [PUCALLPA_DIR / "2020.tif"],
}
# (pair, question, reference): "gained:X", "lost:X", "net:X", "from_to:X:Y", "summary", "abstain"
CHANGE_QUESTIONS = [
    ("pucallpa 1985-2020", "How much of the city grew?", "gained:built-up"),
    ("pucallpa 1985-2020", "How much built-up area was added?", "gained:built-up"),
    ("pucallpa 1985-2020", "How much did the town grow?", "gained:built-up"),
    ("pucallpa 1985-2020", "How much cropland became built-up?", "from_to:cropland:built-up"),
    ("pucallpa 1985-2020", "How much forest was cleared for cropland?", "from_to:forest:cropland"),
    ("pucallpa 1985-2020", "How much forest was lost?", "lost:forest"),
    ("pucallpa 1985-2020", "How much farmland was added?", "gained:cropland"),
    ("pucallpa 1985-2020", "How much water turned into cropland?", "from_to:water:cropland"),
    ("pucallpa 1985-2020", "How has the forest changed?", "net:forest"),
    ("pucallpa 1985-2020", "What changed between these dates?", "summary"),
    ("pucallpa 1985-2000", "How much of the city grew?", "gained:built-up"),
    ("pucallpa 1985-2000", "How much forest became cropland?", "from_to:forest:cropland"),
    ("pucallpa 1985-2000", "How much urban area was added?", "gained:built-up"),
    ("pucallpa 2000-2020", "How much cropland became built-up?", "from_to:cropland:built-up"),
    ("pucallpa 2000-2020", "How much woodland was lost?", "lost:forest"),
    ("pucallpa 2000-2020", "How much agricultural land was added?", "gained:cropland"),
    ("pucallpa 2000-2020", "What changed?", "summary"),
    ("pucallpa 1985-2020", "How much banana was lost?", "abstain"),
    ("pucallpa 1985-2020", "How much cropland became farmland?", "abstain"),
    ("pucallpa 2020", "How much of the city grew?", "abstain"),
]
FULL_TOLERANCE = 0.01  # points: the CSV rounds each row to 0.001


def pucallpa_labels(path: Path) -> Path:
    """3 x 3-pixel squares of built-up, cropland, forest and water where the 1985 and the 2020 composite both
    show the class (bands SWIR1, NIR, red, green, 0-255): open water dark in SWIR and NIR; closed forest
    moderate SWIR and NIR, little red; cleared fields bright NIR and SWIR; built-up bright SWIR and red,
    inside the city's extent (columns 150-245, rows 85-180). Up to 12 squares a class, spread out."""
    import geopandas as gpd
    import rasterio
    from scipy import ndimage
    from shapely.geometry import box

    reads = []
    for year in ("1985", "2020"):
        with rasterio.open(PUCALLPA_DIR / f"{year}.tif") as src:
            reads.append(src.read().astype(int))
            transform, crs = src.transform, src.crs

    def shows(pixels: np.ndarray, name: str) -> np.ndarray:
        swir, nir, red, _ = pixels
        if name == "water":
            return (swir < 20) & (nir < 40)
        if name == "forest":
            return (swir > 50) & (swir < 90) & (nir > 130) & (nir < 200) & (red < 22)
        if name == "cropland":
            return (swir > 105) & (nir > 170) & (red < 45)
        city = np.zeros(swir.shape, bool)
        city[85:180, 150:245] = True
        return (swir > 140) & (red > 60) & city

    rng = np.random.default_rng(0)
    names, squares = [], []
    for name in LEARNT:
        inside = ndimage.binary_erosion(shows(reads[0], name) & shows(reads[1], name), np.ones((3, 3)))
        rows, cols = np.nonzero(inside)
        spacing = 8 if name == "built-up" else 25
        chosen: list[tuple[int, int]] = []
        for i in rng.permutation(len(rows)):
            if all((rows[i] - r) ** 2 + (cols[i] - c) ** 2 >= spacing**2 for r, c in chosen):
                chosen.append((rows[i], cols[i]))
            if len(chosen) == 12:
                break
        for r, c in chosen:
            (x0, y0), (x1, y1) = transform * (c - 1, r - 1), transform * (c + 2, r + 2)
            names.append(name)
            squares.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    gpd.GeoDataFrame({"cover": names}, geometry=squares, crs=crs).to_file(path)
    return path


def learnt_model(system, folder: Path, tmp: Path) -> Path:
    """`rsneo learn` of the Pucallpa classes on the 1985 and 2020 composites (the default settings)."""
    from rsneo.train.learn import learn
    from rsneo.train.learn_config import LearnConfig

    if folder.is_dir() and any(folder.iterdir()):
        return folder
    labels = pucallpa_labels(tmp / "pucallpa_labels.gpkg")
    config = LearnConfig(rasters=list(PAIRS["pucallpa 1985-2020"]), labels=labels, class_field="cover",
                         out=folder, sensor=PUCALLPA["sensor"], bands=PUCALLPA["bands"])  # fmt: skip
    result = learn(system, config)
    scores = ", ".join(f"{n} {s.iou:.3f}" for n, s in result.scores.items() if s.iou is not None)
    print(f"learnt {folder}: hold-out IoU {scores} ({result.record['holdout']['method']})")
    return folder


def table_reference(rows: list[dict], expected: str) -> float:
    """The percentage of the compared area a change question asks for, from change_table.csv rows."""
    kind, *names = expected.split(":")
    between = [r for r in rows if r["from"] != r["to"]]
    if kind == "summary":
        return sum(float(r["percent_of_compared"]) for r in rows)

    def total(keep) -> float:
        return sum(float(r["percent_of_compared"]) for r in between if keep(r["from"], r["to"]))

    x = names[0]
    if kind == "from_to":
        return total(lambda a, b: (a, b) == (x, names[1]))
    gained, lost = total(lambda a, b: b == x), total(lambda a, b: a == x)
    return {"gained": gained, "lost": lost, "net": gained - lost}[kind]


def change_questions(system, args, tmp: Path) -> list[dict]:
    """CHANGE_QUESTIONS on the learnt model at `--max-side` and at full resolution, with their references."""
    import csv

    from rsneo.heads.system import load_system
    from rsneo.predict.ask import ask
    from rsneo.predict.change import detect_change
    from rsneo.predict.requests import AskRequest, ChangeRequest

    learnt = load_system(learnt_model(system, args.learnt or tmp / "pucallpa_model", tmp))
    tables = {}
    for key, rasters in PAIRS.items():
        if len(rasters) > 1:
            out = detect_change(learnt, ChangeRequest(rasters, tmp / key, classes=LEARNT, **PUCALLPA))
            with out.table.open() as f:
                tables[key] = list(csv.DictReader(f))
    rows = []
    for key, question, expected in CHANGE_QUESTIONS:
        row = dict(input=key, question=question, expected=expected)
        if expected != "abstain":
            row["reference"] = table_reference(tables[key], expected)
        for label, side in (("overview", args.max_side), ("full", 0)):
            start = time.perf_counter()
            answer = ask(learnt, AskRequest(rasters=PAIRS[key], question=question, max_side=side, **PUCALLPA))
            row[f"{label}_seconds"] = time.perf_counter() - start
            row[f"{label}_answer"], row[f"{label}_value"] = answer.text, answer.value
            if expected == "abstain":
                row[f"{label}_agrees"] = answer.abstained
            else:
                tolerance = FULL_TOLERANCE if label == "full" else TOLERANCE
                off = abs(answer.value - row["reference"]) if answer.value is not None else float("inf")
                row[f"{label}_agrees"] = off <= tolerance
        rows.append(row)
    return rows


def print_change_questions(rows: list[dict]) -> None:
    print("\nlearnt model (built-up, cropland, forest, water), change questions read from the from-to table:")
    print(f"{'input':20s} | {'question':44s} | reference | full | overview | answer at full resolution")
    for r in rows:
        ref = "abstain" if r["expected"] == "abstain" else f"{r['reference']:.3f}%"
        marks = " | ".join(f"{'ok' if r[f'{k}_agrees'] else 'NO':>4}" for k in ("full", "overview"))
        print(f"{r['input']:20s} | {r['question']:44s} | {ref:>9s} | {marks}     | {r['full_answer']}")
    growth = [r for r in rows if r["expected"] not in ("abstain", "summary")]
    for label in ("full", "overview"):
        agree = sum(r[f"{label}_agrees"] for r in rows)
        grown = sum(r[f"{label}_agrees"] for r in growth)
        errors = [abs(r[f"{label}_value"] - r["reference"]) for r in rows
                  if r["expected"] != "abstain" and r[f"{label}_value"] is not None]  # fmt: skip
        side = "full resolution (--max-side 0)" if label == "full" else "the overview (--max-side 512)"
        print(f"{side}: {agree}/{len(rows)} agree ({grown}/{len(growth)} growth and from-to questions; "
              f"largest difference {max(errors):.3f} points); median "
              f"{np.median([r[f'{label}_seconds'] for r in rows]):.1f} s per answer")  # fmt: skip


def bundled_questions(system, args, tmp: Path) -> tuple[list[dict], dict[str, float]]:
    """QUESTIONS on the bundled model, each with the reference read from the product's own map."""
    from rsneo.io.vector import class_areas
    from rsneo.predict.ask import ask
    from rsneo.predict.buildings import map_new_buildings
    from rsneo.predict.change import detect_change
    from rsneo.predict.requests import AskRequest, BuildingsRequest, ChangeRequest, SegmentRequest
    from rsneo.predict.segment import segment_raster

    rows = []
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
            AskRequest(rasters=rasters[key], question=question, max_side=args.max_side, **ask_options(key)),
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

    return rows, labels


def print_bundled(rows: list[dict], labels: dict[str, float]) -> None:
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


def main() -> None:
    from rsneo.heads.system import BUNDLED_MODEL, load_system

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--max-side", type=int, default=512, help="as `rsneo ask --max-side`")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--learnt", type=Path, help="the learnt Pucallpa model folder (made when absent)")
    parser.add_argument("--part", choices=("both", "bundled", "learnt"), default="both")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    system = load_system(args.model)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if args.part != "learnt":
            rows, labels = bundled_questions(system, args, tmp)
        learnt_rows = change_questions(system, args, tmp) if args.part != "bundled" else []
    if rows:
        print_bundled(rows, labels)
    if learnt_rows:
        print_change_questions(learnt_rows)
    if args.json:
        args.json.write_text(json.dumps({"bundled": rows, "learnt": learnt_rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
