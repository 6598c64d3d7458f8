"""The model knows its vocabulary: trained classes recorded, typed names matched in its text space."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import rasterio
from rasterio.windows import Window

from rsneo.cli import run_app
from rsneo.errors import InputError
from rsneo.heads.system import BUNDLED_MODEL, load_system
from rsneo.heads.vocabulary import (
    ClassMatch,
    TrainedClass,
    UntrainedClassWarning,
    Vocabulary,
    load_vocabulary,
    match_classes,
    read_classes,
    save_vocabulary,
    untrained_classes,
)


@pytest.fixture(scope="module")
def bundled():
    return load_system(BUNDLED_MODEL)


def small_chip(shared_data: Path, folder: Path, size: int = 64) -> Path:
    """The top-left corner of the Sen1Floods11 chip, with its band names (so its sensor is known)."""
    path = folder / "chip.tif"
    with rasterio.open(shared_data / "sen1floods11" / "S2" / "Spain_7370579_S2Hand.tif") as src:
        window = Window(0, 0, size, size)
        profile = src.profile | {"width": size, "height": size, "transform": src.window_transform(window)}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return path


def test_the_bundled_model_records_its_trained_classes_and_held_out_scores():
    vocabulary = load_vocabulary(BUNDLED_MODEL)
    assert vocabulary.names == ("water", "land")
    water = vocabulary.classes[0]
    assert water.prompts[0] == "a satellite image of water"
    assert "a satellite image of lake" in water.prompts and "lake" in water.synonyms  # taught other names
    assert water.held_out["iou"] == pytest.approx(0.811, abs=0.001)  # docs/model_card.md
    assert "right half" in water.held_out["data"]
    assert vocabulary.taught_pieces_only  # a model without language pre-training: see the next tests


def test_taught_names_and_paraphrases_match_and_other_names_do_not(bundled):
    names = ["open water", "surface water", "dry land", "lake", "river and lakes", "urban area", "banana"]
    matches = {m.name: m for m in match_classes(bundled, names)}
    water = ("open water", "surface water", "lake", "river and lakes")
    assert [matches[n].nearest for n in water] == ["water"] * 4
    assert matches["dry land"].nearest == "land"
    assert all(matches[n].trained for n in ("open water", "surface water", "river and lakes", "dry land"))
    # "lake" was taught as water, but water is broader than lake: its map holds rivers and sea too
    assert matches["lake"].broader and not matches["lake"].trained
    # the bundled model never learned these: its map for them is arbitrary
    assert not any(matches[n].trained for n in ("urban area", "banana"))
    for m in matches.values():
        assert -1.0 - 1e-5 <= m.similarity <= 1.0 + 1e-5


def test_matching_agrees_in_bf16(bundled):
    import dataclasses

    import torch

    from rsneo.model.causal_lm import RSNeoForCausalLM

    names = ["open water", "lake", "dry land", "banana"]
    full = match_classes(bundled, names)
    half_model = RSNeoForCausalLM.from_pretrained(BUNDLED_MODEL, dtype=torch.bfloat16)
    assert {p.dtype for p in half_model.parameters()} == {torch.bfloat16}
    low = match_classes(dataclasses.replace(bundled, model=half_model), names)
    assert [m.trained for m in low] == [m.trained for m in full]
    for a, b in zip(full, low, strict=True):
        assert b.similarity == pytest.approx(a.similarity, abs=0.03)  # bf16 has ~3 significant digits


def test_untrained_names_warn_and_strict_refuses_them(bundled):
    with pytest.warns(UntrainedClassWarning, match='"banana"'):
        assert untrained_classes(bundled, ["water", "banana"]) == ("banana",)
    with pytest.raises(InputError, match='--strict refuses them.*|"banana"'):
        untrained_classes(bundled, ["water", "banana"], strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert untrained_classes(bundled, ["open water", "land"], strict=True) == ()


@pytest.mark.parametrize("name", ["farmland", "Fields", "bare soil"])
def test_a_narrower_name_read_as_a_trained_class_is_reported_broader_and_untrained(bundled, name):
    """The issue's case: a narrower name of land read as land ("cropland" on the first bundled model) used to
    pass silently; its map is every land pixel (forest and town included), so it is reported as read as
    land (broader) and counts as untrained."""
    (match,) = match_classes(bundled, [name])
    assert match.similarity >= bundled.vocabulary.match_threshold  # the model does read it as land
    assert (match.nearest, match.broader, match.trained) == ("land", True, False)
    assert match.reading == "read as land, broader"


def test_a_word_the_model_never_read_is_untrained_however_close_its_vector(bundled):
    """The retrained bundled model puts words it never read at cosine 0.98 from "water" ("forest" there);
    only their word pieces tell them apart from the paraphrases it was taught."""
    import dataclasses

    forest, rivers = match_classes(bundled, ["forest", "river and lakes"])
    assert forest.similarity >= bundled.vocabulary.match_threshold  # the cosine alone would call it water
    assert not forest.trained and forest.unseen == (" forest",)
    assert rivers.trained and rivers.unseen == ()  # every piece taught: a paraphrase, read as water
    cosine_only = dataclasses.replace(
        bundled, vocabulary=dataclasses.replace(bundled.vocabulary, taught_pieces_only=False)
    )
    (forest,) = match_classes(cosine_only, ["forest"])
    assert forest.trained and forest.nearest == "water"  # what the check is there to stop


@pytest.mark.parametrize("name", ["forest", "urban area", "built-up", "vegetation"])
def test_hyponyms_the_model_does_not_read_as_land_are_untrained(bundled, name):
    (match,) = match_classes(bundled, [name])
    assert not match.trained and match.reading is None  # its own prompt makes its map: arbitrary


def test_readings_warn_once_name_the_broader_class_and_strict_refuses(bundled):
    names = ["water", "open water", "farmland", "banana"]
    with pytest.warns(UntrainedClassWarning) as caught:
        readings = read_classes(bundled, names)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert '"farmland" -> read as "land" (broader)' in message
    assert "\"banana\" (word pieces never taught: 'b', 'an', 'an')" in message
    assert readings.untrained == ("farmland", "banana")
    assert readings.read_as == {"open water": "read as water", "farmland": "read as land, broader"}
    with pytest.raises(InputError, match=r'"farmland" -> read as "land" \(broader\).*--strict refuses them'):
        read_classes(bundled, ["water", "farmland"], strict=True)


def test_a_learnt_class_is_never_broader_than_itself():
    match = ClassMatch("Cropland", "cropland", 1.0, True)
    assert match.read_as is None and match.reading is None


def test_older_vocabularies_get_the_narrower_names_of_their_classes(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "vocabulary.json").write_text(json.dumps({"classes": [{"name": "land", "prompts": ["land"]}]}))
    (land,) = load_vocabulary(folder).classes
    assert "cropland" in land.narrower and "forest" in land.narrower and "ground" not in land.narrower


def test_a_folder_without_vocabulary_says_nothing(tiny_system):
    assert tiny_system.vocabulary is None
    assert match_classes(tiny_system, ["lake"]) is None and untrained_classes(tiny_system, ["lake"]) == ()


def test_vocabulary_round_trips_through_a_model_folder(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    vocabulary = Vocabulary((TrainedClass("water", ("a satellite image of water",), {"iou": 0.5}),), 0.9)
    save_vocabulary(folder, vocabulary)
    assert load_vocabulary(folder) == vocabulary
    assert load_system(folder).vocabulary == vocabulary
    (folder / "vocabulary.json").write_text(json.dumps({"classes": []}))
    with pytest.raises(InputError, match="vocabulary.json: expected at least one trained class"):
        load_vocabulary(folder)


def test_segment_cli_marks_untrained_classes_and_strict_exits_2(shared_data, tmp_path, capsys):
    chip = small_chip(shared_data, tmp_path)
    refused = tmp_path / "refused"
    argv = ["segment", str(chip), "--classes", "water, banana", "--window", "64", "--overlap", "0"]
    assert run_app([*argv, "--out", str(refused), "--strict"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert '"banana"' in err and "--strict" in err
    assert not refused.exists()  # nothing written

    out = tmp_path / "out"
    assert run_app([*argv, "--out", str(out)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning:" in err and '"banana"' in err and "untrained" in err
    root = ET.fromstring((out / "chip_classes.qml").read_text().split("\n", 1)[1])
    labels = [e.get("label") for e in root.iter("paletteEntry")]
    assert labels == ["water", "banana (untrained)", "none of these"]


def test_change_marks_untrained_from_to_classes_and_strict_refuses_them(shared_data, tmp_path, capsys):
    folder = shared_data / "landsat_change_taizhou"
    pair = [str(folder / "2000TM"), str(folder / "2003TM")]
    refused = tmp_path / "refused"
    argv = ["change", *pair, "--classes", "water, urban area", "--out", str(refused), "--strict"]
    assert run_app(argv) == 2
    assert '"urban area"' in " ".join(capsys.readouterr().err.split()) and not refused.exists()

    from rsneo.predict.change_classes import change_legend

    legend = change_legend(["water", "urban area"], ("urban area",))
    labels = [legend.label(i) for i in range(len(legend.names))]
    assert "water → water" in labels and "water → urban area (untrained)" in labels
    assert "none of these → urban area (untrained)" in labels and "water → none of these" in labels


def test_segment_says_what_each_name_was_read_as_everywhere_and_strict_refuses_broader(
    shared_data, tmp_path, capsys
):
    """The issue's run: "farmland" is read as the trained class "land". The console, the QML legend, the COG
    tags and the GeoPackage layer all say so, and --strict refuses it like an untrained name."""
    import pyogrio

    chip = small_chip(shared_data, tmp_path)
    argv = ["segment", str(chip), "--classes", "open water, farmland", "--window", "64", "--overlap", "0"]
    refused = tmp_path / "refused"
    assert run_app([*argv, "--out", str(refused), "--strict"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert '"farmland" -> read as "land" (broader)' in err and "--strict refuses them" in err
    assert not refused.exists()

    out = tmp_path / "out"
    assert run_app([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert '"farmland" -> read as "land" (broader)' in " ".join(captured.err.split())
    console = [line.strip() for line in captured.out.splitlines() if line.startswith("  ")]
    assert console[0].startswith("open water (read as water): ")
    assert console[1].startswith("farmland (read as land, broader; untrained): ")
    expected = ["open water (read as water)", "farmland (read as land, broader; untrained)", "none of these"]
    root = ET.fromstring((out / "chip_classes.qml").read_text().split("\n", 1)[1])
    assert [e.get("label") for e in root.iter("paletteEntry")] == expected
    with rasterio.open(out / "chip_classes.tif") as src:
        assert json.loads(src.tags(1)["class_labels"]) == expected
        assert json.loads(src.tags(1)["untrained_classes"]) == ["farmland"]
    info = pyogrio.read_info(out / "chip_classes.gpkg", layer="classes")
    assert json.loads(info["layer_metadata"]["rsneo_class_labels"]) == expected


def test_a_learnt_class_is_read_by_its_names_only_and_its_map_uses_its_learnt_vector(
    tiny_model_dir, tmp_path
):
    """ "city" reads as a learnt "built-up" (its common land-cover names) and its class vector is built-up's
    learnt one, not the prompt of "city"; a name the text side never learnt ("banana", however close its
    cosine to the untaught "built-up") is not read as the learnt class."""
    import shutil

    import torch

    from rsneo.heads.features import encode_class_prompts
    from rsneo.heads.fewshot import LearntClasses, class_vectors, save_learnt
    from rsneo.train.learn_folder import learnt_vocabulary

    folder = tmp_path / "learnt"
    shutil.copytree(tiny_model_dir, folder)
    base = load_system(folder)
    vectors = torch.randn(2, base.config.hidden_size, generator=torch.Generator().manual_seed(0))
    save_learnt(folder, LearntClasses(["built-up", "farmland"], vectors))
    record = {"learnt_classes": ["built-up", "farmland"], "labels": "l.gpkg", "class_field": "cover",
              "holdout": {"method": "k-fold", "scores": {}}}  # fmt: skip
    save_vocabulary(folder, learnt_vocabulary(base.segmentation, record))
    system = load_system(folder)
    assert all(c.by_name_only for c in system.vocabulary.classes)
    names = ["city", "Urban Area", "farm fields", "built-up", "banana", "a satellite image of built-up"]
    found = {m.name: m for m in match_classes(system, names)}
    assert [found[n].nearest for n in names[:4]] == ["built-up", "built-up", "farmland", "built-up"]
    assert all(found[n].trained and not found[n].broader for n in names[:4])
    assert found["city"].reading == "read as built-up" and found["built-up"].reading is None
    assert not found["banana"].trained and not found["a satellite image of built-up"].trained
    got = class_vectors(system, ["city", "farm fields", "banana"])
    torch.testing.assert_close(got[:2], vectors, rtol=0, atol=0)  # the stored learnt vectors as they are
    prompt = encode_class_prompts(system.model, system.tokenizer, ["banana"], system.segmentation.config)
    torch.testing.assert_close(got[2], prompt[0])  # a name read as no class keeps its own prompt
