"""The mixed mask token by token, and the three attention backends agreeing."""

from __future__ import annotations

import pytest
import torch

from rsneo.model import ImageInput, RSNeoConfig, RSNeoForCausalLM, pack_documents
from rsneo.model.masks import dense_mask, flash_plan
from rsneo.model.varlen import run_varlen

from .test_positions import CFG, two_frame_document

# Flex on the CPU runs uncompiled (the reference the backends are compared with); torch warns about that
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile:UserWarning")


def mask_of(policy: str) -> torch.Tensor:
    ids, groups = two_frame_document()
    batch = pack_documents([[(ids, groups)]], CFG, policy=policy)
    return dense_mask(batch.doc_ids, batch.block_ids, batch.doc_ids, batch.block_ids)[0, 0]


def test_frame_policy_later_frame_sees_earlier_one_causally_only():
    m = mask_of("frame")
    f1, f2 = [2, 3, 4], [8, 9, 10]
    assert m[2, 4] and m[4, 2]  # bands of one frame see each other both ways
    assert all(m[q, k] for q in f2 for k in f1)  # later frame sees the earlier one
    assert not any(m[q, k] for q in f1 for k in f2)  # but not the other way
    assert not m[1, 2] and m[5, 4]  # <img> is causal; </img> sees the whole frame
    assert not m[2, 5]  # image tokens do not see their </img>


def test_scene_policy_lets_dates_see_each_other():
    m = mask_of("scene")
    f1, f2 = [2, 3, 4], [8, 9, 10]
    assert all(m[q, k] for q in f1 + f2 for k in f1 + f2)
    assert not m[2, 6] and not m[2, 7]  # the date text between frames stays causal
    assert m[12].sum() == 13  # the closing text sees everything


def test_documents_never_see_each_other_and_padding_is_not_empty():
    ids, groups = two_frame_document()
    batch = pack_documents(
        [[(ids[:6], groups[:2]), (torch.tensor([5, 6]), [])], [(torch.tensor([1]), [])]], CFG
    )
    m = dense_mask(batch.doc_ids, batch.block_ids, batch.doc_ids, batch.block_ids)[:, 0]
    assert not m[0, 6:, :6].any() and not m[0, :6, 6:].any()
    assert m[1, 3, 3] and m[1, 3].sum() == 1  # padding attends only itself
    assert m.any(-1).all()


def multi_frame_multi_band_batch(config: RSNeoConfig, policy: str):
    torch.manual_seed(1)
    s2 = ([0.49, 0.56, 0.665, 0.842], ("blue", "green", "red", "nir"))
    swir = ([1.61, 2.19], ("swir16", "swir22"))
    sar = ([55465.0, 55465.0], ("vv", "vh"))

    def frame(t: float):
        return [
            ImageInput(torch.randn(4, 64, 64), torch.tensor(s2[0]), s2[1], t),
            ImageInput(torch.randn(2, 32, 64), torch.tensor(swir[0]), swir[1], t),
            ImageInput(torch.randn(2, 32, 32), torch.tensor(sar[0]), sar[1], t),
        ]

    s, e, c = config.img_start_token_id, config.img_end_token_id, config.img_context_token_id
    block = [s] + [c] * 7 + [e]
    doc = torch.tensor([1, 2] + block + [3] + block + [4] + block + [5, 6, 7])
    text = torch.tensor([9, 8, 7, 6, 5])
    return pack_documents([[(doc, frame(0) + frame(5) + frame(30)), (text, [])]], config, policy=policy,
                          date_spacing=0.1)  # fmt: skip


def test_flex_and_sdpa_agree_on_multi_frame_multi_band(golden_model):
    for policy in ("frame", "scene"):
        batch = multi_frame_multi_band_batch(golden_model.config, policy)
        with torch.no_grad():
            sdpa = golden_model(batch, attn_backend="sdpa").logits
            flex = golden_model(batch, attn_backend="flex").logits
        torch.testing.assert_close(flex, sdpa, rtol=0, atol=1e-5)


def test_policies_change_the_numbers(golden_model):
    with torch.no_grad():
        a = golden_model(multi_frame_multi_band_batch(golden_model.config, "frame")).logits
        b = golden_model(multi_frame_multi_band_batch(golden_model.config, "scene")).logits
    assert (a - b).abs().max() > 1e-4


def test_flash_plan_is_none_for_mixed_image_text():
    batch = multi_frame_multi_band_batch(CFG, "frame")
    assert flash_plan(batch.doc_ids, batch.block_ids) is None


def test_flash_plan_for_packed_text_is_causal_per_document():
    doc = torch.tensor([[0, 0, 0, 1, 1, -1], [0, 0, 0, 0, 0, 0]])
    plan = flash_plan(doc, torch.full_like(doc, -1))
    assert plan.causal
    assert plan.cu_seqlens.tolist() == [0, 3, 5, 11] and plan.cu_seqlens.dtype == torch.int32
    assert plan.max_seqlen == 6
    assert plan.token_index.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]


def test_flash_plan_for_image_only_documents_is_bidirectional():
    doc = torch.tensor([[0, 0, 0, 0, 1, 1]])
    plan = flash_plan(doc, torch.tensor([[0, 0, 0, 0, 0, 0]]))
    assert not plan.causal and plan.cu_seqlens.tolist() == [0, 4, 6]
    # a document of two separate blocks is not one bidirectional segment
    assert flash_plan(doc, torch.tensor([[0, 0, 1, 1, 0, 0]])) is None
    # too wide heads for flash-attn
    assert flash_plan(doc, torch.zeros_like(doc), qk_dim=320) is None


def test_varlen_segments_equal_the_dense_mask():
    torch.manual_seed(0)
    for doc, block in [
        (torch.tensor([[0, 0, 0, 1, 1, -1], [0, 0, 0, 0, 0, 0]]), None),
        (torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, -1]]), "image"),
    ]:
        block = torch.full_like(doc, -1) if block is None else torch.where(doc >= 0, doc, -1)
        q, k = torch.randn(2, 2, 6, 40), torch.randn(2, 2, 6, 40)
        v = torch.randn(2, 2, 6, 16)
        plan = flash_plan(doc, block)
        out = run_varlen(plan, q, k, v, 0.25)
        ref = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=dense_mask(doc, block, doc, block), scale=0.25
        )
        valid = doc >= 0
        torch.testing.assert_close(out.transpose(1, 2)[valid], ref.transpose(1, 2)[valid], rtol=0, atol=1e-6)


def test_auto_backend_on_cpu_is_sdpa_and_image_only_batches_may_use_flash():
    model = RSNeoForCausalLM(CFG)
    batch = multi_frame_multi_band_batch(CFG, "frame")
    assert model.backbone.attention_mask(batch, "auto").backend == "sdpa"
    assert model.backbone.attention_mask(batch, "flash").backend == "sdpa"  # mask not document-blocked
    text = pack_documents([[(torch.tensor([1, 2, 3]), [])]], CFG)
    assert model.backbone.attention_mask(text, "flash").backend == "flash"


def test_flex_on_cpu_with_gradients_falls_back_to_sdpa():
    model = RSNeoForCausalLM(CFG)
    batch = multi_frame_multi_band_batch(CFG, "frame")
    assert model.backbone.attention_mask(batch, "flex").backend == "sdpa"
    with torch.no_grad():
        assert model.backbone.attention_mask(batch, "flex").backend == "flex"
