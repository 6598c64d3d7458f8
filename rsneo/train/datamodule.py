"""Batches for Lightning: documents packed into `ModelInputs`, labelled chips into a segmentation batch.

Order is a resumable stream: `StepSampler` draws a fresh seeded permutation per pass and can start at
any sample, so a run resumed from step N sees exactly the batches an uninterrupted run sees (Lightning
does not fast-forward plain dataloaders). Under DDP each rank takes its own interleaved share of every
batch's samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rsneo.data.documents import DocumentBuilder
from rsneo.errors import InputError
from rsneo.model.positions import ImageTokens
from rsneo.train.batch import SegmentationBatch, TrainBatch
from rsneo.train.corpus import QA_SOURCES, SOURCES, Sample


class StepSampler(Sampler[int]):
    """Sample indexes for `steps` batches of `batch_size` per rank, from seeded permutations, from
    `start_batch` on.

    The global stream is permutation after permutation of the dataset (seed + pass); rank r of w takes
    every w-th item from position r, so ranks see different samples and together the same stream as one
    process.
    """

    def __init__(
        self, size: int, batch_size: int, steps: int, seed: int, rank: int = 0, world: int = 1
    ) -> None:
        self.size, self.batch_size, self.steps = size, batch_size, steps
        self.seed, self.rank, self.world = seed, rank, world
        self.start_batch = 0

    def __len__(self) -> int:
        # the whole run's length even when resuming: Lightning counts the restored batches of this epoch
        return self.steps * self.batch_size

    def __iter__(self) -> Iterator[int]:
        first = self.start_batch * self.batch_size * self.world
        last = self.steps * self.batch_size * self.world
        epoch, order = -1, torch.empty(0, dtype=torch.long)
        for position in range(first + self.rank, last, self.world):
            wanted, offset = divmod(position, self.size)
            if wanted != epoch:  # one permutation per pass over the data
                epoch = wanted
                order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            yield int(order[offset])


class SampleList(Dataset):
    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def collate(samples: Sequence[Sample], tokens: ImageTokens, pad_id: int, policy: str = "frame") -> TrainBatch:
    """One document per row (`collate_rows`: right-padded, next-token labels on learned text);
    the samples' labelled chips become one segmentation batch of image documents; their change sources are
    passed on (the module simulates the pairs with the step's generator)."""
    from rsneo.data.packing import collate_rows

    inputs = collate_rows([[s.document] for s in samples], tokens, pad_id, policy)
    chips = [s.chip for s in samples if s.chip is not None]
    # one class vocabulary and chip size per segmentation batch; other chips sit out this batch's loss
    chips = [
        c for c in chips if c.class_names == chips[0].class_names and c.labels.shape == chips[0].labels.shape
    ]
    segmentation = None
    if chips:
        from rsneo.heads.segmentation import image_documents

        seg_inputs = image_documents([[c.groups] for c in chips], tokens)
        labels = torch.stack([c.labels for c in chips])  # (chips, height, width)
        segmentation = SegmentationBatch(seg_inputs, labels, chips[0].class_names)
    sources = [s.change for s in samples if s.change is not None]
    return TrainBatch(inputs, segmentation, sources or None)


def build_samples(
    sources: Sequence[str], root: Path, tokenizer: Any, tokens: ImageTokens, tile: int, **options: Any
) -> list[Sample]:
    """All samples of the named sources (see `rsneo.train.corpus.SOURCES`)."""
    if tile % 32:
        raise InputError(f"data.tile: expected a multiple of 32 pixels, got {tile}")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise InputError(f"data.sources: expected names from {sorted(SOURCES)}, got {unknown}")
    samples: list[Sample] = []
    for name in sources:
        extra = {k: v for k, v in options.items() if k == "split" and name == "sen1floods11"}
        extra.update({k: v for k, v in options.items() if k == "path" and name == "shards"})
        if options.get("qa") and name in QA_SOURCES:
            extra["qa"] = True
        samples += SOURCES[name](root, lambda: DocumentBuilder(tokenizer, tokens), tile, **extra)
    if not samples:
        raise InputError(f"data.sources {list(sources)} under {root}: expected samples, found none")
    return samples


class RSNeoDataModule(L.LightningDataModule):
    """Training batches from `data` config sources under `root`, as a resumable stream of `batches` batches
    (max_steps x accumulate_grad_batches)."""

    def __init__(
        self, data: dict[str, Any], root: Path, tokenizer: Any, tokens: ImageTokens, batches: int, seed: int,
        policy: str = "frame", num_workers: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.data, self.root, self.tokenizer, self.tokens = data, root, tokenizer, tokens
        self.batches, self.seed, self.policy, self.num_workers = batches, seed, policy, num_workers
        self.samples: list[Sample] | None = None
        self.sampler: StepSampler | None = None
        self.start_batch = 0

    def setup(self, stage: str | None = None) -> None:
        if self.samples is None:
            split = self.data.get("split", "all")
            self.samples = build_samples(
                self.data["sources"],
                self.root,
                self.tokenizer,
                self.tokens,
                int(self.data["tile"]),
                split=split,
                path=self.data.get("path"),
                qa=bool(self.data.get("qa", False)),
            )

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        self.sampler = StepSampler(
            len(self.samples), int(self.data["batch_size"]), self.batches, self.seed, rank, world
        )
        self.sampler.start_batch = self.start_batch
        pad = self.tokenizer.pad_token_id or 0
        return DataLoader(
            SampleList(self.samples),
            batch_size=int(self.data["batch_size"]),
            sampler=self.sampler,
            collate_fn=partial(collate, tokens=self.tokens, pad_id=pad, policy=self.policy),
            num_workers=self.num_workers,
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return (
            batch.to(device)
            if isinstance(batch, TrainBatch)
            else super().transfer_batch_to_device(batch, device, dataloader_idx)
        )

    # the position in the stream travels in the checkpoint (plain ints): batches consumed per rank
    def state_dict(self) -> dict[str, int]:
        if self.trainer is None:
            return {"batches": 0}
        return {"batches": int(self.trainer.global_step * self.trainer.accumulate_grad_batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.start_batch = int(state["batches"])
