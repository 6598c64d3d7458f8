"""`rsneo.model.golden`: NEO's reference cases as rsneo inputs, as the tests and the GPU check use them."""

from __future__ import annotations

import torch

from rsneo.model import golden


def test_cases_split_into_documents_at_the_recorded_boundaries(golden_cases, golden_config):
    for case in golden.CASES:
        inputs = golden.golden_inputs(golden_cases, case, golden_config)
        ids = golden_cases[f"{case}.input_ids"]
        bounds = golden_cases[f"{case}.seq_boundaries"].tolist()
        assert torch.equal(inputs.input_ids[0, : ids.numel()], ids)
        doc_ids = inputs.doc_ids[0, : ids.numel()]
        for k, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            assert (doc_ids[start:end] == k).all(), (case, k)
        n_images = sum(f"{case}.image{i}" in golden_cases for i in range(golden.MAX_IMAGES))
        assert len(inputs.images) == n_images == int((ids == golden_config.img_start_token_id).sum())
        assert all(im.band_keys == golden.RGB_KEYS for im in inputs.images)


def test_inputs_cast_to_the_model_dtype_and_weights_load_strictly(golden_dir, golden_cases, golden_config):
    inputs = golden.golden_inputs(golden_cases, "single", golden_config, dtype=torch.bfloat16)
    assert {im.pixels.dtype for im in inputs.images} == {torch.bfloat16}
    model = golden.golden_model(golden_dir, golden_config)  # load_state_dict(strict=True) inside
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
