"""Checkpoint conversion as explicit key maps: Hugging Face Qwen3 -> rsneo, NEO release -> rsneo.

Both converters stream shard by shard (one source shard in memory at a time), so a 9B checkpoint converts in
about one shard's worth of RAM. New tensors are initialised as NEO initialises them from a plain Qwen3:
- `q_proj_hw` from `q_proj`: per head, head_dim in quarters [a, b, c, d] -> [a, c, a, c]; `k_proj_hw` zero;
- every layer's spectral frequencies (the S axis's phase on the rotary pairs) at zero, so the S axis adds
  exactly nothing at first and opens smoothly with training;
- all new QK-norms at one; pre-buffer layers and the patch embedding freshly initialised (normal, std 0.02).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from rsneo.atomic import atomic_folder
from rsneo.errors import InputError
from rsneo.model.backbone import NativeLayer
from rsneo.model.causal_lm import RSNeoForCausalLM, init_module
from rsneo.model.checkpoint import saved_state, write_shards
from rsneo.model.config import PRESETS, RSNeoConfig, rope_linear_factor
from rsneo.model.patch_embed import SpectralPatchEmbedding
from rsneo.model.rope import phase_pairs
from rsneo.model.tokenizer import image_token_ids, load_tokenizer

LAYER = re.compile(r"^(?:model|language_model\.model)\.layers\.(\d+)\.(.+)$")


def rotary_halves(weight: Tensor, heads: int, head_dim: int, width: int) -> Tensor:
    """Per head, the first width/2 channels of each rotary half: (heads*head_dim, in) -> (heads*width, in)."""
    w = weight.view(heads, head_dim, -1)
    half, take = head_dim // 2, width // 2
    return torch.cat((w[:, :take], w[:, half : half + take]), dim=1).reshape(heads * width, -1)


def native_from_q(prefix: str, q_proj: Tensor, cfg: RSNeoConfig, with_hw: bool = True) -> dict[str, Tensor]:
    """H/W query tensors derived from a layer's q_proj, plus their norms at one; the layer's spectral
    frequencies at zero."""
    out: dict[str, Tensor] = {}
    hd = cfg.head_dim
    if with_hw:
        quarter = rotary_halves(q_proj, cfg.num_heads, hd, hd // 2).view(cfg.num_heads, hd // 2, -1)
        out[f"{prefix}q_proj_hw.weight"] = torch.cat((quarter, quarter), dim=1).reshape(
            cfg.num_heads * hd, -1
        )
        for n in ("q_norm_h", "q_norm_w"):
            out[f"{prefix}{n}.weight"] = torch.ones(hd // 2, dtype=q_proj.dtype)
    pairs = phase_pairs(hd, cfg.spectral_pairs) if cfg.spectral_layout == "phase" else 0
    if pairs:
        out[f"{prefix}spectral_frequencies"] = torch.zeros(pairs, dtype=q_proj.dtype)
    return out


def native_from_k(prefix: str, k_proj: Tensor, cfg: RSNeoConfig, with_hw: bool = True) -> dict[str, Tensor]:
    """H/W key projections at zero with norms at one (NEO's start)."""
    out: dict[str, Tensor] = {}
    hd, kv, d = cfg.head_dim, cfg.num_kv_heads, k_proj.shape[1]
    if with_hw:
        out[f"{prefix}k_proj_hw.weight"] = torch.zeros(kv * hd, d, dtype=k_proj.dtype)
        for n in ("k_norm_h", "k_norm_w"):
            out[f"{prefix}{n}.weight"] = torch.ones(hd // 2, dtype=k_proj.dtype)
    return out


def map_llm_tensor(
    key: str, tensor: Tensor, cfg: RSNeoConfig, layer_shift: int, has_hw: bool
) -> dict[str, Tensor]:
    """One Qwen3 / NEO language-model tensor -> rsneo tensors (the derived native ones included)."""
    m = LAYER.match(key)
    if m:
        index, rest = int(m.group(1)) + layer_shift, m.group(2)
        prefix = f"backbone.layers.{index}.self_attn."
        out = {f"backbone.layers.{index}.{rest}": tensor}
        if rest == "self_attn.q_proj.weight":
            out |= native_from_q(prefix, tensor, cfg, with_hw=not has_hw)
        elif rest == "self_attn.k_proj.weight":
            out |= native_from_k(prefix, tensor, cfg, with_hw=not has_hw)
        return out
    name = key.removeprefix("language_model.")
    table = {
        "model.embed_tokens.weight": "backbone.embed_tokens.weight",
        "model.norm.weight": "backbone.norm.weight",
    }
    if name in table:
        return {table[name]: tensor}
    if name == "lm_head.weight":
        return {} if cfg.tie_word_embeddings else {"lm_head.weight": tensor}
    raise InputError(f"checkpoint tensor {key!r}: no rsneo name for it (expected Qwen3/NEO key names)")


def neo_state_dict_to_rsneo(state: dict[str, Tensor], cfg: RSNeoConfig) -> dict[str, Tensor]:
    """A whole NEO state dict (golden key names) -> an rsneo state dict, S axis added (frequencies zero)."""
    out: dict[str, Tensor] = {}
    vision = {k: v for k, v in state.items() if k.startswith("vision_model.")}
    for key, tensor in state.items():
        if not key.startswith("vision_model."):
            out |= map_llm_tensor(key, tensor, cfg, 0, has_hw=True)
    out |= neo_vision_tensors(vision, cfg)
    return out


def neo_vision_tensors(vision: dict[str, Tensor], cfg: RSNeoConfig) -> dict[str, Tensor]:
    prefix = "vision_model.embeddings."
    try:
        weight, bias = vision[prefix + "patch_embedding.weight"], vision[prefix + "patch_embedding.bias"]
        dense_w, dense_b = vision[prefix + "dense_embedding.weight"], vision[prefix + "dense_embedding.bias"]
    except KeyError as exc:
        raise InputError(f"NEO checkpoint: missing tensor {exc.args[0]!r}") from None
    with torch.device("cpu"):
        pel = SpectralPatchEmbedding(
            replace(cfg, vision_hidden_size=weight.shape[0], patch_size=weight.shape[-1])
        )
    pel.load_neo(weight.float(), bias.float())
    out = {
        f"backbone.vision.{k}": v.to(weight.dtype)
        for k, v in pel.state_dict().items()
        if not k.startswith("dense")
    }
    out["backbone.vision.dense.weight"] = dense_w
    out["backbone.vision.dense.bias"] = dense_b
    return out


def fresh_tensors(cfg: RSNeoConfig, layers: range, vision: bool, dtype: torch.dtype) -> dict[str, Tensor]:
    """Freshly initialised pre-buffer layers (and patch embedding), as the model initialises them
    (`init_module`: Qwen3's normal(0, 0.02), norms at one, spectral frequencies at zero), rsneo-named."""
    out: dict[str, Tensor] = {}
    for index in layers:
        layer = NativeLayer(cfg)
        for name, module in layer.named_modules():
            init_module(cfg, f"backbone.layers.{index}.{name}".rstrip("."), module)
        out |= {f"backbone.layers.{index}.{k}": v.to(dtype) for k, v in layer.state_dict().items()}
    if vision:
        pel = SpectralPatchEmbedding(cfg)
        out |= {f"backbone.vision.{k}": v.to(dtype) for k, v in pel.state_dict().items()}
    return out


# ---- folders
# -------------------------------------------------------------------------------------------------
def source_shards(src: Path) -> list[Path]:
    index = src / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise InputError(f"{index}: not a safetensors index ({exc})") from None
        return [src / n for n in names]
    single = src / "model.safetensors"
    if single.is_file():
        return [single]
    shards = sorted(src.glob("*.safetensors"))
    if not shards:
        raise InputError(f"{src}: expected safetensors weights (model.safetensors or an index), found none")
    return shards


def shard_keys(shards: list[Path]) -> list[str]:
    """Every tensor name of the shards (headers only)."""
    keys: list[str] = []
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt") as f:
                keys += list(f.keys())
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{shard}: not a readable safetensors file ({exc})") from None
    return keys


def read_shard(path: Path) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) of one shard; a missing, truncated or corrupt file is one InputError naming it."""
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            for key in keys:
                yield key, f.get_tensor(key)
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None


@contextmanager
def staged_folder(dst: Path) -> Iterator[Path]:
    """A temporary sibling of `dst` to write into, renamed to `dst` only when everything is written.

    On any error the temporary folder (and any parent this created) is removed: nothing half-written stays.
    An existing non-empty `dst` is refused rather than replaced.
    """
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise InputError(f"{dst}: already exists and is not an empty folder; give a new output folder")
    created = [d for d in (dst.parent, *dst.parent.parents) if not d.exists()]
    try:
        with atomic_folder(dst) as tmp:
            yield tmp
    except BaseException:
        for d in created:  # innermost first
            with suppress(OSError):
                d.rmdir()
        raise


def copy_tokenizer(src: Path, dst: Path, add_missing: bool = True) -> tuple[int, int, int, int]:
    """Copy the source tokenizer (adding NEO's image tokens, in NEO's order, if `add_missing`).

    Returns the <img>, </img>, <IMG_CONTEXT> ids and the tokenizer's length.
    """
    tokenizer = load_tokenizer(src, add_missing=add_missing)
    tokenizer.save_pretrained(str(dst))
    for extra in ("generation_config.json",):
        if (src / extra).is_file():
            shutil.copy(src / extra, dst / extra)
    ids = image_token_ids(tokenizer)
    return ids.start, ids.end, ids.context, len(tokenizer)


def grow_rows(tensor: Tensor, rows: int) -> Tensor:
    """Pad an embedding/LM-head matrix to `rows` rows with the mean row (new special tokens start neutral)."""
    if tensor.shape[0] >= rows:
        return tensor
    extra = tensor.float().mean(0, keepdim=True).expand(rows - tensor.shape[0], -1).to(tensor.dtype)
    return torch.cat((tensor, extra), dim=0)


def expected_shapes(cfg: RSNeoConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor an rsneo folder of `cfg` stores (the model built on meta)."""
    with torch.device("meta"):
        model = RSNeoForCausalLM(cfg)
    return {k: tuple(v.shape) for k, v in saved_state(model).items()}


def write_converted(
    dst: Path,
    cfg: RSNeoConfig,
    shards: list[Path],
    map_tensor: Callable[[str, Tensor], dict[str, Tensor]],
    extra: dict[str, Tensor],
    progress: Callable[[str], None] | None = None,
    source_key: Callable[[str], str] = str,
) -> None:
    """Write mapped source shards and one shard of new tensors, with an index, to `dst`.

    Every tensor is checked against the shape rsneo expects as it streams by; a misshapen or unknown
    tensor, or one missing at the end, is an InputError naming the source tensor (the caller writes into
    a staged folder, so nothing is left behind).
    """
    shapes = expected_shapes(cfg)
    origin: dict[str, str] = {}

    def checked(source: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, t in tensors.items():
            if name in ("backbone.embed_tokens.weight", "lm_head.weight"):
                t = grow_rows(t, cfg.vocab_size)
            if name not in shapes:
                raise InputError(f"{source}: no place for it in this rsneo config ({name!r})")
            if tuple(t.shape) != shapes[name]:
                raise InputError(
                    f"{source}: gives {name!r} the shape {list(t.shape)}, expected {list(shapes[name])}"
                )
            origin[name] = source
            out[name] = t.contiguous()
        return out

    def mapped() -> Iterator[dict[str, Tensor]]:
        for shard in shards:
            if progress:
                progress(shard.name)
            out: dict[str, Tensor] = {}
            for key, tensor in read_shard(shard):
                source = f"{shard}: tensor {key!r} {list(tensor.shape)}"
                try:
                    out |= checked(source, map_tensor(key, tensor))
                except RuntimeError as exc:  # a misshapen q/k_proj cannot even be split per head
                    raise InputError(f"{source}: unexpected shape ({exc})") from None
            yield out
        yield checked("new tensors", extra)
        missing = [k for k in shapes if k not in origin]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputError(
                f"{shards[0].parent}: tensor {source_key(missing[0])!r} is missing{more} (rsneo's "
                f"{missing[0]!r}); is a shard incomplete?"
            )

    write_shards(dst, cfg, mapped())


def llm_source_key(name: str, layer_shift: int, prefix: str = "") -> str:
    """The Qwen3/NEO key an rsneo language-model tensor comes from (for error messages)."""
    m = re.match(r"^backbone\.layers\.(\d+)\.(.+)$", name)
    if m:
        return f"{prefix}model.layers.{int(m.group(1)) - layer_shift}.{m.group(2)}"
    return prefix + {"backbone.embed_tokens.weight": "model.embed_tokens.weight",
                     "backbone.norm.weight": "model.norm.weight"}.get(name, name)  # fmt: skip


def convert_qwen3(
    src: str | Path,
    dst: str | Path,
    prebuffer_layers: int | None = None,
    vision_hidden_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> RSNeoConfig:
    """A Hugging Face Qwen3 folder -> an rsneo folder; Qwen3 layer i becomes layer i + prebuffer_layers.

    NEO's image tokens are appended to the tokenizer in NEO's order (`<IMG_CONTEXT>`, `<img>`, `</img>`).
    """
    src, dst = Path(src), Path(dst)
    hf_path = src / "config.json"
    if not hf_path.is_file():
        raise InputError(f"{src}: expected a Hugging Face model folder with config.json, found none")
    hf = json.loads(hf_path.read_text())
    if hf.get("model_type") != "qwen3":
        raise InputError(f"{hf_path}: expected model_type 'qwen3', found {hf.get('model_type')!r}")
    if prebuffer_layers is None:
        match = [
            p for p in PRESETS.values()
            if (p.hidden_size, p.post_layers, bool(p.prebuffer_layers))
            == (hf["hidden_size"], hf["num_hidden_layers"], True)
        ]  # fmt: skip
        if not match:
            raise InputError(
                f"{src}: not a known NEO base size; give the pre-buffer depth (--prebuffer-layers)"
            )
        prebuffer_layers = match[0].prebuffer_layers
    head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    shards = source_shards(src)
    with staged_folder(dst) as out:
        start, end, context, n_tokens = copy_tokenizer(src, out)
        cfg = RSNeoConfig(
            name=f"qwen3-{hf['hidden_size']}x{hf['num_hidden_layers']}+{prebuffer_layers}",
            vocab_size=max(hf["vocab_size"], n_tokens),
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"] + prebuffer_layers,
            prebuffer_layers=prebuffer_layers,
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf["num_key_value_heads"],
            head_dim=head_dim,
            rope_theta=float(
                hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta", 1e6)
            ),
            rope_linear_factor=rope_linear_factor(hf, str(hf_path)),
            rms_norm_eps=hf["rms_norm_eps"],
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            vision_hidden_size=vision_hidden_size or min(1024, hf["hidden_size"]),
            img_start_token_id=start,
            img_end_token_id=end,
            img_context_token_id=context,
            eos_token_id=hf.get("eos_token_id") if isinstance(hf.get("eos_token_id"), int) else None,
        )
        dtype = _dtype_of(hf.get("torch_dtype") or hf.get("dtype"))
        extra = fresh_tensors(cfg, range(prebuffer_layers), vision=True, dtype=dtype)
        write_converted(
            out, cfg, shards, lambda k, t: map_llm_tensor(k, t, cfg, prebuffer_layers, has_hw=False),
            extra, progress, lambda name: llm_source_key(name, prebuffer_layers),
        )  # fmt: skip
    return cfg


def neo_prebuffer_depth(neo: dict, keys: list[str], src: Path, given: int | None) -> int:
    """The pre-buffer depth of a NEO folder: given, else `extra_num_layers`, else inferred.

    NEO's release config (the HF remote-code one) has no `extra_num_layers`. All layers look alike, so the
    tensors give the total depth only; the pre-buffer is the total minus the base LLM's depth of the NEO
    size with that width and total (NEO-2.2B: 40 - 28, NEO-9B: 42 - 36). Anything else must be given.
    """
    llm = neo["llm_config"]
    indexes = {int(m.group(1)) for m in map(LAYER.match, keys) if m}
    total = max(indexes) + 1 if indexes else 0
    if indexes != set(range(total)) or total != llm.get("num_hidden_layers", total):
        raise InputError(
            f"{src}: the tensors hold layers {sorted(indexes)[:3]}..{total - 1} but config.json says "
            f"num_hidden_layers={llm.get('num_hidden_layers')}; is a shard missing?"
        )
    if given is not None:
        return given
    if llm.get("extra_num_layers") is not None:
        return int(llm["extra_num_layers"])
    match = [p for p in PRESETS.values() if (p.hidden_size, p.num_layers) == (llm["hidden_size"], total)]
    if not match or not match[0].prebuffer_layers:
        raise InputError(
            f"{src / 'config.json'}: no extra_num_layers and {total} layers of width {llm['hidden_size']} "
            "match no NEO size; give the pre-buffer depth (--prebuffer-layers)"
        )
    return match[0].prebuffer_layers


def convert_neo(
    src: str | Path,
    dst: str | Path,
    prebuffer_layers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> RSNeoConfig:
    """A NEO folder (NEO key names, `llm_config`/`vision_config` config, tokenizer) -> an rsneo folder.

    The image token ids come from the folder's tokenizer (NEO's own ids, never added or guessed); a folder
    without tokenizer files, or whose tokenizer lacks the image tokens, is refused.
    """
    src, dst = Path(src), Path(dst)
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise InputError(f"{src}: expected a NEO folder with config.json, found none")
    neo = json.loads(cfg_path.read_text())
    if "llm_config" not in neo or "vision_config" not in neo:
        raise InputError(f"{cfg_path}: expected NEO's 'llm_config' and 'vision_config', found {sorted(neo)}")
    shards = source_shards(src)
    keys = shard_keys(shards)
    depth = neo_prebuffer_depth(neo, keys, src, prebuffer_layers)
    cfg = RSNeoConfig.from_neo_json(neo, prebuffer_layers=depth)
    with staged_folder(dst) as out:
        start, end, context, n_tokens = copy_tokenizer(src, out, add_missing=False)
        for name, found in (("img_start_token_id", start), ("img_context_token_id", context)):
            given = neo.get(name)
            if given is not None and given != found:
                raise InputError(f"{cfg_path}: {name} is {given} but the tokenizer gives {found}")
        cfg = replace(cfg, vocab_size=max(cfg.vocab_size, n_tokens), img_start_token_id=start,
                      img_end_token_id=end, img_context_token_id=context)  # fmt: skip
        vision: dict[str, Tensor] = {}
        for shard in shards:
            if any(k.startswith("vision_model.") for k in shard_keys([shard])):
                vision |= {k: t for k, t in read_shard(shard) if k.startswith("vision_model.")}

        def map_tensor(key: str, tensor: Tensor) -> dict[str, Tensor]:
            return {} if key.startswith("vision_model.") else map_llm_tensor(key, tensor, cfg, 0, has_hw=True)

        prefix = "language_model." if any(k.startswith("language_model.") for k in keys) else ""
        write_converted(
            out, cfg, shards, map_tensor, neo_vision_tensors(vision, cfg), progress,
            lambda name: llm_source_key(name, 0, prefix),
        )  # fmt: skip
    return cfg


def _dtype_of(name: str | None) -> torch.dtype:
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name or "", torch.float32)
