"""Questions over one or several dates: one document, frames in a scene block, a decoded answer."""

from __future__ import annotations

import numpy as np
import rasterio
import torch

from rsneo.data.frames import band_layout
from rsneo.heads.generation import generate_answer, question_document


def frames_of(shared_data, names, size=64):
    frames = []
    for name in names:
        path = shared_data / "timeseries" / "naip_m4709963" / name
        layout = band_layout(path)
        with rasterio.open(path) as src:
            pixels = src.read(out_shape=(src.count, size, size)).astype(np.float32)
        frames.append(layout.images(pixels, np.ones((size, size), bool)))
    return frames


def naip(shared_data):
    return sorted(p.name for p in (shared_data / "timeseries" / "naip_m4709963").glob("*.tif"))


def test_question_document_holds_every_frame_in_one_scene_block(tiny_system, shared_data):
    names = naip(shared_data)[:3]
    frames = frames_of(shared_data, names)
    doc = question_document(
        frames, "What changed?", tiny_system.tokenizer, tiny_system.config, ["2009", "2010", "2012"]
    )
    ids = doc.input_ids[0]
    context = ids == tiny_system.config.img_context_token_id
    assert int(context.sum()) == sum(g.num_tokens for frame in frames for g in frame)
    assert int((ids == tiny_system.config.img_start_token_id).sum()) == 3
    assert doc.block_ids[0][context].unique().tolist() == [0]
    assert (doc.block_ids[0][~context] == -1).all()
    text = tiny_system.tokenizer.decode(ids[~context].tolist())
    assert text.startswith("<|im_start|>user\n2009: <img></img>")
    assert text.endswith("What changed?<|im_end|>\n<|im_start|>assistant\n")


def test_generate_answer_is_deterministic_text(tiny_system, shared_data):
    frames = frames_of(shared_data, naip(shared_data)[:2])
    a = generate_answer(
        tiny_system.model, tiny_system.tokenizer, frames, "Describe the changes.", max_new_tokens=6
    )
    b = generate_answer(
        tiny_system.model, tiny_system.tokenizer, frames, "Describe the changes.", max_new_tokens=6
    )
    assert isinstance(a, str) and a == b
    assert len(tiny_system.tokenizer(a, add_special_tokens=False)["input_ids"]) <= 6 + 2
    assert torch.is_grad_enabled()  # inference_mode did not leak
