"""The typed schema of `rsneo train`'s config: one dataclass per group, registered in Hydra's ConfigStore.

`train.yaml` lists `train_schema` first in its defaults, so every group option, experiment and command-line
override is merged into these dataclasses: a misspelt key or a value of the wrong type fails at start with
OmegaConf's message naming the key, instead of being ignored or failing late. The defaults here are the only
ones: code reads the composed values, never `get(key, default)`. `MISSING` fields have no sensible default and
must come from a group option (e.g. `model: tiny`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, make_dataclass
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from rsneo.data.frames import BAND_GROUPS, DEFAULT_BAND_GROUPS
from rsneo.heads.change import ChangeHeadConfig
from rsneo.heads.segmentation import SegmentationHeadConfig
from rsneo.model.flex import FlexBuckets
from rsneo.model.masks import BACKENDS
from rsneo.train.finetune_config import FinetuneConfig
from rsneo.train.freezing import ROLES
from rsneo.train.learn_config import LearnConfig

# The choices where the model and data code define them; OmegaConf checks values against the members' names.
AttnBackend = StrEnum("AttnBackend", {name: name for name in BACKENDS})
BandGroups = StrEnum("BandGroups", {name: name for name in BAND_GROUPS})
Role = StrEnum("Role", {name: name for name in ("all", *ROLES)})  # parameter roles a stage trains


def head_options(config: type, name: str) -> type:
    """The schema of a head's settings: every field of its config (`SegmentationHeadConfig`, ...) but the
    hidden size, which is the model's, typed as there and optional; None keeps the head's own default, so
    the defaults have one home, the head's config."""
    hints = typing.get_type_hints(config)
    options = [(f.name, hints[f.name] | None, None) for f in fields(config) if f.name != "hidden_size"]
    return make_dataclass(name, options)


SegmentationHeadOptions = head_options(SegmentationHeadConfig, "SegmentationHeadOptions")
ChangeHeadOptions = head_options(ChangeHeadConfig, "ChangeHeadOptions")


class DataSplit(StrEnum):
    """Sen1Floods11's halves: `train` the left half of each chip, `val` the right, `all` both."""

    all = "all"
    train = "train"
    val = "val"


@dataclass
class ModelConfig:
    """The backbone: a preset (rsneo.model.config.PRESETS) with field overrides, or a folder to start from."""

    preset: str = MISSING
    # RSNeoConfig fields to change from the preset's, e.g. {num_layers: 4}
    overrides: dict[str, Any] = field(default_factory=dict)
    # a from_pretrained folder (or converted NEO / Qwen3 checkpoint folder); null = random init
    init_from: str | None = None
    # attention kernels (rsneo.model.masks.BACKENDS): auto = flash-attn or Flex on CUDA, SDPA on CPU
    attn_backend: AttnBackend = AttnBackend.auto  # type: ignore[attr-defined]
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile each decoder layer (CUDA only)
    # the longest packed row (tokens) a step may hold; a wider one stops the run with a message
    max_tokens: int = 32768
    # compiled Flex pads each batch up to these buckets (tokens per row: multiples of 128; rows), so it meets
    # a bounded set of shapes (rsneo.model.flex); the longest must hold max_tokens
    flex_lengths: list[int] = field(default_factory=lambda: list(FlexBuckets().lengths))
    flex_rows: list[int] = field(default_factory=lambda: list(FlexBuckets().rows))


@dataclass
class DataConfig:
    """Which samples a run trains on and how they are batched (rsneo.train.datamodule)."""

    sources: list[str] = MISSING
    tile: int = MISSING  # pixels, a multiple of 32
    batch_size: int = MISSING
    split: DataSplit = DataSplit.all
    qa: bool = False  # question/answer documents where a source has them
    path: str | None = None  # shards: the folder (null: data_root/shards)
    shuffle: bool = True
    shuffle_buffer: int = 64
    val_fraction: float = 0.1  # in-memory sources: share held out when validating
    val_path: str | None = None  # shards: a held-out shard folder ...
    val_shards: int = 1  # ... or else the last `val_shards` shards
    # torchgeo_raster: a folder of GeoTIFFs of one sensor, its band order in the files (null: the sensor's),
    # and the windows drawn by RandomGeoSampler (seeded by the run's seed) that make one pass over the data
    root: str | None = None
    sensor: str | None = None
    file_bands: list[str] | None = None
    samples_per_epoch: int = 64
    # fold: all bands of a frame in one group; sensor: the sensor's band groups (recorded in the model config)
    band_groups: BandGroups = BandGroups[DEFAULT_BAND_GROUPS]  # type: ignore[misc]


@dataclass
class StageConfig:
    """What trains and how fast (rsneo.train.freezing, rsneo.train.schedule)."""

    # `[all]`, or roles of model.parameter_groups() (vision, prebuffer, native_positions, post_llm, language)
    trainable: list[Role] = MISSING  # type: ignore[valid-type]
    lr: float = MISSING
    weight_decay: float = MISSING
    betas: list[float] = MISSING
    warmup_steps: int = MISSING
    min_lr_ratio: float = MISSING
    grad_clip: float | None = None  # gradient norm clip; null or 0 = none


@dataclass
class ObjectiveConfig:
    """One loss; a weight of 0 switches it off."""

    weight: float = 0.0


@dataclass
class MaskedBandsConfig(ObjectiveConfig):
    # share of tokens hidden in frames with a single band group (frames with several groups hide whole groups)
    mask_ratio: float = 0.5


@dataclass
class SegmentationObjective(ObjectiveConfig):
    head: SegmentationHeadOptions = field(default_factory=SegmentationHeadOptions)  # type: ignore[valid-type]


@dataclass
class ChangeObjective(ObjectiveConfig):
    pairs_per_source: int = 1  # simulated change pairs per source and step
    head: ChangeHeadOptions = field(default_factory=ChangeHeadOptions)  # type: ignore[valid-type]


@dataclass
class ObjectivesConfig:
    masked_bands: MaskedBandsConfig = field(default_factory=MaskedBandsConfig)
    lm: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    segmentation: SegmentationObjective = field(default_factory=SegmentationObjective)
    change: ChangeObjective = field(default_factory=ChangeObjective)


@dataclass
class FSDPConfig:
    sharding_strategy: str = "FULL_SHARD"
    state_dict_type: str = "sharded"
    cpu_offload: bool = False


@dataclass
class TrainerConfig:
    """Lightning Trainer options and rsneo's step-based schedule of checkpoints, logs and validation."""

    accelerator: str = MISSING
    devices: int | str = MISSING  # a count, -1 (all) or Lightning's strings
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp
    precision: str = MISSING
    max_steps: int = MISSING
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = MISSING
    checkpoint_every_n_steps: int = MISSING
    progress_bar: bool = True
    tensorboard: bool = True
    num_workers: int = 0
    # intra-op threads per CPU process (null: RSNEO_THREADS, else the free usable cores divided by `devices`)
    threads: int | None = None
    # stop early at this step (the schedule and data stream still span max_steps)
    stop_at_step: int | None = None
    val_every_n_steps: int = 0  # 0 = never
    val_batches: int = 2
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)


@dataclass
class TrainConfig:
    """The whole run (train.yaml)."""

    name: str = "train"
    seed: int = 0
    data_root: str = MISSING
    out_dir: str = MISSING
    resume: str | None = None  # a Lightning checkpoint to resume from
    # a tokenizer folder, `bundled`, or null (train a small byte-level BPE on the run's texts)
    tokenizer: str | None = None
    loss_curve: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # `rsneo finetune`; task null: not one


def register() -> None:
    """Store the schemas as `train_schema` and `learn_schema`, the first entries of train.yaml's and
    learn.yaml's defaults."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    ConfigStore.instance().store(name="learn_schema", node=LearnConfig)
