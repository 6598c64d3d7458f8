"""Documents, packing into rows, labels, collate and the unpacking round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsneo.data.documents import Answer, Prompt, build_document
from rsneo.data.frames import scene_frames
from rsneo.data.packing import collate_rows, pack_batches, pack_rows, unpack
from rsneo.errors import InputError
from rsneo.io.scene import read_scene
from rsneo.model.positions import document_positions
from rsneo.model.tokenizer import image_token_ids


@pytest.fixture(scope="module")
def docs(shared_data, caption_tokenizer):
    """Four real documents: a captioned S2 frame, a two-date NAIP series, a VQA turn, plain text."""
    s2 = read_scene(shared_data / "sen1floods11/S2/Spain_7370579_S2Hand.tif", window=(0, 0, 64, 64))
    naip = read_scene(
        sorted((shared_data / "timeseries/naip_m4709963").glob("*.tif"))[:2], window=(0, 0, 64, 32)
    )
    tok = caption_tokenizer
    return [
        build_document(["a river near a field", *scene_frames(s2)], tok),
        build_document(scene_frames(naip, captions=True) + [Answer("many trees")], tok, learn_text=False),
        build_document([Prompt("is there a pool?"), *scene_frames(naip)[:1], Answer("yes")], tok),
        build_document(["two planes are in an airport ."], tok),
    ]


def test_documents_lay_out_img_blocks_and_mark_what_is_learned(docs, caption_tokenizer):
    ids = image_token_ids(caption_tokenizer)
    first = docs[0]
    start = first.ids.index(ids.start)
    n = sum(g.num_tokens for g in first.groups)  # 5 groups of 2x2 tokens
    assert (
        n == 20
        and first.ids[start + 1 : start + 1 + n] == [ids.context] * n
        and first.ids[start + 1 + n] == ids.end
    )
    assert all(first.learn[:start]) and not any(first.learn[start : start + n + 2])
    vqa = docs[2]
    answer = caption_tokenizer("yes", add_special_tokens=False)["input_ids"]
    assert vqa.ids[-len(answer) - 1 : -1] == answer and sum(vqa.learn) == len(answer) + 1  # + eos
    assert vqa.ids[-1] == caption_tokenizer.eos_token_id


def test_pack_rows_is_first_fit_and_respects_max_tokens():
    assert pack_rows([5, 4, 3, 2, 6], 8) == [[0, 2], [1, 3], [4]]
    with pytest.raises(InputError, match=r"document 1: 9 tokens, expected at most max_tokens=8"):
        pack_rows([1, 9], 8)


def test_unpacking_gives_back_each_documents_tokens_and_indexes(docs, caption_tokenizer):
    tokens = image_token_ids(caption_tokenizer)
    longest = max(len(d) for d in docs)
    batches = pack_batches(docs, max_tokens=longest + 40, tokens=tokens, rows_per_batch=2, policy="scene")
    total_rows = sum(b.input_ids.shape[0] for b in batches)
    assert total_rows < len(docs)  # several documents share a row
    for b in batches:
        assert ((b.doc_ids >= 0).sum(1) <= longest + 40).all()
    unpacked = [u for b in batches for u in unpack(b, tokens.context)]
    order = [i for row in pack_rows([len(d) for d in docs], longest + 40) for i in row]
    assert len(unpacked) == len(docs)
    for i, got in zip(order, unpacked, strict=True):
        doc = docs[i]
        want = document_positions(torch.tensor(doc.ids), doc.groups, tokens, policy="scene")
        assert got.ids.tolist() == doc.ids
        torch.testing.assert_close(got.positions, want.positions)
        assert torch.equal(got.block_ids, want.block_ids)
        assert len(got.groups) == len(doc.groups)
        assert all(a is b for a, b in zip(got.groups, doc.groups, strict=True))


def test_labels_are_next_tokens_inside_a_document_only(docs, caption_tokenizer):
    tokens = image_token_ids(caption_tokenizer)
    batch = collate_rows([[docs[3], docs[2]]], tokens, pad_id=caption_tokenizer.pad_token_id)
    labels, ids = batch.labels[0], batch.input_ids[0]
    n3 = len(docs[3])
    np.testing.assert_array_equal(labels[: n3 - 1].numpy(), ids[1:n3].numpy())  # plain text: all learned
    assert labels[n3 - 1] == -100  # never predict the next document's first token
    learned = [t for t, f in zip(docs[2].ids, docs[2].learn, strict=True) if f]
    assert [int(x) for x in labels[n3:] if x >= 0] == learned


def test_frame_policy_gives_each_date_its_own_block(docs, caption_tokenizer):
    tokens = image_token_ids(caption_tokenizer)
    batch = collate_rows([[docs[1]]], tokens, policy="frame")
    blocks = batch.block_ids[0]
    assert sorted(blocks[blocks >= 0].unique().tolist()) == [0, 1]
    t = batch.positions[0, 0][blocks >= 0]
    assert t.unique().numel() == 2  # one T per frame
