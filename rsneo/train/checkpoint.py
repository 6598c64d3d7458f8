"""Lightning checkpoints that load with `torch.load(weights_only=True)`.

A checkpoint holds only tensors and plain types: the module's state dict, optimizer and scheduler
states, the loop counters, and, under `rsneo`, the run's config as plain dicts
(`OmegaConf.to_container`), the model config dict and the tokenizer files as strings. No
`save_hyperparameters` (it would pickle an OmegaConf object), no callables in scheduler states (the
warm-up/cosine factor is a `partial` of a module function, so `LambdaLR` stores only numbers). So resuming
(`Trainer.fit(ckpt_path=..., weights_only=True)`) and `rsneo export` never unpickle arbitrary objects.

Under FSDP a checkpoint is a folder (`stepNNNNNN.ckpt/`): each rank's shards of the weights and optimizer
states in torch's distributed-checkpoint format, and the rest (`meta.pt`, read with `weights_only=True`).
`load_checkpoint` reads either; for a folder it assembles the whole weights in one process (`rsneo export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rsneo.errors import InputError

RSNEO_KEY = "rsneo"
SHARDED_META = "meta.pt"  # Lightning's name for a sharded checkpoint's non-tensor part


def is_checkpoint(path: str | Path) -> bool:
    """A Lightning checkpoint file, or a sharded (FSDP) checkpoint folder."""
    path = Path(path)
    return path.is_file() or (path / SHARDED_META).is_file()


def load_checkpoint(path: str | Path, weights: bool = True) -> dict[str, Any]:
    """Read a Lightning checkpoint safely (tensors and plain types only): a file, or a sharded folder whose
    weights are assembled whole (`weights=False`: its record only, no tensors read)."""
    path = Path(path)
    if not is_checkpoint(path):
        raise InputError(
            f"{path}: expected a Lightning checkpoint file (.ckpt), found none (nor a sharded checkpoint "
            f"folder with {SHARDED_META})"
        )
    try:
        checkpoint = torch.load(
            path / SHARDED_META if path.is_dir() else path, map_location="cpu", weights_only=True
        )
        if path.is_dir() and weights:
            checkpoint["state_dict"] = sharded_weights(path)
        elif path.is_dir():
            checkpoint["state_dict"] = {}
    except InputError:
        raise
    except Exception as exc:  # unpickling refused or not a torch file
        raise InputError(
            f"{path}: cannot be read as a safe checkpoint (tensors and plain types only): {exc}"
        ) from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"{path}: expected a Lightning checkpoint with a 'state_dict', found another file")
    if RSNEO_KEY not in checkpoint:
        raise InputError(f"{path}: expected an rsneo training checkpoint (key '{RSNEO_KEY}'), found none")
    return checkpoint


def sharded_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The whole `state_dict` of a sharded checkpoint folder, assembled in this process (no process group;
    torch's distributed-checkpoint reader, which reads tensors only)."""
    import warnings

    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message=".*load in a single process.*")
        return _load_state_dict_from_keys(keys={"state_dict"}, checkpoint_id=str(folder))["state_dict"]


def submodule_state(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix.` with the prefix removed (e.g. the backbone inside the LightningModule)."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in state_dict.items() if k.startswith(prefix + ".")}


def tokenizer_files(tokenizer: Any) -> dict[str, str]:
    """A tokenizer's `save_pretrained` files as {name: text}, to travel inside a checkpoint as plain
    strings."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return {p.name: p.read_text() for p in Path(folder).iterdir() if p.is_file()}


def write_tokenizer_files(files: dict[str, str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
