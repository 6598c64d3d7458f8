"""`rsneo.data.documents`: text and frames interleaved into token ids, exactly as NEO lays out `<img>` blocks,
and which tokens carry the language-model loss."""

from __future__ import annotations

import pytest
import torch

from rsneo.data.documents import Answer, DocumentBuilder, Prompt, build_document
from rsneo.data.frames import Frame
from rsneo.model.inputs import ImageInput
from rsneo.model.tokenizer import image_token_ids


def group(bands: int, height: int, width: int, keys: tuple[str, ...] | None = None) -> ImageInput:
    keys = keys or tuple(f"b{i}" for i in range(bands))
    return ImageInput(torch.zeros(bands, height, width), torch.linspace(0.4, 2.2, bands), keys)


@pytest.fixture(scope="module")
def tokenizer(caption_tokenizer):
    return caption_tokenizer


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_a_frame_is_img_then_one_context_token_per_32_pixels_of_each_group_then_end(tokenizer):
    tokens = image_token_ids(tokenizer)
    rgb, nir = group(3, 64, 96), group(1, 64, 96)  # 2 x 3 tokens each
    doc = DocumentBuilder(tokenizer).frame([rgb, nir]).end(eos=False)
    assert doc.ids == [tokens.start] + [tokens.context] * 12 + [tokens.end]
    assert doc.learn == [False] * 14  # no loss on image tokens
    assert doc.groups == [rgb, nir]  # band groups in token order


def test_frames_of_several_sizes_count_their_own_tokens(tokenizer):
    tokens = image_token_ids(tokenizer)
    small, large = group(2, 32, 32), group(2, 96, 64)  # 1 token, 3 x 2 tokens
    doc = build_document([[small], "and", [large]], tokenizer, eos=False)
    start, end = doc.ids.index(tokens.start), doc.ids.index(tokens.end)
    assert doc.ids[start : end + 1] == [tokens.start, tokens.context, tokens.end]
    second = doc.ids.index(tokens.start, end + 1)
    assert doc.ids[second:] == [tokens.start] + [tokens.context] * 6 + [tokens.end]
    assert doc.ids[end + 1 : second] == ids_of(tokenizer, "and")
    assert doc.ids.count(tokens.context) == sum(g.num_tokens for g in doc.groups) == 7


def test_prompts_carry_no_loss_answers_and_plain_text_do(tokenizer):
    question, answer = "What is there?", "water and a river"
    doc = build_document([Prompt(question), Answer(answer)], tokenizer)
    q, a = ids_of(tokenizer, question), ids_of(tokenizer, answer)
    assert doc.ids == q + a + [tokenizer.eos_token_id]
    assert doc.learn == [False] * len(q) + [True] * len(a) + [
        True
    ]  # the end token is learnt: generation stops
    plain = build_document(["a river"], tokenizer, learn_text=False, eos=False)
    assert plain.learn == [False] * len(ids_of(tokenizer, "a river"))
    assert len(plain) == len(plain.ids) == len(plain.learn)


def test_answer_is_learnt_even_when_plain_text_is_not(tokenizer):
    doc = build_document(["a caption", Answer("yes")], tokenizer, learn_text=False, eos=False)
    caption, yes = ids_of(tokenizer, "a caption"), ids_of(tokenizer, "yes")
    assert doc.learn == [False] * len(caption) + [True] * len(yes)


def test_a_frame_puts_its_caption_as_a_prompt_before_its_img_block(tokenizer):
    tokens = image_token_ids(tokenizer)
    caption = "2017-06-13 sentinel2_l2a:"
    frame = Frame([group(4, 32, 64)], caption=caption)
    doc = build_document([frame, "a green field"], tokenizer, eos=False)
    c = ids_of(tokenizer, caption)
    assert doc.ids[: len(c)] == c and doc.learn[: len(c)] == [False] * len(c)
    assert doc.ids[len(c) : len(c) + 4] == [tokens.start, tokens.context, tokens.context, tokens.end]
    assert doc.learn[len(c) + 4 :] == [True] * len(ids_of(tokenizer, "a green field"))
    uncaptioned = build_document([Frame([group(4, 32, 64)])], tokenizer, eos=False)
    assert uncaptioned.ids == [tokens.start, tokens.context, tokens.context, tokens.end]


def test_time_series_documents_keep_every_dates_groups_in_order(tokenizer):
    dates = [
        Frame([group(3, 32, 32, ("red", "green", "blue")), group(1, 32, 32, ("nir",))]) for _ in range(3)
    ]
    doc = build_document(dates, tokenizer, eos=False)
    assert len(doc.groups) == 6 and [g.band_keys for g in doc.groups[:2]] == [
        ("red", "green", "blue"),
        ("nir",),
    ]
    assert len(doc) == 3 * (2 + 2)  # per date: <img>, two context tokens (one per group), </img>


def test_image_documents_give_one_document_per_sample_and_one_block_per_frame_or_scene(tokenizer):
    """The same token rule as `DocumentBuilder.frame`; `frame` masks each `<img>` block apart, `scene` lets
    the frames of a sample see each other."""
    from rsneo.data.documents import frame_ids, image_documents

    tokens = image_token_ids(tokenizer)
    samples = [[[group(3, 64, 32)], [group(3, 64, 32)]] for _ in range(2)]  # 2 dates of 2 x 1 tokens
    for policy, second_block in (("frame", 1), ("scene", 0)):
        inputs = image_documents(samples, tokens, policy=policy)
        one_date = frame_ids(samples[0][0], tokens)
        assert one_date == [tokens.start, tokens.context, tokens.context, tokens.end]
        assert inputs.input_ids.tolist() == [one_date * 2] * 2
        assert inputs.doc_ids.tolist() == [[0] * 8] * 2
        context = inputs.input_ids[0] == tokens.context
        assert inputs.block_ids[0, context].tolist() == [0, 0, second_block, second_block]
        assert len(inputs.images) == 4
    built = DocumentBuilder(tokenizer, tokens).frame(samples[0][0]).end(eos=False)
    assert built.ids == frame_ids(samples[0][0], tokens)
