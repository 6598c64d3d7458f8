"""`rsneo.accuracy.evaluate`: the scores are those of the maps `rsneo change` / `rsneo segment` write for the
same files (so whatever head a model folder has is what is measured); chips of one image are read from one
map; the baselines are scored on the same pixels; a kept run resumes without predicting again; bf16 too."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from rsneo.accuracy import evaluate as evaluation
from rsneo.accuracy.evaluate import ALL_CHANGED, CVA_OTSU, Settings, evaluate
from rsneo.baselines import cva_otsu
from rsneo.data.labelled import ClassTable, Sample, change_pairs, mask_chips
from rsneo.errors import InputError
from rsneo.heads.system import load_system
from rsneo.metrics import confusion_matrix
from rsneo.predict.change import detect_change
from rsneo.predict.requests import ChangeRequest, SegmentRequest
from rsneo.predict.segment import segment_raster
from rsneo.predict.sliding_window import WindowPlan

PLAN = WindowPlan(256, 32, 4)  # one window per 256-pixel sample: the fastest faithful run
SETTINGS = Settings(PLAN)
PAIRS = ("test_2_0000_0000", "train_36_0512_0512")
FLOOD_TABLE = ClassTable.parse("0=land,1=water,ignore=-1")


def quietly(read, *args, **kwargs):
    """Readers warn about pixel units (PNG pairs): expected here, not the subject of these tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(*args, **kwargs)


@pytest.fixture(scope="module")
def levir(levir_folder):
    """Two real LEVIR-CD pairs in the change layout."""
    return quietly(change_pairs, levir_folder(PAIRS))


@pytest.fixture(scope="module")
def flood(shared_data, tmp_path_factory):
    """The Sen1Floods11 chip's top-left 256 x 256 pixels: S2 image and hand-labelled mask, same file name."""
    root = tmp_path_factory.mktemp("flood")
    files = (("images", "S2/Spain_7370579_S2Hand.tif"), ("masks", "Labels/Spain_7370579_LabelHand.tif"))
    for part, source in files:
        (root / part).mkdir()
        with rasterio.open(shared_data / "sen1floods11" / source) as src:
            window = Window(0, 0, 256, 256)
            profile = src.profile | {"width": 256, "height": 256, "transform": src.window_transform(window)}
            with rasterio.open(root / part / "Spain.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
                dst.descriptions = src.descriptions  # the band names tell the sensor
                dst.update_tags(**src.tags())
    return root


@pytest.mark.filterwarnings("ignore::rsneo.errors.RSNeoWarning")  # an RGB pair outside the head's domain
def test_change_scores_are_those_of_the_maps_rsneo_change_writes(tiny_system, levir, tmp_path):
    result = evaluate(tiny_system, levir, settings=SETTINGS)
    expected = np.zeros((2, 2), np.int64)
    cva = np.zeros((2, 2), np.int64)
    for sample in levir:
        sources = sample.scene.attrs["sources"]
        cog = detect_change(
            tiny_system, ChangeRequest(rasters=sources, out=tmp_path / sample.name, plan=PLAN)
        ).cog
        with rasterio.open(cog) as src:
            expected += confusion_matrix(sample.mask, src.read(1), 2)
        before, after = sample.scene.values
        cva += confusion_matrix(sample.mask, cva_otsu(before, after), 2)
    np.testing.assert_array_equal(result.model.confusion, expected)
    np.testing.assert_array_equal(result.baselines[CVA_OTSU].confusion, cva)
    all_changed = result.baselines[ALL_CHANGED].confusion
    np.testing.assert_array_equal(all_changed[:, 1], expected.sum(1))  # every pixel marked changed
    assert result.model.confusion.sum() == 2 * 256 * 256 and result.unpredicted == 0
    assert [s.name for s in result.samples] == list(PAIRS)
    assert result.task == "change" and result.columns == ("no change", "change")


@pytest.mark.filterwarnings("ignore::rsneo.errors.RSNeoWarning")  # a random model: classes untrained
def test_segmentation_chips_are_read_from_one_map_of_the_image(tiny_system, flood, tmp_path):
    whole = mask_chips(flood / "images", flood / "masks", FLOOD_TABLE)
    chips = mask_chips(flood / "images", flood / "masks", FLOOD_TABLE, chip=128)  # 2 x 2: the whole image
    calls = []
    real = evaluation.predicted_map

    def counted(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "predicted_map", counted)
        by_chip = evaluate(tiny_system, chips, settings=SETTINGS)
    assert len(chips) == 4 and len(calls) == 1  # one map for the four chips
    at_once = evaluate(tiny_system, whole, settings=SETTINGS)
    np.testing.assert_array_equal(by_chip.model.confusion, at_once.model.confusion)
    image = flood / "images" / "Spain.tif"
    cog = segment_raster(
        tiny_system, SegmentRequest(raster=image, classes=("land", "water"), out=tmp_path, plan=PLAN)
    ).cog
    with rasterio.open(cog) as src:
        expected = confusion_matrix(whole[0].mask, src.read(1), 2, 3)  # + "none of these"
    np.testing.assert_array_equal(at_once.model.confusion, expected)
    assert at_once.columns == ("land", "water", "none of these")
    labelled = int((whole[0].mask >= 0).sum())
    assert at_once.model.confusion.sum() + at_once.unpredicted == labelled


def test_a_kept_evaluation_resumes_without_predicting_again(tiny_system, flood, tmp_path):
    samples = mask_chips(flood / "images", flood / "masks", FLOOD_TABLE)
    first = evaluate(tiny_system, samples, settings=SETTINGS, out=tmp_path)
    document = json.loads((tmp_path / "evaluation.json").read_text())
    assert document["confusion"] == first.model.confusion.tolist()
    assert (tmp_path / "maps" / "Spain" / "Spain_classes.tif").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("predicted again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "predicted_map", refuse)
        again = evaluate(tiny_system, samples, settings=SETTINGS, out=tmp_path)
        np.testing.assert_array_equal(again.model.confusion, first.model.confusion)
        with pytest.raises(AssertionError, match="predicted again"):  # other settings: another map
            evaluate(tiny_system, samples, settings=Settings(WindowPlan(128, 32, 4)), out=tmp_path)
        (tmp_path / "maps" / "Spain" / "evaluate.json").write_text('{"signature": ')  # a damaged record
        with pytest.raises(AssertionError, match="predicted again"):
            evaluate(tiny_system, samples, settings=SETTINGS, out=tmp_path)


@pytest.mark.filterwarnings("ignore::rsneo.errors.RSNeoWarning")  # a random model: classes untrained
def test_bf16_model_is_evaluated_through_the_same_predictor(tiny_model_dir, flood, tmp_path):
    system = load_system(tiny_model_dir)
    for module in (system.model, system.segmentation, system.change):
        module.to(torch.bfloat16)
    samples = mask_chips(flood / "images", flood / "masks", FLOOD_TABLE)
    result = evaluate(system, samples, settings=SETTINGS)
    request = SegmentRequest(
        raster=flood / "images" / "Spain.tif", classes=("land", "water"), out=tmp_path, plan=PLAN
    )
    cog = segment_raster(system, request).cog
    with rasterio.open(cog) as src:
        expected = confusion_matrix(samples[0].mask, src.read(1), 2, 3)
    np.testing.assert_array_equal(result.model.confusion, expected)
    assert result.model.confusion.sum() == int((samples[0].mask >= 0).sum())


def test_samples_that_cannot_be_scored_together_are_refused(tiny_system, levir, flood):
    flood_sample = mask_chips(flood / "images", flood / "masks", FLOOD_TABLE)[0]
    with pytest.raises(InputError, match="one date .segmentation. or two .change."):
        evaluate(tiny_system, [levir[0], flood_sample])
    semantic = Sample("x", levir[0].scene, levir[0].mask, ("no change", "new road", "new roof"))
    with pytest.raises(InputError, match="change is scored as change / no change"):
        evaluate(tiny_system, [semantic])
    with pytest.raises(InputError, match="no labelled sample"):
        evaluate(tiny_system, [])
