"""Batches for Lightning: documents packed into `ModelInputs`, labelled chips into a segmentation batch.

Order is a resumable stream: `StepSampler` draws a fresh seeded permutation per pass and can start at
any sample, so a run resumed from step N sees exactly the batches an uninterrupted run sees (Lightning
does not fast-forward plain dataloaders). Under DDP each rank takes its own interleaved share of every
batch's samples.

`data.sources=[shards]` alone streams the prepared archive instead (`rsneo.data.shards.ShardDataset`):
sample by sample, split across ranks and DataLoader workers, through a shuffle buffer, resumable mid-epoch;
each sample becomes its document inside the worker. With `trainer.val_every_n_steps` > 0 a held-out set is
kept apart for the validation loop: the last `data.val_shards` shards (or the folder `data.val_path`) of a
streamed archive, else a seeded `data.val_fraction` of the samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rsneo.data.documents import Document, DocumentBuilder, image_documents
from rsneo.data.frames import DEFAULT_BAND_GROUPS, check_band_groups, fold_groups
from rsneo.data.packing import collate_rows
from rsneo.data.sample import Sample
from rsneo.data.shard_format import is_url
from rsneo.data.shards import ShardDataset, read_manifest
from rsneo.errors import InputError
from rsneo.model.inputs import DEFAULT_TOKEN_SIZE
from rsneo.model.positions import ImageTokens
from rsneo.train.batch import ChangeSource, SegmentationBatch, TrainBatch
from rsneo.train.corpus import QA_SOURCES, SOURCES, TrainingSample, compose
from rsneo.train.step import StepBatch  # what `on_before_batch_transfer` makes of a training batch


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
    def __init__(self, samples: Sequence[TrainingSample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> TrainingSample:
        return self.samples[index]


def collate(
    samples: Sequence[TrainingSample], tokens: ImageTokens, pad_id: int, policy: str = "frame"
) -> TrainBatch:
    """One document per row (`collate_rows`: right-padded, next-token labels on learned text);
    the samples' labelled chips become one segmentation batch of image documents; their change sources are
    passed on (the module simulates the pairs with the step's generator)."""
    inputs = collate_rows([[s.document] for s in samples], tokens, pad_id, policy)
    chips = [s.chip for s in samples if s.chip is not None]
    # one class vocabulary and chip size per segmentation batch; other chips sit out this batch's loss
    chips = [
        c for c in chips if c.class_names == chips[0].class_names and c.labels.shape == chips[0].labels.shape
    ]
    segmentation = None
    if chips:
        seg_inputs = image_documents([[c.groups] for c in chips], tokens)
        labels = torch.stack([c.labels for c in chips])  # (chips, height, width)
        segmentation = SegmentationBatch(seg_inputs, labels, chips[0].class_names)
    sources = [s.change for s in samples if s.change is not None]
    return TrainBatch(inputs, segmentation, sources or None)


def fold_document(doc: Document, tokens: ImageTokens) -> Document:
    """`doc` with each `<img>` frame's band groups folded into one (`rsneo.data.frames.fold_groups`): the
    frame's image tokens shrink to one per token square of pixels; text and what the LM learns are
    unchanged."""
    out = Document()
    index = position = 0
    while position < len(doc.ids):
        if doc.ids[position] != tokens.start:
            out.ids.append(doc.ids[position])
            out.learn.append(doc.learn[position])
            position += 1
            continue
        end = doc.ids.index(tokens.end, position)
        frame, count = [], end - position - 1
        while count > 0:  # the frame's groups, in token order
            frame.append(doc.groups[index])
            count -= doc.groups[index].num_tokens
            index += 1
        folded = fold_groups(frame)
        n = sum(g.num_tokens for g in folded)
        out.ids += [tokens.start] + [tokens.context] * n + [tokens.end]
        out.learn += [False] * (n + 2)
        out.groups += folded
        position = end + 1
    return out


def apply_band_groups(sample: TrainingSample, mode: str, tokens: ImageTokens) -> TrainingSample:
    """A sample under `data.band_groups`: `sensor` as built, `fold` with every frame's groups folded (the
    document, the labelled chip and the change source alike)."""
    if check_band_groups(mode) == "sensor":
        return sample
    chip = sample.chip and replace(sample.chip, groups=fold_groups(sample.chip.groups))
    change = sample.change and ChangeSource(
        [fold_groups(frame) for frame in sample.change.frames], sample.change.dates
    )
    return TrainingSample(fold_document(sample.document, tokens), chip, change)


def check_tile(tile: int, token_size: int) -> None:
    """Tiles hold whole image tokens of the model being trained (its config's `token_size`)."""
    if tile <= 0 or tile % token_size:
        raise InputError(
            f"data.tile: expected a multiple of {token_size} pixels (the model's token size), got {tile}"
        )


def build_samples(
    sources: Sequence[str],
    root: Path,
    tokenizer: Any,
    tokens: ImageTokens,
    tile: int,
    *,
    token_size: int,
    **options: Any,
) -> list[TrainingSample]:
    """All samples of the named sources (see `rsneo.train.corpus.SOURCES`), in tiles of whole tokens."""
    check_tile(tile, token_size)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise InputError(f"data.sources: expected names from {sorted(SOURCES)}, got {unknown}")
    samples: list[TrainingSample] = []
    for name in sources:
        extra = {k: v for k, v in options.items() if k == "split" and name == "sen1floods11"}
        extra.update({k: v for k, v in options.items() if k == "path" and name == "shards"})
        if name == "torchgeo_raster":
            extra.update(options.get("raster", {}))
        if options.get("qa") and name in QA_SOURCES:
            extra["qa"] = True
        samples += SOURCES[name](
            root, lambda: DocumentBuilder(tokenizer, tokens), tile, token_size=token_size, **extra
        )
    mode = options.get("band_groups", DEFAULT_BAND_GROUPS)
    samples = [apply_band_groups(s, mode, tokens) for s in samples]
    if not samples:
        raise InputError(f"data.sources {list(sources)} under {root}: expected samples, found none")
    return samples


class ShardDocuments:
    """Turns streamed shard samples into training samples inside a DataLoader worker (picklable)."""

    def __init__(
        self,
        tokenizer: Any,
        tokens: ImageTokens,
        band_groups: str = DEFAULT_BAND_GROUPS,
        token_size: int = DEFAULT_TOKEN_SIZE,
    ) -> None:
        self.tokenizer, self.tokens, self.band_groups = tokenizer, tokens, band_groups
        self.token_size = token_size  # the model's (`RSNeoConfig.token_size`)

    def __call__(self, sample: Sample) -> TrainingSample:
        composed = compose(sample, DocumentBuilder(self.tokenizer, self.tokens), self.token_size)
        return apply_band_groups(composed, self.band_groups, self.tokens)


def shard_location(path: str) -> str | Path:
    """A shard folder of the config: a URL prefix (`https://`, `s3://`) as it is, else a local path."""
    return path if is_url(path) else Path(path).expanduser()


def held_out(size: int, fraction: float, seed: int) -> list[int]:
    """Seeded indexes of `fraction` of `size` samples (at least one, never all) kept for validation."""
    count = min(size - 1, max(1, round(size * fraction)))
    if count < 1:
        raise InputError(f"validation: {size} sample(s) are too few to hold any out; set val_every_n_steps=0")
    return sorted(torch.randperm(size, generator=torch.Generator().manual_seed(seed + 7919))[:count].tolist())


class RSNeoDataModule(L.LightningDataModule):
    """Training batches from `data` config sources under `root`, as a resumable stream of `batches` batches
    (max_steps x accumulate_grad_batches); `val_batches` > 0 holds data out for `val_batches` batches per
    validation."""

    def __init__(
        self, data: dict[str, Any], root: Path, tokenizer: Any, tokens: ImageTokens, batches: int, seed: int,
        policy: str = "frame", num_workers: int = 0, val_batches: int = 0, *, token_size: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.data, self.root, self.tokenizer, self.tokens = data, root, tokenizer, tokens
        self.token_size = token_size  # the model's (`RSNeoConfig.token_size`): tiles hold whole tokens
        self.batches, self.seed, self.policy, self.num_workers = batches, seed, policy, num_workers
        self.val_batches = val_batches
        self.samples: list[TrainingSample] | None = None
        self.val_samples: list[TrainingSample] = []
        # train folder (or URL) and shards, validation's
        self.stream: tuple[str | Path, list[int], str | Path, list[int]] | None = None
        self.sampler: StepSampler | None = None
        self.dataset: Any = None
        self.start_batch = 0
        self.restored: dict[str, int] = {}

    @property
    def band_groups(self) -> str:
        return check_band_groups(str(self.data["band_groups"]))

    def documents(self) -> ShardDocuments:
        return ShardDocuments(self.tokenizer, self.tokens, self.band_groups, self.token_size)

    @property
    def streaming(self) -> bool:
        return list(self.data["sources"]) == ["shards"]

    def setup(self, stage: str | None = None) -> None:
        if self.streaming and self.stream is None:
            self.stream = self._stream_split()
        elif not self.streaming and self.samples is None:
            split = self.data["split"]
            samples = build_samples(
                self.data["sources"],
                self.root,
                self.tokenizer,
                self.tokens,
                int(self.data["tile"]),
                token_size=self.token_size,
                split=split,
                path=self.data["path"],
                qa=bool(self.data["qa"]),
                band_groups=self.band_groups,
                raster={
                    "folder": self.data["root"],
                    "sensor": self.data["sensor"],
                    "file_bands": self.data["file_bands"],
                    "count": int(self.data["samples_per_epoch"]),
                    "seed": self.seed,
                },
            )
            held: set[int] = set()
            if self.val_batches > 0:
                held = set(held_out(len(samples), float(self.data["val_fraction"]), self.seed))
            self.val_samples = [s for i, s in enumerate(samples) if i in held]
            self.samples = [s for i, s in enumerate(samples) if i not in held]

    def _stream_split(self) -> tuple[str | Path, list[int], str | Path, list[int]]:
        check_tile(int(self.data["tile"]), self.token_size)
        folder = shard_location(self.data["path"]) if self.data["path"] else self.root / "shards"
        count = len(read_manifest(folder)["shards"])
        if self.val_batches <= 0:
            return folder, list(range(count)), folder, []
        if self.data["val_path"]:
            val = shard_location(self.data["val_path"])
            return folder, list(range(count)), val, list(range(len(read_manifest(val)["shards"])))
        keep = int(self.data["val_shards"])
        if not 0 < keep < count:
            raise InputError(
                f"{folder}: {count} shard(s), cannot hold out data.val_shards={keep} for validation; "
                "set data.val_path to a held-out shard folder or val_every_n_steps=0"
            )
        return folder, list(range(count - keep)), folder, list(range(count - keep, count))

    def _loader(self, dataset: Any, sampler: Any = None, workers: int = 0) -> DataLoader:
        pad = self.tokenizer.pad_token_id or 0
        return DataLoader(
            dataset,
            batch_size=int(self.data["batch_size"]),
            sampler=sampler,
            collate_fn=partial(collate, tokens=self.tokens, pad_id=pad, policy=self.policy),
            num_workers=workers,
        )

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        size = int(self.data["batch_size"])
        if self.streaming:
            layout = {"world": world, "workers": self.num_workers}
            changed = {k: (self.restored[k], v) for k, v in layout.items() if self.restored.get(k, v) != v}
            if changed:
                raise InputError(
                    f"resume: the checkpoint's stream was split for {changed} (checkpoint, now); resume with "
                    "the same trainer.devices x num_nodes and trainer.num_workers"
                )
            folder, shards, _, _ = self.stream
            self.dataset = ShardDataset(
                folder, shuffle=bool(self.data["shuffle"]), seed=self.seed,
                buffer=int(self.data["shuffle_buffer"]), shards=shards, repeat=True,
                transform=self.documents(), rank=rank, world=world, batch_size=size,
            )  # fmt: skip
            self.dataset.start_batch = self.start_batch
            return self._loader(self.dataset, workers=self.num_workers)
        self.sampler = StepSampler(len(self.samples), size, self.batches, self.seed, rank, world)
        self.sampler.start_batch = self.start_batch
        return self._loader(SampleList(self.samples), self.sampler, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        """The same held-out batches at every validation: `val_batches` per rank, each rank its own."""
        rank, world = self._rank_world()
        size = int(self.data["batch_size"])
        if self.streaming:
            _, _, folder, shards = self.stream
            dataset = ShardDataset(
                folder, shards=shards, repeat=True, transform=self.documents(),
                rank=rank, world=world, batch_size=size,
            )  # fmt: skip
            return self._loader(dataset)
        sampler = StepSampler(len(self.val_samples), size, max(self.val_batches, 1), self.seed, rank, world)
        return self._loader(SampleList(self.val_samples), sampler)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches become the module's step plan here, on the host (`RSNeoTraining.plan`)."""
        trainer = self.trainer
        if (
            trainer is not None
            and trainer.training
            and hasattr(trainer.lightning_module, "plan_training_batch")
        ):
            return trainer.lightning_module.plan_training_batch(batch)
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return (
            batch.to(device)
            if isinstance(batch, TrainBatch | StepBatch)
            else super().transfer_batch_to_device(batch, device, dataloader_idx)
        )

    # the position in the stream travels in the checkpoint (plain ints): batches consumed per rank, and for a
    # streamed archive how it was split (the same position means other samples under another split)
    def state_dict(self) -> dict[str, int]:
        if self.trainer is None:
            return {"batches": 0}
        batches = int(self.trainer.global_step * self.trainer.accumulate_grad_batches)
        return {"batches": batches, "world": self.trainer.world_size, "workers": self.num_workers}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.start_batch = int(state["batches"])
        self.restored = {k: int(state[k]) for k in ("world", "workers") if k in state}
