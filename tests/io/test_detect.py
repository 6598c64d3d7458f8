"""`rsneo.io.detect`: which sensor made a raster, which of its bands each file band is, and when it was
acquired, from the metadata of real samples; what to pass when the metadata cannot tell."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsneo.errors import InputError
from rsneo.io.detect import (
    acquisition_date,
    assign_bands,
    detect_sensor,
    folder_band_name,
    scene_id_date,
)
from rsneo.io.read import open_source
from rsneo.sensors import get_sensor

BEN_S2 = "bigearthnet/BigEarthNet-S2-Example/S2A_MSIL2A_20170613T101031_87_48"
BEN_S1 = "bigearthnet/BigEarthNet-S1-Example/S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"


def detect(path: Path, given=None) -> str:
    with rasterio.open(path) as src:
        names = [d or "" for d in src.descriptions]
        return detect_sensor(path, src, names, given, src.count).name


@pytest.mark.parametrize(
    ("sample", "sensor", "how"),
    [
        ("sen1floods11/S2/Spain_7370579_S2Hand.tif", "sentinel2_l1c", "band descriptions only it explains"),
        ("sen1floods11/S1/Spain_7370579_S1Hand.tif", "sentinel1_grd", "VV, VH descriptions"),
        ("landsat_change_taizhou/2000TM", "landsat7_etm", "ENVI sensor type"),
        ("timeseries/naip_m4709963/m_4709963_se_14_1_20090818.tif", "naip", "USDA file name"),
        (f"{BEN_S2}/S2A_MSIL2A_20170613T101031_87_48_B02.tif", "sentinel2_l2a", "ESA product name"),
        (
            f"{BEN_S1}/S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48_VV.tif",
            "sentinel1_grd",
            "ESA product name",
        ),
        ("rasters/RGB.byte.tif", "rgb", "red, green, blue colour interpretation"),
    ],
)
def test_sensor_of_real_samples_from_their_metadata(shared_data, sample, sensor, how):
    assert detect(shared_data / sample) == sensor, how


def test_a_given_sensor_wins_over_the_metadata(shared_data):
    assert detect(shared_data / "rasters/RGB.byte.tif", given="naip") == "naip"


def test_a_raster_without_sensor_metadata_is_refused_with_what_to_pass(shared_data):
    path = shared_data / "timeseries/landsat_pucallpa/1985.tif"  # 4 bands, uint8, named by its year only
    with pytest.raises(InputError) as refused:
        detect(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: cannot tell which sensor made this raster (4 bands, uint8,")
    assert "pass --sensor NAME (sensors with 4 bands: naip, " in message and "--bands NAME,..." in message


def test_band_folders_sort_into_the_sensors_band_order(shared_data):
    source = open_source(shared_data / BEN_S2)  # files sort B01, B02, ..., B8A, B09, B11, B12 by name
    assert source.sensor.name == "sentinel2_l2a"
    assert [b.name for b in source.bands] == [
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"
    ]  # fmt: skip
    assert [b.common_name for b in source.bands][1:4] == ["blue", "green", "red"]
    assert folder_band_name(Path("S2A_MSIL2A_20170613T101031_87_48_B8A.tif")) == "B8A"


def test_bands_given_in_file_order_and_their_count_checked(shared_data):
    landsat = get_sensor("landsat5_tm")
    path = Path("1985.tif")
    bands = assign_bands(path, landsat, ["", "", "", ""], ["B5", "B4", "B3", "B2"], None, 4)
    assert [b.common_name for b in bands] == ["swir16", "nir08", "red", "green"]
    with pytest.raises(
        InputError, match=r"1985.tif: --bands names 3 bands \(B5,B4,B3\) but the raster has 4"
    ):
        assign_bands(path, landsat, [], ["B5", "B4", "B3"], None, 4)
    with pytest.raises(
        InputError, match=r"1985.tif: has 4 bands but sensor landsat5_tm has 7 .*pass --bands"
    ):
        assign_bands(path, landsat, [], None, None, 4)


def test_bands_matched_by_wavelength_within_the_tolerance():
    etm = get_sensor("landsat7_etm")
    centres = [b.wavelength for b in etm.bands]
    picked = assign_bands(Path("x"), etm, [], None, [centres[3] + 0.01, centres[2] - 0.01], 2)
    assert [b.name for b in picked] == [etm.bands[3].name, etm.bands[2].name]
    with pytest.raises(InputError, match="pass --bands"):  # 0.2 um off every band: not matched
        assign_bands(Path("x"), etm, [], None, [centres[3] + 0.2, centres[2]], 2)


@pytest.mark.parametrize(
    ("name", "date"),
    [
        ("LT51190382000366BJC00", "2000-12-31"),  # day 366 of a leap year
        ("LT51190382000367BJC00", None),  # no day 367: not a date
        ("LC08_L1TP_042034_20200101_20200113_01_T1_B4.TIF", "2020-01-01"),
        ("plain_20170613.tif", None),  # a date, but not in a scene id
    ],
)
def test_scene_id_dates(name, date):
    assert scene_id_date(name) == (None if date is None else np.datetime64(date))


def test_dates_of_real_samples(shared_data):
    with rasterio.open(
        shared_data / "landsat_change_taizhou/2000TM"
    ) as src:  # the scene id in the ENVI header
        assert acquisition_date(Path(src.name), src) == np.datetime64("2000-03-17")
    naip = Path("timeseries/naip_m4709963/m_4709963_se_14_1_20100629.tif")
    assert acquisition_date(shared_data / naip) == np.datetime64("2010-06-29")  # a date in the name
    assert acquisition_date(Path("1985.tif")) == np.datetime64("1985-01-01")  # a leading year
    assert acquisition_date(Path("RGB.byte.tif")) is None


@pytest.mark.parametrize(
    ("name", "date"),
    [
        ("LT51190382000077BJC00.tif", "2000-03-17"),  # pre-collection Landsat: year + day of year
        ("LE71190382003037EDC00.tif", "2003-02-06"),
        ("LT05_L1TP_119038_19950501_20170109_01_T1.tif", "1995-05-01"),  # acquired, then processed
        ("S2A_OPER_MSI_L1C_TL_SGS__20160606T152307_A004883_T32TQM_V20160605T101032_B04.tif", "2016-06-05"),
        ("S2B_MSIL2A_20170924T093020_N0205_R136_T35VPK_20170924T093132.tif", "2017-09-24"),
        ("MOD09GA.A2017032.h10v05.006.tif", "2017-02-01"),
    ],
)
def test_dates_come_from_scene_ids_when_the_metadata_has_none(shared_data, tmp_path, name, date):
    """The same real pixels under a scene id's name: the date comes from the id."""

    path = tmp_path / name
    shutil.copy(shared_data / "rasters" / "RGB.byte.tif", path)
    assert open_source(path, sensor="rgb").date == np.datetime64(date)


def test_a_date_in_the_metadata_wins_over_the_name(shared_data, tmp_path):
    path = tmp_path / "LT51190382000077BJC00.tif"
    with rasterio.open(shared_data / "rasters" / "RGB.byte.tif") as src:
        profile, data = src.profile, src.read()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(DATE_ACQUIRED="2001-05-04")  # as Landsat MTL metadata names it
    assert open_source(path, sensor="rgb").date == np.datetime64("2001-05-04")


def test_a_scene_id_folder_dates_the_band_files_in_it(shared_data, tmp_path):

    folder = tmp_path / "LT51190382000077BJC00"
    folder.mkdir()
    shutil.copy(shared_data / "rasters" / "RGB.byte.tif", folder / "bands.tif")
    assert open_source(folder / "bands.tif", sensor="rgb").date == np.datetime64("2000-03-17")
