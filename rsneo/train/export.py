"""`rsneo export CKPT DIR`: a training checkpoint to a `from_pretrained` folder (backbone + heads +
tokenizer).

The folder is what `RSNeoForCausalLM.from_pretrained` and `rsneo.heads.system.load_system` read:
`config.json` and safetensors weights, the tokenizer files, and `heads.safetensors` + `heads.json` (the
segmentation and change heads when the run trained them). It is written under a temporary name beside DIR
and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

from rsneo.atomic import atomic_folder
from rsneo.errors import InputError
from rsneo.heads.change import ChangeHead, ChangeHeadConfig
from rsneo.heads.segmentation import SegmentationHead, SegmentationHeadConfig
from rsneo.heads.system import save_heads
from rsneo.heads.vocabulary import save_vocabulary, vocabulary_for_classes
from rsneo.model.causal_lm import RSNeoForCausalLM
from rsneo.model.config import RSNeoConfig
from rsneo.train.checkpoint import RSNEO_KEY, load_checkpoint, submodule_state, write_tokenizer_files
from rsneo.train.corpus import WATER_CLASSES


def export_checkpoint(checkpoint_path: str | Path, folder: str | Path, overwrite: bool = False) -> Path:
    """Write the model of a Lightning checkpoint to `folder`; returns the folder."""
    checkpoint = load_checkpoint(checkpoint_path)
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise InputError(
            f"{folder}: expected an empty or new folder to export into, found files (use --overwrite)"
        )
    meta = checkpoint[RSNEO_KEY]
    state = checkpoint["state_dict"]
    model = RSNeoForCausalLM(RSNeoConfig.from_dict(meta["model_config"]))
    missing, unexpected = model.load_state_dict(submodule_state(state, "model"), strict=False)
    if missing or unexpected:
        raise InputError(
            f"{checkpoint_path}: its weights do not match its model config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    segmentation = None
    if meta.get("seg_head_config"):
        segmentation = SegmentationHead(SegmentationHeadConfig(**meta["seg_head_config"]))
        segmentation.load_state_dict(submodule_state(state, "seg_head"))
    change = None
    if meta.get("change_head_config"):
        change = ChangeHead(ChangeHeadConfig(**meta["change_head_config"]))
        change.load_state_dict(submodule_state(state, "change_head"))
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp)
        write_tokenizer_files(meta["tokenizer_files"], tmp)
        save_heads(tmp, segmentation, change)
        if segmentation is not None:
            classes = trained_classes(meta)
            if classes:
                save_vocabulary(tmp, vocabulary_for_classes(classes, segmentation.config.prompt_template))
    return folder


def trained_classes(meta: dict) -> list[str]:
    """The class words the run's segmentation objective saw (recorded in the checkpoint), else those of its
    labelled sources (checkpoints written before the record)."""
    recorded = list(meta.get("segmentation_classes") or ())
    if recorded:
        return recorded
    sources = ((meta.get("run_config") or {}).get("data") or {}).get("sources") or ()
    return list(WATER_CLASSES) if "sen1floods11" in sources else []
