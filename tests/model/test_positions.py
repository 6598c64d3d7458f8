"""T/H/W/S indexes and block ids: NEO's rule, band groups, frames, date spacing, mask policies."""

from __future__ import annotations

import pytest
import torch

from rsneo.errors import InputError
from rsneo.model import ImageInput, RSNeoConfig, document_positions, pack_documents, spectral_coordinate

CFG = RSNeoConfig.from_preset("tiny")
S, E, C = CFG.img_start_token_id, CFG.img_end_token_id, CFG.img_context_token_id


def group(rows: int, cols: int, wavelengths: list[float], keys: tuple[str, ...], time: float | None = None):
    return ImageInput(torch.zeros(len(keys), 32 * rows, 32 * cols), torch.tensor(wavelengths), keys, time)


def two_frame_document():
    """text, frame 1 (RGB 1x2 + NIR 1x1), date text, frame 2 (RGB 1x2 + NIR 1x1), text."""
    f1 = [
        group(1, 2, [0.665, 0.56, 0.49], ("red", "green", "blue"), 0.0),
        group(1, 1, [0.842], ("nir",), 0.0),
    ]
    f2 = [
        group(1, 2, [0.665, 0.56, 0.49], ("red", "green", "blue"), 10.0),
        group(1, 1, [0.842], ("nir",), 10.0),
    ]
    ids = torch.tensor([1, S, C, C, C, E, 7, S, C, C, C, E, 2])
    return ids, f1 + f2


def test_band_groups_of_a_frame_share_t_and_have_their_own_grid_and_s():
    ids, groups = two_frame_document()
    doc = document_positions(ids, groups, CFG)
    t, h, w, s = doc.positions
    assert t.tolist() == [0, 1, 2, 2, 2, 3, 4, 5, 6, 6, 6, 7, 8]
    assert w.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert not h.any()
    rgb_s = spectral_coordinate([0.665, 0.56, 0.49], ["red", "green", "blue"])
    nir_s = spectral_coordinate([0.842], ["nir"])
    assert s[2].item() == pytest.approx(rgb_s) and s[4].item() == pytest.approx(nir_s)
    assert s[[0, 1, 5, 6, 12]].eq(0).all()


def test_frame_policy_gives_each_img_block_its_own_id():
    ids, groups = two_frame_document()
    doc = document_positions(ids, groups, CFG, policy="frame")
    assert doc.block_ids.tolist() == [-1, -1, 0, 0, 0, -1, -1, -1, 1, 1, 1, -1, -1]


def test_scene_policy_gives_all_frames_one_id():
    ids, groups = two_frame_document()
    doc = document_positions(ids, groups, CFG, policy="scene")
    assert doc.block_ids.tolist() == [-1, -1, 0, 0, 0, -1, -1, -1, 0, 0, 0, -1, -1]


def test_date_spacing_moves_later_frames_by_days():
    ids, groups = two_frame_document()
    t = document_positions(ids, groups, CFG, date_spacing=0.5).positions[0]
    # frame 2 is 10 days later: 0.5 T per day adds 5 before its image tokens, and everything after shifts
    assert t.tolist() == [0, 1, 2, 2, 2, 3, 4, 5, 11, 11, 11, 12, 13]


def test_date_spacing_needs_times_in_order():
    ids, groups = two_frame_document()
    groups[2].time = groups[3].time = -5.0
    with pytest.raises(InputError, match="time order"):
        document_positions(ids, groups, CFG, date_spacing=1.0)


def test_token_count_mismatch_names_the_problem():
    ids, groups = two_frame_document()
    with pytest.raises(InputError, match="band groups"):
        document_positions(ids, groups[:3], CFG)
    with pytest.raises(InputError, match="use only"):
        document_positions(ids, [*groups, groups[0]], CFG)
    with pytest.raises(InputError, match="mask policy"):
        document_positions(ids, groups, CFG, policy="video")


def test_pack_documents_restarts_positions_and_pads():
    ids, groups = two_frame_document()
    text = torch.tensor([3, 4, 5])
    batch = pack_documents([[(text, []), (ids, groups)], [(text, [])]], CFG)
    assert batch.input_ids.shape == (2, 16)
    assert batch.doc_ids[0].tolist() == [0] * 3 + [1] * 13
    assert batch.doc_ids[1].tolist() == [0] * 3 + [-1] * 13
    assert batch.positions[0, 0, 3].item() == 0  # the second document restarts T
    assert len(batch.images) == 4


def test_policy_and_date_spacing_default_from_the_config():
    ids, groups = two_frame_document()
    cfg = RSNeoConfig.from_preset("tiny", mask_policy="scene", date_spacing=0.5)
    doc = document_positions(ids, groups, cfg)
    assert doc.block_ids[8].item() == 0 and doc.positions[0, 8].item() == 11
    assert document_positions(ids, groups, cfg, date_spacing=0.0).positions[0, 8].item() == 6
