"""`rsneo change --of buildings`: new buildings between two very-high-resolution optical dates, with the
files every change-kind product writes.

The map (`maps.building_map`) is the morphological building index of each date where it rose clearly; it
does not use the model (the bundled model never saw a building) and the report says so.
"""

from __future__ import annotations

from dataclasses import replace

from affine import Affine

from rsneo.data.frames import model_band_groups
from rsneo.heads.system import System
from rsneo.io.cog import check_writable, gdal_env
from rsneo.io.runstate import fingerprint, output_lock
from rsneo.io.sieve import parse_min_area
from rsneo.io.vector import simplify_tolerance
from rsneo.predict.change_outputs import ChangeWording, change_files, write_change_products
from rsneo.predict.inputs import layouts_of, open_dates
from rsneo.predict.maps.buildings import BUILDING_NAMES, building_map
from rsneo.predict.requests import BuildingsRequest, ChangeOutputs, check_dates
from rsneo.predict.resume import run_signature
from rsneo.predict.sliding_window import predict_raster

WORDING = ChangeWording(
    title="New buildings",
    made_by="the morphological building index (no model)",
    how_mapped=(
        "New buildings are mapped by the morphological building index of each date (bright, roof-sized "
        "shapes) where it rose clearly, both cuts by Otsu's method on this pair; the model is not used "
        "for this map (it never saw buildings). Demolished buildings are not mapped."
    ),
    subject=BUILDING_NAMES[1] + "s",
)


def map_new_buildings(system: System, request: BuildingsRequest) -> ChangeOutputs:
    """New buildings between the first and last of `request.rasters` (RGB, 2 m or finer; `pixel_size` in
    metres for images without georeference), every output in `request.out`.

    One writer per output folder; an interrupted run resumes. Areas are true hectares in any CRS, integer
    pixel counts for dates without georeference. The map does not use the model: its training domain is not
    checked. `system` gives the band grouping and the report pictures' grid, as for `rsneo change`.
    """
    check_dates(request.rasters)
    request = replace(request, min_area=parse_min_area(request.min_area))
    simplify_tolerance(request.simplify, Affine.identity())  # a bad --simplify fails before any work
    out_dir = check_writable(request.out)
    with output_lock(out_dir), gdal_env():
        layouts = layouts_of(request.rasters, request.sensor, request.bands, model_band_groups(system.config))
        files = change_files(out_dir)
        signature = run_signature(
            inputs=fingerprint(request.rasters),
            sensor=request.sensor,
            bands=request.band_list,
            plan=request.plan,
            pixel_size=request.pixel_size,
        )
        with open_dates(request.rasters, layouts) as inputs:
            spec = building_map(inputs, request.pixel_size)
            predict_raster(
                inputs.windows(), spec, files["cog"], crs=inputs.crs, transform=inputs.transform,
                plan=request.plan, signature=signature, keep_state=True, show_progress=request.show_progress,
                min_area=request.min_area,
            )  # fmt: skip
            return write_change_products(
                inputs, files, spec.legend, WORDING, system.config.token_size, request.simplify
            )
