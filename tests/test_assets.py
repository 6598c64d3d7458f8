"""The bundled assets: samples with attribution, the offline tokenizer, the model card's baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from transformers import AutoTokenizer

from rsneo import baselines
from rsneo.model.tokenizer import image_token_ids, load_tokenizer

ASSETS = Path(__file__).resolve().parents[1] / "rsneo" / "assets"
SAMPLES = ASSETS / "samples"
TOKENIZER = ASSETS / "tokenizer"


def test_samples_are_small_and_never_academic_only():
    files = [p for p in SAMPLES.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    names = " ".join(str(p.relative_to(SAMPLES)).lower() for p in files)
    for forbidden in ("levir", "rsicd", "rsicc"):
        assert forbidden not in names


def test_every_sample_folder_is_attributed_with_a_licence_file():
    attribution = (ASSETS / "ATTRIBUTION.md").read_text()
    licences = sorted(p.name for p in (SAMPLES / "licenses").iterdir())
    for folder in sorted(p.name for p in SAMPLES.iterdir() if p.is_dir() and p.name != "licenses"):
        assert f"`{folder}/`" in attribution, folder
    for licence in licences:
        assert licence in attribution, licence
    assert "CC-BY-4.0" in attribution and "Sen1Floods11" in attribution


def test_sen1floods11_sample_matches_the_shared_original_byte_for_byte(shared_data):
    for name in ("S2/Spain_7370579_S2Hand.tif", "Labels/Spain_7370579_LabelHand.tif"):
        bundled = (SAMPLES / "sen1floods11" / name).read_bytes()
        assert bundled == (shared_data / "sen1floods11" / name).read_bytes()


def test_samples_are_georeferenced_on_their_documented_grids():
    with rasterio.open(SAMPLES / "sen1floods11/S2/Spain_7370579_S2Hand.tif") as s2:
        assert (s2.count, s2.height, s2.width, s2.crs.to_epsg()) == (13, 512, 512, 4326)
        assert s2.descriptions[8] == "B8A"
    with rasterio.open(SAMPLES / "landsat_change_taizhou/2003TM") as tm:
        assert (tm.count, tm.height, tm.width, tm.crs.to_epsg()) == (6, 400, 400, 32651)
        assert tm.transform.a == 30.0 and tm.transform.c == 203325.0
    with rasterio.open(SAMPLES / "landsat_pucallpa/2020.tif") as series:
        assert (series.count, series.height, series.width) == (4, 256, 256)
        assert series.descriptions == ("SWIR1", "NIR", "Red", "Green")


def test_pucallpa_crop_keeps_the_georeference_of_the_source(shared_data):
    with rasterio.open(SAMPLES / "landsat_pucallpa/1985.tif") as crop:
        data, bounds = crop.read(), crop.bounds
    with rasterio.open(shared_data / "timeseries/landsat_pucallpa/1985.tif") as full:
        window = rasterio.windows.from_bounds(*bounds, transform=full.transform)
        np.testing.assert_array_equal(full.read(window=window.round_offsets().round_lengths()), data)


def test_bigearthnet_sample_has_its_labels():
    meta = next((SAMPLES / "bigearthnet").glob("S2*/*_labels_metadata.json"))
    labels = json.loads(meta.read_text())["labels"]
    assert "Water bodies" in labels and "Coniferous forest" in labels


def test_tokenizer_loads_offline_with_autotokenizer_and_round_trips():
    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER), local_files_only=True)
    text = "<img><IMG_CONTEXT><IMG_CONTEXT></img> Is there flooded farmland near the river? yes"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert ids[:4] == [
        tokenizer.convert_tokens_to_ids(t) for t in ("<img>", "<IMG_CONTEXT>", "<IMG_CONTEXT>", "</img>")
    ]
    assert (
        json.loads((TOKENIZER / "tokenizer_config.json").read_text())["tokenizer_class"]
        == "PreTrainedTokenizerFast"
    )


def test_tokenizer_fits_the_demo_vocabulary_and_knows_the_domain_words():
    tokenizer = load_tokenizer(TOKENIZER)
    assert 4096 < len(tokenizer) <= 8192  # the "demo" preset's embedding has 8192 rows
    ids = image_token_ids(tokenizer)
    assert len({ids.start, ids.end, ids.context}) == 3
    for word in ("water", "forest", "Coniferous", "river"):
        assert len(tokenizer.tokenize(word)) == 1, word
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n"


def test_otsu_threshold_separates_two_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 5000), rng.normal(10, 1, 1000)])
    assert 3 < baselines.otsu_threshold(values) < 7


def test_mndwi_is_positive_on_water_and_zero_safe():
    green, swir = np.array([800, 300, 0]), np.array([100, 2000, 0])
    np.testing.assert_allclose(baselines.mndwi(green, swir), [700 / 900, -1700 / 2300, 0.0])


def test_binary_scores_on_a_sparse_reference():
    predicted = np.array([True, True, False, False, True])
    positive = np.array([True, False, True, False, False])
    negative = np.array([False, True, False, True, False])  # the last pixel is unknown and not scored
    scores = baselines.binary_scores(predicted, positive, negative)
    assert scores["accuracy"] == 0.5 and scores["precision"] == 0.5 and scores["recall"] == 0.5
    assert scores["kappa"] == 0.0


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the BMP references
def test_baselines_on_the_bundled_samples_give_the_model_card_numbers():
    with rasterio.open(SAMPLES / "sen1floods11/S2/Spain_7370579_S2Hand.tif") as src:
        s2 = src.read()
    with rasterio.open(SAMPLES / "sen1floods11/Labels/Spain_7370579_LabelHand.tif") as src:
        label = src.read(1)
    held_out = np.s_[:, 256:]  # the right half is never trained on (data split "train" = left half)
    water = baselines.mndwi(s2[2], s2[11])[held_out] > 0
    assert baselines.iou(water, label[held_out] == 1, label[held_out] != -1) == pytest.approx(
        0.6514, abs=1e-3
    )
    folder = SAMPLES / "landsat_change_taizhou"
    with rasterio.open(folder / "2000TM") as a, rasterio.open(folder / "2003TM") as b:
        change = baselines.cva_otsu(a.read(), b.read())
    with rasterio.open(folder / "change.bmp") as c, rasterio.open(folder / "unchanged.bmp") as u:
        scores = baselines.binary_scores(change, c.read(1) > 0, u.read(1) > 0)
    assert scores["kappa"] == pytest.approx(0.8918, abs=1e-3)


def test_demo_experiment_holds_out_the_evaluation_data_and_uses_the_bundled_tokenizer():
    from rsneo.train.config import load_config
    from rsneo.train.run import BUNDLED_TOKENIZER

    cfg = load_config(["experiment=demo"])
    assert cfg.model.preset == "demo" and list(cfg.stage.trainable) == ["all"]
    assert cfg.data.split == "train"  # Sen1Floods11: left half only; the right half scores the model card
    assert "taizhou" not in cfg.data.sources and "captions" not in cfg.data.sources
    assert cfg.tokenizer == "bundled" and (BUNDLED_TOKENIZER / "tokenizer.json").is_file()
    assert cfg.objectives.segmentation.weight > 0
