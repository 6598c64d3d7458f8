"""The `finetune` section of `rsneo train`'s schema: what `rsneo finetune` and `experiment=finetune_*` run.

The rest of a fine-tuning run comes from the usual groups: `data.root` (the change folder), `data.sensor` and
`data.file_bands` (when the metadata does not name the bands), `data.tile` (chip size) and `data.batch_size`;
`model.init_from` (the model folder to start from; null: the bundled model); `stage.lr` (the head's peak
learning rate), `stage.weight_decay`, `stage.warmup_steps`, `stage.min_lr_ratio`, `stage.grad_clip`;
`trainer.accelerator`, `trainer.precision` (bf16-mixed on a GPU), `trainer.threads`,
`trainer.log_every_n_steps`, `trainer.progress_bar`; `out_dir` (checkpoints and metrics.csv, resumed when
the run is started again) and `resume`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SegmentData:
    """One labelled dataset of a segmentation fine-tune: images and masks (files, or folders matched by name)
    and its class table."""

    images: str = ""
    masks: str = ""
    classes: str = ""  # "1=water,2=forest": mask value = class name
    ignore: int | None = None  # the mask value of unlabelled pixels


@dataclass
class FinetuneConfig:
    """A fine-tuning run (rsneo.train.finetune); `task` null: the run is not a fine-tune."""

    task: str | None = None  # change | segment
    out: str | None = None  # the model folder to write; null: OUT_DIR/model
    overwrite: bool = False  # replace a non-empty `out`
    # segment: one entry per dataset; several datasets may name their classes differently (label-as-text)
    segment: list[SegmentData] = field(default_factory=list)
    change_classes: str | None = None  # change: a class table for the labels; null: 0/1 or 0/255 masks
    pixel_size: float | None = None  # metres, for images without georeference (recorded in domain.json)
    train: str = "heads"  # heads | prebuffer | last-N | all | lora (rsneo.train.finetune_backbone)
    lora_rank: int = 8
    backbone_lr: float = 2.0e-4  # peak learning rate of the backbone parameters that train
    tokens: bool = True  # the head reads the backbone's tokens (false: its convolutional branch alone)
    widths: list[int] = field(default_factory=lambda: [24, 48, 64, 96])  # the head's pyramid channels
    steps_per_epoch: int = 20
    max_epochs: int = 40
    patience: int = 10  # epochs without a better validation F1 before stopping
    max_minutes: float | None = 13.0  # wall-clock limit of the training loop (null: none)
    cpu_seconds: float | None = None  # stop when the process has used this much CPU time (benchmarks)
    val: str = "auto"  # auto | list (list/val.txt) | samples (whole ones) | blocks (spatial blocks of each)
    val_share: float = 0.2
    val_block: int = 64  # pixels
    val_margin: int = 8  # pixels around a validation block that are not trained on
