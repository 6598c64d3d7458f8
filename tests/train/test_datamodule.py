"""The resumable, rank-aware sample stream and batch assembly."""

from __future__ import annotations

import torch

from rsneo.train.datamodule import StepSampler, collate


def test_stream_resumed_at_a_step_continues_the_uninterrupted_stream():
    whole = list(StepSampler(size=7, batch_size=3, steps=6, seed=5))
    resumed = StepSampler(size=7, batch_size=3, steps=6, seed=5)
    resumed.start_batch = 4
    assert list(resumed) == whole[4 * 3 :]
    assert len(whole) == 18 and sorted(whole[:7]) == list(range(7))  # each pass is a permutation
    assert whole[:7] != list(range(7))


def test_ranks_split_the_single_process_stream_between_them():
    single = list(StepSampler(size=10, batch_size=2, steps=5, seed=1))
    ranks = [list(StepSampler(size=10, batch_size=1, steps=5, seed=1, rank=r, world=2)) for r in (0, 1)]
    assert set(ranks[0]).isdisjoint(ranks[1])
    assert [x for pair in zip(*ranks, strict=True) for x in pair] == single


def test_collate_pads_rows_and_keeps_image_order(flood_samples, image_tokens):
    batch = collate(flood_samples[:2], image_tokens, pad_id=0)
    inputs = batch.inputs
    lengths = [len(s.document.ids) for s in flood_samples[:2]]
    assert inputs.input_ids.shape == (2, max(lengths))
    assert int((inputs.doc_ids >= 0).sum()) == sum(lengths)
    assert inputs.images == [*flood_samples[0].document.groups, *flood_samples[1].document.groups]
    assert torch.all(inputs.labels[inputs.doc_ids < 0] == -100)
