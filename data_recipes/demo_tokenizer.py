"""Train the bundled model's tokenizer offline and save it to rsneo/assets/tokenizer/.

Text: the caption, question/answer and class-name text in ../shared/data/text (RSICD and LEVIR-CC captions,
RSIVQA questions and answers; used only to learn the subword vocabulary, no sentence is shipped), the label
vocabularies of the bundled data (BigEarthNet CORINE classes, Sen1Floods11 water classes, eo-learn LULC
classes), and sensor and band names. Byte-level BPE with Qwen3's text specials and NEO's image tokens
(`rsneo.model.tokenizer`), plus a ChatML chat template like Qwen3's, so a real Qwen3 tokenizer folder is a
drop-in replacement.

Usage: python data_recipes/demo_tokenizer.py [--shared ../shared/data] [--out rsneo/assets/tokenizer]
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path

from rsneo.model.tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[1]
VOCAB_SIZE = 8192  # the model's "demo" preset

# BigEarthNet v1 CORINE Land Cover level-3 names (43 classes) and the 19-class nomenclature.
CORINE_43 = [
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
]
CORINE_19 = [
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
]
SEN1FLOODS11_CLASSES = ["water", "not water", "no data", "surface water", "flood water", "permanent water"]
EOLEARN_LULC = [
    "no data",
    "cultivated land",
    "forest",
    "grassland",
    "shrubland",
    "water",
    "wetlands",
    "tundra",
    "artificial surface",
    "bareland",
    "snow and ice",
]
SENSOR_WORDS = [
    "Sentinel-2",
    "Sentinel-2A",
    "Sentinel-2B",
    "MSI",
    "L1C",
    "L2A",
    "Sentinel-1",
    "GRD",
    "SAR",
    "VV",
    "VH",
    "HH",
    "HV",
    "C-band",
    "Landsat-5",
    "Landsat-7",
    "Landsat-8",
    "Landsat-9",
    "TM",
    "ETM+",
    "OLI",
    "NAIP",
    "aerial",
    "B1",
    "B2",
    "B3",
    "B4",
    "B5",
    "B6",
    "B7",
    "B8",
    "B8A",
    "B9",
    "B10",
    "B11",
    "B12",
    "coastal",
    "blue",
    "green",
    "red",
    "rededge",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir16",
    "swir22",
    "pan",
    "lwir",
    "red edge",
    "near infrared",
    "shortwave infrared",
    "SWIR1",
    "SWIR2",
    "thermal",
    "panchromatic",
    "NDVI",
    "NDWI",
    "MNDWI",
    "cloud",
    "cloud shadow",
    "snow",
    "change",
    "no change",
    "changed",
    "unchanged",
]


def caption_texts(text_dir: Path) -> Iterator[str]:
    """RSICD and LEVIR-CC captions, one string each."""
    for path in (
        text_dir / "rsicd_mini" / "rsicd_all_captions_amfmn.json",
        text_dir / "levir_mci_change_captions" / "levir_cc_mci_captions.json",
    ):
        for entry in json.loads(path.read_text()).values():
            yield from (c.strip() for c in entry["captions"])


def vqa_texts(text_dir: Path) -> Iterator[str]:
    """RSIVQA lines `image:question?answer`, yielded as `question? answer` without the image name."""
    for path in sorted((text_dir / "rsivqa_text" / "RSIVQA").rglob("*.txt")):
        for line in path.read_text(errors="replace").splitlines():
            _, _, qa = line.partition(":")
            question, mark, answer = qa.strip().partition("?")
            if mark:
                yield f"{question}? {answer.strip()}"


def label_texts() -> Iterator[str]:
    """Class names and sensor words, several times so that each becomes few tokens."""
    words = [*CORINE_43, *CORINE_19, *SEN1FLOODS11_CLASSES, *EOLEARN_LULC, *SENSOR_WORDS]
    for _ in range(20):
        yield from words
        yield from (w.lower() for w in words)


def corpus(shared: Path) -> list[str]:
    text_dir = shared / "text"
    texts = [*caption_texts(text_dir), *vqa_texts(text_dir), *label_texts()]
    return [re.sub(r"\s+", " ", t) for t in texts if t]


# Qwen3's ChatML layout (without its tool-calling branches): the same `apply_chat_template` calls work.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build(shared: Path, out: Path) -> tuple[int, int]:
    """Train and save; returns (number of training texts, tokenizer size).

    The size may stay below VOCAB_SIZE when the text has no more pairs to merge; the model's embedding keeps
    VOCAB_SIZE rows (a real Qwen3 checkpoint too has more embedding rows than tokens).
    """
    texts = corpus(shared)
    tokenizer = train_tokenizer(texts, VOCAB_SIZE)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 32768
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    # a class name every transformers release knows (5.x would write its internal "TokenizersBackend")
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) | {"tokenizer_class": "PreTrainedTokenizerFast"}
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return len(texts), len(tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "rsneo" / "assets" / "tokenizer")
    args = parser.parse_args()
    n, size = build(args.shared, args.out)
    print(f"tokenizer of {size} tokens (asked for {VOCAB_SIZE}) trained on {n} texts, saved to {args.out}")


if __name__ == "__main__":
    main()
