"""The model folder a fine-tune writes: the starting folder with the fine-tuned head (and backbone, when it
trained), `domain.json` and `vocabulary.json` from the run's data, and `finetune.json`, the run's record.

Written under a temporary name beside the destination and renamed when complete (`atomic_folder`): an
interrupted export leaves no half-written model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from rsneo.atomic import atomic_folder, write_text
from rsneo.data.labelled import Sample
from rsneo.heads.domain import HeadDomain, TrainingDomain, pixel_size, save_domain
from rsneo.heads.system import HEADS_JSON, HEADS_WEIGHTS, System, save_heads
from rsneo.heads.vocabulary import TrainedClass, Vocabulary, save_vocabulary
from rsneo.train.finetune_backbone import backbone_trains, merge_lora

FINETUNE_JSON = "finetune.json"
HEAD_NAMES = {"change": "change", "segment": "segmentation"}


def trained_domain(samples: Sequence[Sample], size: float | None) -> HeadDomain:
    """The sensors and pixel sizes (metres; `size` for images without georeference) of the samples."""
    domain = HeadDomain(())
    for sample in samples:
        source = (sample.scene.attrs.get("sources") or [None])[0]
        measured = pixel_size(Path(source)) if source else None
        domain = domain.including(sample.scene.attrs["sensor"], measured if measured is not None else size)
    return domain


def data_names(ft: dict[str, Any], config: dict[str, Any]) -> str:
    if ft["task"] == "change":
        return str(config["data"]["root"])
    return "; ".join(f"{d['images']} with {d['masks']}" for d in ft["segment"])


def vocabulary(
    system: System, head: nn.Module, result, data: str, backbone_changed: bool
) -> Vocabulary | None:
    """Segmentation: the classes trained here with their validation scores, and the classes of a fine-tuned
    head this one continued (their earlier scores kept, said to be earlier ones). Change: the folder's own
    vocabulary, its scores dropped when the backbone under the segmentation head changed."""
    old = system.vocabulary
    template = head.config.prompt_template if result.task == "segment" else None
    if result.task == "change" or template is None:
        if old is None or not backbone_changed:
            return old
        stale = tuple(replace(c, held_out={}) for c in old.classes)
        dropped = " Held-out scores dropped: the backbone was fine-tuned for change after they were measured."
        return replace(old, classes=stale, note=old.note + dropped)
    measured = f"validation of rsneo finetune on {data} ({result.validation})"
    classes = [TrainedClass(name, (template.format(name),), {**scores, "data": measured})
               for name, scores in result.class_scores.items()]  # fmt: skip
    if result.continued and old is not None:
        earlier = {c.name for c in classes}
        later = f"measured before the later fine-tune on {data}"
        classes += [
            replace(c, held_out={**c.held_out, "note": later}) for c in old.classes if c.name not in earlier
        ]
    names = ", ".join(c.name for c in classes)
    return Vocabulary(
        tuple(classes),
        old.match_threshold if old else 0.95,
        f"Segmentation head fine-tuned (rsneo finetune) on {names}; finetune.json has the run.",
        old.taught_pieces_only if old else False,
    )


def write_model_folder(
    system: System,
    head: nn.Module,
    ft: dict[str, Any],
    samples: Sequence[Sample],
    result,
    config: dict[str, Any],
) -> Path:
    """Write `result.out`: the starting folder's files, then the fine-tuned parts over them."""
    name = HEAD_NAMES[result.task]
    changed = backbone_trains(system.model) or any("lora" in n for n, _ in system.model.named_modules())
    data = data_names(ft, config)
    with atomic_folder(result.out) as tmp:
        if system.folder is not None:
            for path in Path(system.folder).iterdir():
                if path.is_file() and path.name not in (HEADS_JSON, HEADS_WEIGHTS, FINETUNE_JSON):
                    shutil.copy2(path, tmp / path.name)
        if changed or system.folder is None:
            merge_lora(system.model)
            system.model.cpu().save_pretrained(tmp)  # from a GPU run too
        if system.folder is None:
            system.tokenizer.save_pretrained(str(tmp))
        heads = {"segmentation": system.segmentation, "change": system.change} | {name: head.cpu()}
        save_heads(tmp, heads["segmentation"], heads["change"])
        old = system.domain or TrainingDomain({}, "")
        domain = trained_domain(samples, ft["pixel_size"])
        note = f"{old.note} The {name} head: fine-tuned by rsneo finetune on {data}.".strip()
        save_domain(tmp, TrainingDomain(old.heads | {name: domain}, note))
        words = vocabulary(system, head, result, data, changed)
        if words is not None:
            save_vocabulary(tmp, words)
        record = {
            "task": result.task, "data": data, "samples": [s.name for s in samples],
            "trained": result.trained, "started_from": str(system.folder) if system.folder else None,
            "validation": result.validation, "scores": result.scores, "class_scores": result.class_scores,
            "epochs": result.epochs, "best_epoch": result.best_epoch, "abstention": result.abstention,
            "cpu_seconds": round(result.cpu_seconds, 1), "head": head.to_json(), "finetune": ft,
        }  # fmt: skip
        write_text(tmp / FINETUNE_JSON, json.dumps(record, indent=1, default=str) + "\n")
    return result.out
