"""The model folder `rsneo learn` writes: the retrained head and the learnt class vectors beside the starting
model's backbone, its vocabulary (the learnt classes with their hold-out scores, and the starting model's
classes the new head still decides as before), its training domain and learn.json; written to a hidden
folder, then renamed into place.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import torch

from rsneo.atomic import atomic_folder
from rsneo.errors import InputError
from rsneo.heads.class_words import land_cover_names, name_key, narrower_names
from rsneo.heads.domain import HeadDomain, TrainingDomain, pixel_size
from rsneo.heads.fewshot import LEARN_RECORD, LearntClasses, _key, class_vectors, load_learnt, save_learnt
from rsneo.heads.segmentation import SegmentationHead
from rsneo.heads.system import System, save_system
from rsneo.heads.vocabulary import DEFAULT_MATCH_THRESHOLD, TrainedClass, Vocabulary
from rsneo.train.learn_fit import pixel_logits


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty folder (unless `overwrite`) before any work starts."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out}: folder exists and is not empty (pass --overwrite to replace it)")


AGREEMENT = 0.9  # a base class stays in the vocabulary when the learnt head still decides it like the base


def base_classes_kept(system, head: SegmentationHead, windows, learnt_names) -> dict:
    """Which trained classes of the starting model remain usable with the retrained head.

    On every labelled pixel, the base head and the retrained one decide among the base model's vocabulary
    classes (prompt or learnt vectors, "none of these" included), as `segment --classes <them>` would. A class
    is kept when the two decisions agree (IoU of its two masks) at least `AGREEMENT`, or when neither head
    gives it any pixel while all decisions agree that often; a name the user taught again is replaced.
    Returns {"kept": {name: agreement or None}, "dropped": {name: agreement}, "pixel_agreement": float}.
    """
    vocabulary = getattr(system, "vocabulary", None)
    taught = {_key(n) for n in learnt_names}
    names = [n for n in (vocabulary.names if vocabulary is not None else ()) if _key(n) not in taught]
    if not names or not windows:
        return {"kept": {}, "dropped": {}, "pixel_agreement": None}
    with torch.no_grad():
        base_vectors = class_vectors(system, names).float().cpu()
        base_head = copy.deepcopy(system.segmentation).float().cpu().eval()
        decisions = []
        for model in (base_head, head.float().cpu()):
            out = []
            for w in windows:
                logits = pixel_logits(model, w, base_vectors)
                out.append(model.probabilities(logits[None, :, :, None])[0, :, :, 0].argmax(0))
            decisions.append(torch.cat(out))
    before, after = decisions
    pixel_agreement = float((before == after).float().mean())
    kept, dropped = {}, {}
    for c, name in enumerate(names):
        union = int(((before == c) | (after == c)).sum())
        agreement = int(((before == c) & (after == c)).sum()) / union if union else None
        ok = agreement >= AGREEMENT if agreement is not None else pixel_agreement >= AGREEMENT
        (kept if ok else dropped)[name] = None if agreement is None else round(agreement, 4)
    return {"kept": kept, "dropped": dropped, "pixel_agreement": round(pixel_agreement, 4)}


def with_base_learnt(system, learnt, kept: dict):
    """`learnt` plus the learnt vectors of kept base classes (a starting folder that was itself learnt), so
    that those names keep the vectors they were checked with."""
    base = load_learnt(system.folder) if system.folder is not None else None
    extra = [(n, base.lookup(n)) for n in kept] if base is not None else []
    extra = [(n, v) for n, v in extra if v is not None]
    if not extra:
        return learnt
    vectors = torch.cat([learnt.vectors, torch.stack([v.float().cpu() for _, v in extra])])
    return LearntClasses(learnt.names + [n for n, _ in extra], vectors)


def learnt_vocabulary(head: SegmentationHead, record: dict, base=None):
    """The folder's vocabulary.json: the learnt classes with their hold-out scores, then the starting model's
    trained classes (`base`, its Vocabulary) that `base_classes_kept` found still decided as before, with the
    base scores and that agreement; the others are left out (named in learn.json)."""
    holdout = record["holdout"]
    data = f"rsneo learn hold-out ({holdout['method']}) of {Path(record['labels']).name}; learn.json"
    classes = []
    for name in record["learnt_classes"]:
        score = holdout["scores"].get(name, {"iou": None})  # none with --folds 0
        held_out = (
            {} if score["iou"] is None else {"iou": round(score["iou"], 4), "f1": round(score["f1"], 4)}
        )
        prompt = head.config.prompt_template.format(name.strip())
        others = land_cover_names(name, record["learnt_classes"])  # "city" for a learnt "built-up"
        scored = held_out | ({"data": data} if held_out else {})
        classes.append(TrainedClass(name, (prompt,), scored, others, narrower_names(name), by_name_only=True))
    claimed = {name_key(w) for c in classes for w in (c.name, *c.synonyms)}
    kept = record.get("base_classes", {}).get("kept", {})
    for trained in base.classes if base is not None else ():
        if trained.name in kept:
            agreement = kept[trained.name]
            how = f"IoU {agreement:.3f}" if agreement is not None else "not decided on any labelled pixel"
            note = (
                f"starting model's class; after rsneo learn, decided as before on the labelled pixels ({how})"
            )
            # its other names, but those that now name a learnt class ("fields" of land, once cropland is)
            synonyms = tuple(w for w in trained.synonyms if name_key(w) not in claimed)
            classes.append(replace(trained, held_out=trained.held_out | {"learn": note}, synonyms=synonyms))
    note = f"Classes learnt by rsneo learn from {record['labels']} (field {record['class_field']!r})"
    if kept:
        note += f", and the starting model's {', '.join(kept)}"
    threshold = base.match_threshold if base is not None else DEFAULT_MATCH_THRESHOLD
    pieces_only = base.taught_pieces_only if base is not None else False
    return Vocabulary(tuple(classes), threshold, note + ".", pieces_only)


def learnt_domain(record: dict, base: TrainingDomain | None = None) -> TrainingDomain:
    """The folder's domain.json: the segmentation head was last trained on the learn rasters (their sensor
    and measured pixel sizes; unknown without georeference); the change head, untouched, keeps the starting
    model's record (none when it had none)."""
    segmentation = HeadDomain(())
    for raster in record["rasters"]:
        segmentation = segmentation.including(record["sensor"], pixel_size(Path(raster)))
    heads = {"segmentation": segmentation}
    if base is not None and "change" in base.heads:
        heads["change"] = base.heads["change"]
    return TrainingDomain(heads, f"Segmentation head retrained by rsneo learn on {len(record['rasters'])} "
                                 "raster(s) (learn.json); change head as the starting model's.")  # fmt: skip


def write_model_folder(system, head, learnt, record: dict, out: Path, overwrite: bool) -> Path:
    """Write the model folder to a hidden temporary folder beside `out`, then rename it into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_destination(out, overwrite)
    with atomic_folder(out) as tmp:
        head = head.to(system.device)
        vocabulary = learnt_vocabulary(head, record, getattr(system, "vocabulary", None))
        domain = learnt_domain(record, getattr(system, "domain", None))
        learnt_system = System(
            system.model, system.tokenizer, head, system.change, vocabulary=vocabulary, domain=domain
        )
        save_system(learnt_system, tmp)
        save_learnt(tmp, learnt)
        (tmp / LEARN_RECORD).write_text(json.dumps(record, indent=1))
    return out
