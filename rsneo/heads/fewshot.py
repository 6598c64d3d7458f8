"""Classes learnt from a user's polygons (`rsneo learn`), and how the product commands find them.

A learnt class is a name with its own class vector (hidden size, where prompt encodings live), stored in
`learnt_classes.safetensors` of the model folder (tensor `vectors` (K, hidden); the names in its metadata).
`class_vectors(system, names)` is what `segment` and `change` call instead of encoding prompts: a learnt
name (compared case-insensitively, spaces trimmed) gets its learnt vector, any other name its prompt
encoding, so "segment --classes <the learnt names>" gives exactly the classes `learn` trained and scored.
`learn.json` beside it records what was learnt, from which files, and the hold-out scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from rsneo.errors import InputError
from rsneo.heads.prompt_cache import prompt_vectors
from rsneo.heads.vocabulary import classes_read

LEARNT_WEIGHTS = "learnt_classes.safetensors"
LEARN_RECORD = "learn.json"


def _key(name: str) -> str:
    return " ".join(name.split()).lower()


@dataclass
class LearntClasses:
    names: list[str]
    vectors: Tensor  # (K, hidden) float32

    def lookup(self, name: str) -> Tensor | None:
        keys = [_key(n) for n in self.names]
        return self.vectors[keys.index(_key(name))] if _key(name) in keys else None


def save_learnt(folder: Path, learnt: LearntClasses) -> None:
    from safetensors.torch import save_file

    metadata = {"names": json.dumps(learnt.names)}
    vectors = learnt.vectors.detach().float().cpu().contiguous()
    save_file({"vectors": vectors}, str(Path(folder) / LEARNT_WEIGHTS), metadata=metadata)


def load_learnt(folder: Path | None) -> LearntClasses | None:
    """The learnt classes of a model folder, or None when it has none (safetensors only, never pickle)."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / LEARNT_WEIGHTS if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            names = json.loads((f.metadata() or {})["names"])
            vectors = f.get_tensor("vectors")
    except (OSError, ValueError, KeyError, json.JSONDecodeError, SafetensorError) as exc:
        raise InputError(f"{path}: cannot read the learnt classes ({exc})") from None
    if vectors.ndim != 2 or vectors.shape[0] != len(names):
        raise InputError(f"{path}: expected one vector per name, got {tuple(vectors.shape)} for {names}")
    return LearntClasses(list(names), vectors)


def class_vectors(system, names: list[str]) -> Tensor:
    """(K, hidden) class vectors of `names` for `system` (a `System`): learnt ones first, else prompts.

    A name the folder's vocabulary reads as a learnt class ("city" as a learnt "built-up", through the other
    names `rsneo learn` records) gets that class's vector: its map is the class it is reported as."""
    learnt = load_learnt(system.folder)
    found = [learnt.lookup(n) if learnt is not None else None for n in names]
    if learnt is not None and any(v is None for v in found):
        read = classes_read(system, names)
        found = [learnt.lookup(r) if v is None and r else v for v, r in zip(found, read, strict=True)]
    prompted = [n for n, v in zip(names, found, strict=True) if v is None]
    encoded = iter(prompt_vectors(system, prompted, system.segmentation.config) if prompted else [])
    param = next(system.model.parameters())
    out = [v.to(param.device, param.dtype) if v is not None else next(encoded) for v in found]
    return torch.stack(out)
