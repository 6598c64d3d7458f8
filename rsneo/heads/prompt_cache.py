"""Class-name prompt vectors computed once per model folder, not on every run.

Every `segment` and `change` compares the typed class names with every name the folder's vocabulary was
taught (`match_classes`), which means a backbone pass over each of them (and importing transformers for the
tokenizer). The vectors depend only on the backbone's weights, the tokenizer, the prompt template and the
dtype, so they are stored in `prompt_cache.safetensors` beside the weights, keyed by a hash of those; a run
encodes only the names the cache lacks and adds them. A cache whose key differs (new weights, another
tokenizer) is replaced; a damaged one is ignored with a warning and rewritten. safetensors only: nothing is
unpickled. The bundled model (part of the installed package) and folders this user cannot write keep theirs
in the user cache folder (`$XDG_CACHE_HOME/rsneo`, else `~/.cache/rsneo`) under a name made from the
folder's path. The cache only saves time: a cache that cannot be written leaves the results as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rsneo import atomic
from rsneo.errors import RSNeoWarning
from rsneo.heads.features import PromptConfig, encode_class_prompts
from rsneo.io.runstate import PROMPT_CACHE, content_digest

CACHE_FILE = PROMPT_CACHE  # left out of the folder's resume fingerprint
# what a prompt vector depends on, besides the prompt template and the dtype
KEY_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json")
PACKAGE = Path(__file__).resolve().parents[1]


class PromptCacheWarning(RSNeoWarning):
    """A prompt cache file that cannot be read: it is ignored and written again."""


def user_cache_dir() -> Path:
    """Where rsneo keeps caches of folders it may not write ($XDG_CACHE_HOME/rsneo, else ~/.cache/rsneo)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "rsneo"


def writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def cache_path(folder: Path) -> Path:
    """The cache file of a model folder: inside it, or in the user cache folder for the package's own model
    and folders this user cannot write."""
    folder = Path(folder).resolve()
    if folder.is_relative_to(PACKAGE) or not writable(folder):
        name = hashlib.sha256(str(folder).encode()).hexdigest()[:20]
        return user_cache_dir() / f"prompts-{name}.safetensors"
    return folder / CACHE_FILE


def weights_key(folder: Path, template: str, dtype: torch.dtype) -> str:
    """A hash of what a folder's prompt vectors depend on: weights, tokenizer, config, template, dtype. The
    files' digests are the resume fingerprints' (`rsneo.io.runstate.content_digest`: large shards sampled,
    each file read once per process while it is unchanged)."""
    folder = Path(folder)
    paths = [*sorted(folder.glob("model*.safetensors")), *(folder / name for name in KEY_FILES)]
    digest = hashlib.sha256(f"{template}\0{dtype}\0".encode())
    for path in paths:
        if path.is_file():
            digest.update(f"{path.name}\0{content_digest(path)}\0".encode())
    return digest.hexdigest()


def read_cache(path: Path, key: str) -> dict[str, Tensor]:
    """The vectors stored under `key` by name; empty when there is no cache or it was made for other
    weights; a file that cannot be read is warned about and treated as absent."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return {}
            names = json.loads(meta["names"])
            vectors = f.get_tensor("vectors")
        if vectors.ndim != 2 or vectors.shape[0] != len(names):
            raise ValueError(f"{tuple(vectors.shape)} vectors for {len(names)} names")
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, SafetensorError) as exc:
        warnings.warn(
            f"{path}: prompt cache unreadable ({exc}); ignored, the class names are encoded again",
            PromptCacheWarning,
            stacklevel=3,
        )
        return {}
    return dict(zip(names, vectors, strict=True))


def write_cache(path: Path, key: str, vectors: dict[str, Tensor]) -> None:
    """Store `vectors` (name -> (hidden,)) under `key`, atomically; skipped where it cannot be written."""
    from safetensors.torch import save

    names = list(vectors)
    data = save(
        {"vectors": torch.stack([vectors[n].float().cpu() for n in names]).contiguous()},
        metadata={"key": key, "names": json.dumps(names)},
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)
    except OSError:  # a read-only or full disk, a concurrent writer: the next run encodes again
        pass


def prompt_vectors(system: Any, names: list[str], config: PromptConfig) -> Tensor:
    """(K, hidden) prompt vectors of `names` for a `System`, as `encode_class_prompts` computes them, read
    from the folder's cache where it has them (and the new ones added to it)."""
    param = next(system.model.parameters())
    folder = getattr(system, "folder", None)
    if folder is None:  # a system built in memory: nothing to key a cache by
        return encode_class_prompts(system.model, system.tokenizer, names, config)
    path = cache_path(folder)
    key = weights_key(folder, config.prompt_template, param.dtype)
    stored = read_cache(path, key)
    missing = list(dict.fromkeys(n for n in names if n not in stored))
    if missing:
        encoded = encode_class_prompts(system.model, system.tokenizer, missing, config)
        stored.update(zip(missing, encoded.detach().float().cpu(), strict=True))
        write_cache(path, key, stored)
    return torch.stack([stored[n] for n in names]).to(param.device, param.dtype)
