"""Sliding-window engine: exact on pointwise models, nodata kept, resumable, complete or absent."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rasterio

from rsneo.io.cog import NODATA_CLASS, ClassLegend
from rsneo.io.runstate import ResumeNotice
from rsneo.io.windows import RasterWindows
from rsneo.predict.resume import confidence_path
from rsneo.predict.sliding_window import MapSpec, WindowPlan, blend_weights, predict_raster


def brightness(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A pointwise 'model': P(bright) = red / 255; (B, 3, S, S) -> (B, 2, S, S)."""
    red = pixels[:, 0] / 255.0
    return np.stack([red, 1.0 - red], axis=1)


@pytest.fixture(scope="module")
def rgb(shared_data):
    return shared_data / "rasters" / "RGB.byte.tif"


def run(rgb, out, plan=WindowPlan(128, 32, 3), **kwargs):
    with rasterio.open(rgb) as src:
        return predict_raster(
            RasterWindows([src]), MapSpec(brightness, ClassLegend.from_names(["bright", "dark"])), out,
            crs=src.crs, transform=src.transform, plan=plan, signature="test", **kwargs,
        )  # fmt: skip


def test_pointwise_model_gives_the_whole_raster_answer_and_keeps_nodata(rgb, tmp_path):
    # 791 x 718 pixels: windows do not divide it, the last row and column of windows hang over the edge
    out = run(rgb, tmp_path / "a.tif")
    with rasterio.open(rgb) as src, rasterio.open(out) as result, rasterio.open(confidence_path(out)) as conf:
        red = src.read(1).astype(np.float64) / 255.0
        valid = src.dataset_mask() > 0
        classes, confidence = result.read(1), conf.read(1)
        assert result.crs == src.crs and result.transform == src.transform
    np.testing.assert_array_equal(classes[valid], np.where(red >= 0.5, 0, 1)[valid])
    assert (classes[~valid] == NODATA_CLASS).all()
    expected_conf = np.round(100 * np.maximum(red, 1 - red))
    assert np.abs(confidence[valid] - expected_conf[valid]).max() <= 1


def test_interrupted_run_resumes_to_the_same_output(rgb, tmp_path, stop_after_rows):
    full = run(rgb, tmp_path / "full" / "a.tif") if (tmp_path / "full").mkdir() is None else None
    folder = tmp_path / "resumed"
    folder.mkdir()
    with stop_after_rows(2):
        run(rgb, folder / "a.tif")
    assert not (folder / "a.tif").exists()  # complete or absent
    hidden = sorted(p.name for p in folder.iterdir())  # the state of a run stopped after two window rows
    assert hidden == [
        ".a.tif.carry2.npz",
        ".a.tif.partial.tif",
        ".a.tif.progress.json",
        ".a_confidence.tif.partial.tif",
    ]
    with stop_after_rows(1):  # a second interruption
        run(rgb, folder / "a.tif")
    resumed = run(rgb, folder / "a.tif")
    with rasterio.open(full) as a, rasterio.open(resumed) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    with rasterio.open(confidence_path(full)) as a, rasterio.open(confidence_path(resumed)) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "a_confidence.tif"]


def test_progress_of_other_settings_is_not_reused(rgb, tmp_path, stop_after_rows):
    with stop_after_rows(2):
        run(rgb, tmp_path / "a.tif")
    with pytest.warns(ResumeNotice, match="belongs to another input, option or rsneo version"):
        other = run(rgb, tmp_path / "a.tif", plan=WindowPlan(160, 32, 2))  # new signature: starts again
    fresh = run(rgb, tmp_path / "b.tif", plan=WindowPlan(160, 32, 2))
    with rasterio.open(other) as a, rasterio.open(fresh) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_damaged_saved_state_starts_over(rgb, tmp_path, stop_after_rows):
    with stop_after_rows(2):
        run(rgb, tmp_path / "a.tif")
    (tmp_path / ".a.tif.carry2.npz").write_bytes(b"not an npz archive")
    with pytest.warns(ResumeNotice, match="discarded it and starting again"):
        damaged = run(rgb, tmp_path / "a.tif")
    fresh = run(rgb, tmp_path / "b.tif")
    with rasterio.open(damaged) as a, rasterio.open(fresh) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_blend_weights_are_positive_symmetric_and_flat_inside():
    w = blend_weights(64, 16)
    assert w.shape == (64, 64) and (w > 0).all()
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert (w[16:48, 16:48] == 1).all()
    assert w[0, 0] < w[8, 8] < w[16, 16]


def test_window_plan_covers_every_pixel():
    plan = WindowPlan(128, 32, 1)
    for length in (1, 100, 128, 129, 791):
        starts = plan.starts(length)
        assert starts == list(range(0, starts[-1] + 1, 96))  # a regular stride
        assert starts[-1] + 128 >= length and (len(starts) == 1 or starts[-1] + 32 < length)


class WatchedWindows(RasterWindows):
    """Windows whose reads are counted, with the threads they ran on."""

    def __init__(self, datasets):
        super().__init__(datasets)
        self.started, self.threads = 0, set()
        self.changed = threading.Condition()

    def read(self, row, col, size):
        with self.changed:
            self.started += 1
            self.threads.add(threading.current_thread().name)
            self.changed.notify_all()
        return super().read(row, col, size)


def test_the_next_batch_is_read_while_the_model_works_on_this_one(rgb, tmp_path):
    plan = WindowPlan(128, 32, 3)  # 791 x 718: 8 x 8 windows, batches of 3, 3 and 2 per window row
    with rasterio.open(rgb) as src:
        windows = WatchedWindows([src])
        total = len(plan.starts(src.width)) * len(plan.starts(src.height))
        used, ahead = [0], []

        def predict(pixels, valid):
            used[0] += len(pixels)
            if used[0] < total:  # the reader has the next batch's first window under way before this returns
                with windows.changed:
                    ahead.append(windows.changed.wait_for(lambda: windows.started > used[0], timeout=30))
            return brightness(pixels, valid)

        spec = MapSpec(predict, ClassLegend.from_names(["bright", "dark"]))
        out = predict_raster(
            windows, spec, tmp_path / "a.tif", crs=src.crs, transform=src.transform, plan=plan, signature="t"
        )
    assert len(ahead) == 8 * 3 - 1 and all(ahead)
    assert {name.split("_")[0] for name in windows.threads} == {"rsneo-read"}
    with rasterio.open(out) as result, rasterio.open(run(rgb, tmp_path / "b.tif")) as plain:
        np.testing.assert_array_equal(result.read(1), plain.read(1))


def test_a_failure_on_the_writer_thread_stops_the_run_with_its_own_error(rgb, tmp_path):
    calls = [0]

    def classify(probs):
        calls[0] += 1
        if calls[0] == 5:
            raise ValueError("classify failed on block 5")
        return probs.argmax(0).astype(np.uint8), probs.max(0)

    spec = MapSpec(brightness, ClassLegend.from_names(["bright", "dark"]), classify=classify)
    with rasterio.open(rgb) as src, pytest.raises(ValueError, match="block 5"):
        predict_raster(
            RasterWindows([src]), spec, tmp_path / "a.tif", crs=src.crs, transform=src.transform,
            plan=WindowPlan(128, 32, 3), signature="t",
        )  # fmt: skip
    assert not (tmp_path / "a.tif").exists()
    assert not any(t.name.startswith("rsneo-") for t in threading.enumerate())  # both threads stopped


def test_rsneo_overlap_0_reads_on_the_calling_thread_to_the_same_map(rgb, tmp_path, monkeypatch):
    monkeypatch.setenv("RSNEO_OVERLAP", "0")
    with rasterio.open(rgb) as src:
        windows = WatchedWindows([src])
        out = predict_raster(
            windows, MapSpec(brightness, ClassLegend.from_names(["bright", "dark"])), tmp_path / "a.tif",
            crs=src.crs, transform=src.transform, plan=WindowPlan(128, 32, 3), signature="t",
        )  # fmt: skip
    assert windows.threads == {threading.current_thread().name}
    monkeypatch.delenv("RSNEO_OVERLAP")
    with rasterio.open(out) as result, rasterio.open(run(rgb, tmp_path / "b.tif")) as threaded:
        np.testing.assert_array_equal(result.read(1), threaded.read(1))
