"""The language-model wrapper: text-only calls, the loss against cross-entropy, tied weights after loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsneo.errors import InputError
from rsneo.model import RSNeoConfig, RSNeoForCausalLM, text_positions


@pytest.fixture(scope="module")
def tiny() -> RSNeoForCausalLM:
    torch.manual_seed(0)
    return RSNeoForCausalLM(RSNeoConfig.from_preset("tiny")).eval()


def test_text_calls_refuse_image_tokens_and_missing_inputs(tiny):
    with pytest.raises(InputError, match="text only"):
        tiny(input_ids=torch.tensor([[1, tiny.config.img_context_token_id]]))
    with pytest.raises(InputError, match="either ModelInputs or input_ids"):
        tiny()


def test_input_ids_and_text_positions_give_the_same_logits(tiny):
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        plain, packed = tiny(input_ids=ids).logits, tiny(text_positions(ids)).logits
    torch.testing.assert_close(plain, packed, rtol=0, atol=0)


def test_loss_is_cross_entropy_over_labelled_tokens(tiny):
    inputs = text_positions(torch.tensor([[5, 6, 7, 8, 9]]))
    inputs.labels = torch.tensor([[6, 7, -100, 9, -100]])  # two positions not learned
    with torch.no_grad():
        out = tiny(inputs)
    expected = F.cross_entropy(out.logits[0, [0, 1, 3]].float(), torch.tensor([6, 7, 9]))
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=1e-6)  # fp32 sums of 3 terms


def test_tied_head_is_one_tensor_after_a_round_trip(tmp_path):
    config = RSNeoConfig.from_preset("tiny", tie_word_embeddings=True)
    model = RSNeoForCausalLM(config)
    model.save_pretrained(tmp_path)
    loaded = RSNeoForCausalLM.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.backbone.embed_tokens.weight
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight) and not loaded.training
