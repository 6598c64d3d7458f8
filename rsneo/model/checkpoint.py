"""rsneo checkpoint folders: `config.json`, safetensors shards and `model.safetensors.index.json`.

Loading builds the model on the meta device and assigns each shard's tensors as it is read, so a checkpoint
never
needs twice its size in memory. Missing, unexpected or misshapen tensors raise one `InputError` naming the
tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from rsneo import atomic
from rsneo.errors import InputError
from rsneo.model.config import RSNeoConfig
from rsneo.model.device import torch_device

INDEX = "model.safetensors.index.json"
CONFIG = "config.json"


def _shard_name(i: int, n: int) -> str:
    return "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def write_shards(folder: str | Path, config: RSNeoConfig, shards: Iterable[dict[str, Tensor]]) -> None:
    """Write each dict as one shard (temporary names, renamed when all are written), an index, the config."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, list[str]]] = []
    for i, tensors in enumerate(shards):
        if not tensors:
            continue
        tmp = folder / f".tmp-{os.getpid()}-{i}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
        temps.append((tmp, list(tensors)))
    n = len(temps)
    weight_map: dict[str, str] = {}
    for stale in [*folder.glob("model*.safetensors"), folder / INDEX]:
        stale.unlink(missing_ok=True)
    for i, (tmp, keys) in enumerate(temps):
        name = _shard_name(i, n)
        atomic.replace(tmp, folder / name)
        weight_map |= dict.fromkeys(keys, name)
    if n > 1:
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        atomic.write_text(folder / INDEX, json.dumps(index, indent=1))
    with atomic.atomic_path(folder / CONFIG) as tmp:
        config.save(tmp)


def _chunks(state: dict[str, Tensor], max_bytes: int) -> Iterator[dict[str, Tensor]]:
    chunk: dict[str, Tensor] = {}
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if chunk and size + nbytes > max_bytes:
            yield chunk
            chunk, size = {}, 0
        chunk[key] = tensor
        size += nbytes
    if chunk:
        yield chunk


def saved_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """The state dict that goes to disk: a tied LM head is not stored twice."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    return state


def save_pretrained(model: torch.nn.Module, folder: str | Path, max_shard_bytes: int = 2 * 1024**3) -> None:
    write_shards(folder, model.config, _chunks(saved_state(model), max_shard_bytes))


def _shard_files(folder: Path) -> list[Path]:
    """The weight shards of a folder, as its index lists them; every one a file inside the folder (an index
    may come from anyone: a shard named `../x` or `/x` is refused, not read)."""
    index = folder / INDEX
    if index.is_file():
        files = [_shard_inside(folder, n, index) for n in sorted(set(_weight_map(index).values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(f"{folder}: the index lists shard {missing[0]}, which is not in the folder")
        return files
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    raise InputError(f"{folder}: expected model.safetensors or {INDEX}, found neither")


def _weight_map(index: Path) -> dict[str, str]:
    """The index's tensor -> shard file map, or an InputError naming the index and what is wrong with it."""
    try:
        data = json.loads(index.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{index}: not a JSON file ({exc}); expected a safetensors index") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InputError(f"{index}: expected a JSON object with a 'weight_map' of tensor -> shard file name")
    return weight_map


def _shard_inside(folder: Path, name: str, index: Path) -> Path:
    path = folder / name
    if Path(name).is_absolute() or len(Path(name).parts) != 1 or path.resolve().parent != folder.resolve():
        raise InputError(
            f"{index}: shard {name!r} is outside the model folder; expected plain file names inside {folder}"
        )
    return path


def load_pretrained(
    build: Callable[[RSNeoConfig], torch.nn.Module],
    folder: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.nn.Module:
    """`build(config)` on the meta device, then assign the tensors of each shard, read straight to `device`.

    The model class is passed in (`RSNeoForCausalLM.from_pretrained` passes itself), so this module does not
    import the model it loads.
    """
    device = torch_device(device)
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: expected an rsneo model folder, found no such folder")
    config = RSNeoConfig.load(folder / CONFIG)
    with torch.device("meta"):
        model = build(config)
    expected = saved_state(model)
    shapes = {k: tuple(v.shape) for k, v in expected.items()}
    seen: set[str] = set()
    for shard in _shard_files(folder):
        try:
            part = _read_shard(shard, shapes, device, dtype)
        except (SafetensorError, OSError) as exc:  # a truncated or damaged copy of the weights
            raise InputError(
                f"{shard}: cannot read its tensors; the file may be truncated or corrupt ({exc})"
            ) from None
        model.load_state_dict(part, strict=False, assign=True)
        seen |= set(part)
    missing = [k for k in shapes if k not in seen]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{folder}: tensor {missing[0]!r} is missing from the checkpoint{more}")
    if config.tie_word_embeddings:
        model.lm_head.weight = model.backbone.embed_tokens.weight
    return model.eval()


def _read_shard(
    shard: Path, shapes: dict[str, tuple[int, ...]], device: torch.device | str, dtype: torch.dtype | None
) -> dict[str, Tensor]:
    """The tensors of one safetensors shard, each checked against the shape the config expects."""
    part: dict[str, Tensor] = {}
    with safe_open(str(shard), framework="pt", device=str(device)) as f:
        for key in f.keys():  # noqa: SIM118
            if key not in shapes:
                raise InputError(f"{shard}: unexpected tensor {key!r} (not part of this rsneo config)")
            found = tuple(f.get_slice(key).get_shape())
            if found != shapes[key]:
                raise InputError(
                    f"{shard}: tensor {key!r} has shape {list(found)}, expected {list(shapes[key])}"
                )
            t = f.get_tensor(key)
            part[key] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return part


def read_rows(folder: Path, wanted: dict[str, tuple[int, int]]) -> Iterator[tuple[str, Tensor]]:
    """Rows [start, stop) of each named tensor of an rsneo folder, read shard file by shard file with
    safetensors slices: only those rows leave the disk (a sharded training rank reads its own part only).

    Every name must be in the folder, with at least `stop` rows, or one `InputError` names it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: expected an rsneo model folder, found no such folder")
    left = dict(wanted)
    for shard in _shard_files(folder):
        try:
            with safe_open(str(shard), framework="pt") as f:
                for key in [k for k in f.keys() if k in left]:  # noqa: SIM118
                    start, stop = left.pop(key)
                    tensor = f.get_slice(key)
                    rows = tensor.get_shape()[0] if tensor.get_shape() else 1
                    if stop > rows:
                        raise InputError(f"{shard}: tensor {key!r} has {rows} rows, expected at least {stop}")
                    yield key, tensor[start:stop] if tensor.get_shape() else f.get_tensor(key)
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{shard}: cannot read its tensors; the file may be truncated ({exc})") from None
    if left:
        more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
        raise InputError(f"{folder}: tensor {next(iter(left))!r} is missing from the checkpoint{more}")
