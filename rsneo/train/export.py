"""`rsneo export CKPT DIR`: a training checkpoint to a `from_pretrained` folder (backbone + heads +
tokenizer).

The folder is what `RSNeoForCausalLM.from_pretrained` and `rsneo.heads.system.load_system` read:
`config.json` and safetensors weights, the tokenizer files, and `heads.safetensors` + `heads.json` (the
segmentation and change heads when the run trained them), `vocabulary.json` and `domain.json` (the sensors
and pixel sizes of the rasters each head trained on, measured on the run's sources under its data_root; left
out when a source's imagery is not known from the config, or the data is not there to measure). It is written
under a temporary name beside DIR and renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

from rsneo.atomic import atomic_folder
from rsneo.errors import InputError
from rsneo.heads.change import ChangeHead, ChangeHeadConfig
from rsneo.heads.domain import HeadDomain, TrainingDomain, pixel_size, save_domain
from rsneo.heads.segmentation import SegmentationHead, SegmentationHeadConfig
from rsneo.heads.system import save_heads
from rsneo.heads.vocabulary import save_vocabulary, vocabulary_for_classes
from rsneo.model.causal_lm import RSNeoForCausalLM
from rsneo.model.config import RSNeoConfig
from rsneo.train.checkpoint import RSNEO_KEY, load_checkpoint, submodule_state, write_tokenizer_files
from rsneo.train.config import resolve_data_root
from rsneo.train.corpus import WATER_CLASSES, head_imagery


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
        exported = [name for name, head in (("segmentation", segmentation), ("change", change)) if head]
        domain = training_domain(meta, exported)
        if domain is not None:
            save_domain(tmp, domain)
    return folder


def trained_classes(meta: dict) -> list[str]:
    """The class words the run's segmentation objective saw (recorded in the checkpoint), else those of its
    labelled sources (checkpoints written before the record)."""
    recorded = list(meta.get("segmentation_classes") or ())
    if recorded:
        return recorded
    sources = ((meta.get("run_config") or {}).get("data") or {}).get("sources") or ()
    return list(WATER_CLASSES) if "sen1floods11" in sources else []


def training_domain(meta: dict, heads: list[str]) -> TrainingDomain | None:
    """The imagery each of `heads` trained on: the sensors of the run's sources and the pixel sizes of their
    rasters, measured under the run's data_root. None when a source's imagery is not known from the config
    (a user's shards or folder) or the data is not there to measure: no record rather than a guessed one."""
    run = meta.get("run_config") or {}
    sources = (run.get("data") or {}).get("sources") or ()
    if not run.get("data_root"):
        return None
    try:
        root = resolve_data_root(str(run.get("data_root") or ""))
        found = [head_imagery(name, root) for name in sources]
    except InputError:
        return None
    if any(f is None for f in found):
        return None
    domains: dict[str, HeadDomain] = {}
    for head, raster, sensor in (item for items in found for item in items):
        if head in heads:
            domains[head] = domains.get(head, HeadDomain(())).including(sensor, pixel_size(raster))
    if not domains:
        return None
    return TrainingDomain(domains, f"Measured by rsneo export on the run's sources ({', '.join(sources)}).")
