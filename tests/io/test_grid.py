"""Grid arithmetic on a 10 m UTM grid, checked against rasterio's own window functions."""

from __future__ import annotations

import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from rsneo.io.grid import Grid

UTM = CRS.from_epsg(32630)
GRID = Grid(UTM, Affine(10.0, 0, 500_000.0, 0, -10.0, 4_000_000.0), 100, 80)


def test_bounds_and_resolution():
    assert GRID.res == (10.0, 10.0) and GRID.width_height == (100, 80)
    assert GRID.bounds == (500_000.0, 3_999_200.0, 501_000.0, 4_000_000.0)


def test_window_and_its_bounds_agree_with_rasterio():
    window = Window(10, 20, 30, 40)
    sub = GRID.window(window)
    assert sub.bounds == rasterio.windows.bounds(window, GRID.transform)
    assert GRID.window_of_bounds(sub.bounds) == window
    assert sub.aligned_window_in(GRID) == window and GRID.contains_window(window)


def test_bounds_between_pixels_round_outwards():
    # 5 m inside pixel 1 on the left and 5 m into pixel 3 on the right: columns 1 to 3, three pixels
    assert GRID.window_of_bounds((500_015.0, 3_999_950.0, 500_035.0, 3_999_985.0)) == Window(1, 1, 3, 4)


def test_resampled_keeps_the_extent():
    coarse = GRID.resampled(20.0)
    assert coarse.width_height == (50, 40) and coarse.bounds == GRID.bounds and coarse.crs == UTM


def test_alignment_needs_same_crs_pixel_size_and_whole_pixel_offsets():
    shifted = Grid(UTM, Affine(10.0, 0, 500_005.0, 0, -10.0, 4_000_000.0), 10, 10)  # half a pixel
    assert shifted.aligned_window_in(GRID) is None
    assert GRID.resampled(20.0).aligned_window_in(GRID) is None
    other_crs = Grid(CRS.from_epsg(32631), GRID.transform, 10, 10)
    assert other_crs.aligned_window_in(GRID) is None


def test_overlap_needs_positive_area_and_windows_must_lie_inside():
    right = Grid(UTM, Affine(10.0, 0, 501_000.0, 0, -10.0, 4_000_000.0), 10, 10)  # shares an edge only
    assert not GRID.overlaps(right)
    assert GRID.overlaps(GRID.window(Window(90, 70, 20, 20)))
    assert not GRID.contains_window(Window(90, 70, 20, 20)) and not GRID.contains_window(Window(-1, 0, 5, 5))
