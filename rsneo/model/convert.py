"""Checkpoint conversion as explicit key maps: Hugging Face Qwen3 -> rsneo, NEO release -> rsneo.

Both converters stream shard by shard (one source shard in memory at a time), so a 9B checkpoint converts in
about one shard's worth of RAM. New tensors are initialised as NEO initialises them from a plain Qwen3:
- `q_proj_hw` from `q_proj`: per head, head_dim in quarters [a, b, c, d] -> [a, c, a, c]; `k_proj_hw` zero;
- `q_proj_s` from `q_proj` the same way (the first spectral_head_dim/2 channels of each rotary half),
  `k_proj_s` from `k_proj` likewise, and the S key norm weight (the S gate) at zero, so the S axis adds
  exactly nothing at first and opens smoothly with training;
- all new QK-norms at one; pre-buffer layers and the patch embedding freshly initialised (normal, std 0.02).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from rsneo.errors import InputError
from rsneo.model.config import PRESETS, RSNeoConfig
from rsneo.model.patch_embed import SpectralPatchEmbedding

LAYER = re.compile(r"^(?:model|language_model\.model)\.layers\.(\d+)\.(.+)$")


def rotary_halves(weight: Tensor, heads: int, head_dim: int, width: int) -> Tensor:
    """Per head, the first width/2 channels of each rotary half: (heads*head_dim, in) -> (heads*width, in)."""
    w = weight.view(heads, head_dim, -1)
    half, take = head_dim // 2, width // 2
    return torch.cat((w[:, :take], w[:, half : half + take]), dim=1).reshape(heads * width, -1)


def native_from_q(prefix: str, q_proj: Tensor, cfg: RSNeoConfig, with_hw: bool = True) -> dict[str, Tensor]:
    """H/W (and S) query tensors derived from a layer's q_proj, plus their norms at one."""
    out: dict[str, Tensor] = {}
    hd, sd = cfg.head_dim, cfg.spectral_head_dim
    if with_hw:
        quarter = rotary_halves(q_proj, cfg.num_heads, hd, hd // 2).view(cfg.num_heads, hd // 2, -1)
        out[f"{prefix}q_proj_hw.weight"] = torch.cat((quarter, quarter), dim=1).reshape(
            cfg.num_heads * hd, -1
        )
        for n in ("q_norm_h", "q_norm_w"):
            out[f"{prefix}{n}.weight"] = torch.ones(hd // 2, dtype=q_proj.dtype)
    if sd:
        out[f"{prefix}q_proj_s.weight"] = rotary_halves(q_proj, cfg.num_heads, hd, sd).clone()
        out[f"{prefix}q_norm_s.weight"] = torch.ones(sd, dtype=q_proj.dtype)
    return out


def native_from_k(prefix: str, k_proj: Tensor, cfg: RSNeoConfig, with_hw: bool = True) -> dict[str, Tensor]:
    """H/W key projections at zero with norms at one (NEO's start); S keys from k_proj, gated shut.

    `k_proj_s` takes k_proj's rotary halves (as q_proj_s takes q_proj's) and its norm weight, the S gate,
    starts at zero: the S term is exactly 0 and opens smoothly with training.
    """
    out: dict[str, Tensor] = {}
    hd, sd, kv, d = cfg.head_dim, cfg.spectral_head_dim, cfg.num_kv_heads, k_proj.shape[1]
    if with_hw:
        out[f"{prefix}k_proj_hw.weight"] = torch.zeros(kv * hd, d, dtype=k_proj.dtype)
        for n in ("k_norm_h", "k_norm_w"):
            out[f"{prefix}{n}.weight"] = torch.ones(hd // 2, dtype=k_proj.dtype)
    if sd:
        out[f"{prefix}k_proj_s.weight"] = rotary_halves(k_proj, kv, hd, sd).clone()
        out[f"{prefix}k_norm_s.weight"] = torch.zeros(sd, dtype=k_proj.dtype)
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
    """A whole NEO state dict (golden key names) -> an rsneo state dict, S axis added (k_proj_s zero)."""
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
    """Freshly initialised pre-buffer layers (and patch embedding), Qwen3-style, as rsneo-named tensors."""
    from rsneo.model.backbone import NativeLayer

    out: dict[str, Tensor] = {}
    for index in layers:
        layer = NativeLayer(cfg)
        for name, p in layer.named_parameters():
            if name.endswith("k_norm_s.weight"):
                torch.nn.init.zeros_(p.data)  # the S gate (see `native_from_k`)
            elif name.endswith("norm.weight") or "_norm" in name or name.endswith("layernorm.weight"):
                torch.nn.init.ones_(p.data)
            else:
                torch.nn.init.normal_(p.data, std=cfg.initializer_range)
            out[f"backbone.layers.{index}.{name}"] = p.data.to(dtype)
    if vision:
        pel = SpectralPatchEmbedding(cfg)
        out |= {f"backbone.vision.{k}": v.to(dtype) for k, v in pel.state_dict().items()}
    return out


# ---- folders
# -------------------------------------------------------------------------------------------------
def source_shards(src: Path) -> list[Path]:
    index = src / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [src / n for n in names]
    single = src / "model.safetensors"
    if single.is_file():
        return [single]
    shards = sorted(src.glob("*.safetensors"))
    if not shards:
        raise InputError(f"{src}: expected safetensors weights (model.safetensors or an index), found none")
    return shards


def read_shard(path: Path) -> Iterator[tuple[str, Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
            yield key, f.get_tensor(key)


def copy_tokenizer(src: Path, dst: Path) -> tuple[int, int, int, int]:
    """Copy the source tokenizer, add NEO's image tokens; returns (start, end, context) ids and its length."""
    from rsneo.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(src)
    tokenizer.save_pretrained(str(dst))
    for extra in ("generation_config.json",):
        if (src / extra).is_file():
            shutil.copy(src / extra, dst / extra)
    vocab = tokenizer.get_vocab()
    return vocab["<img>"], vocab["</img>"], vocab["<IMG_CONTEXT>"], len(tokenizer)


def grow_rows(tensor: Tensor, rows: int) -> Tensor:
    """Pad an embedding/LM-head matrix to `rows` rows with the mean row (new special tokens start neutral)."""
    if tensor.shape[0] >= rows:
        return tensor
    extra = tensor.float().mean(0, keepdim=True).expand(rows - tensor.shape[0], -1).to(tensor.dtype)
    return torch.cat((tensor, extra), dim=0)


def write_converted(
    dst: Path,
    cfg: RSNeoConfig,
    shards: list[Path],
    map_tensor: Callable[[str, Tensor], dict[str, Tensor]],
    extra: dict[str, Tensor],
    progress: Callable[[str], None] | None = None,
) -> None:
    """Write mapped source shards and one shard of new tensors, with an index, to `dst`."""
    from rsneo.model.checkpoint import write_shards

    def mapped() -> Iterator[dict[str, Tensor]]:
        for shard in shards:
            if progress:
                progress(shard.name)
            out: dict[str, Tensor] = {}
            for key, tensor in read_shard(shard):
                for name, t in map_tensor(key, tensor).items():
                    if name in ("backbone.embed_tokens.weight", "lm_head.weight"):
                        t = grow_rows(t, cfg.vocab_size)
                    out[name] = t.contiguous()
            yield out
        yield extra

    write_shards(dst, cfg, mapped())


def convert_qwen3(
    src: str | Path,
    dst: str | Path,
    prebuffer_layers: int | None = None,
    vision_hidden_size: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> RSNeoConfig:
    """A Hugging Face Qwen3 folder -> an rsneo folder; Qwen3 layer i becomes layer i + prebuffer_layers."""
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
    dst.mkdir(parents=True, exist_ok=True)
    start, end, context, n_tokens = copy_tokenizer(src, dst)
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
        spectral_head_dim=head_dim // 2,
        rope_theta=float(hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta", 1e6)),
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
        dst, cfg, source_shards(src), lambda k, t: map_llm_tensor(k, t, cfg, prebuffer_layers, has_hw=False),
        extra, progress,
    )  # fmt: skip
    return cfg


def convert_neo(
    src: str | Path, dst: str | Path, progress: Callable[[str], None] | None = None
) -> RSNeoConfig:
    """A NEO release folder (NEO key names, `llm_config`/`vision_config` config) -> an rsneo folder."""
    src, dst = Path(src), Path(dst)
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise InputError(f"{src}: expected a NEO folder with config.json, found none")
    neo = json.loads(cfg_path.read_text())
    if "llm_config" not in neo or "vision_config" not in neo:
        raise InputError(f"{cfg_path}: expected NEO's 'llm_config' and 'vision_config', found {sorted(neo)}")
    dst.mkdir(parents=True, exist_ok=True)
    cfg = RSNeoConfig.from_neo_json(neo)
    if (src / "tokenizer.json").is_file():
        start, end, context, n_tokens = copy_tokenizer(src, dst)
        cfg = replace(cfg, vocab_size=max(cfg.vocab_size, n_tokens), img_start_token_id=start,
                      img_end_token_id=end, img_context_token_id=context)  # fmt: skip
    shards = source_shards(src)
    vision: dict[str, Tensor] = {}
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118
                if key.startswith("vision_model."):
                    vision[key] = f.get_tensor(key)

    def map_tensor(key: str, tensor: Tensor) -> dict[str, Tensor]:
        return {} if key.startswith("vision_model.") else map_llm_tensor(key, tensor, cfg, 0, has_hw=True)

    write_converted(dst, cfg, shards, map_tensor, neo_vision_tensors(vision, cfg), progress)
    return cfg


def _dtype_of(name: str | None) -> torch.dtype:
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(name or "", torch.float32)
