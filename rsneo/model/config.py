"""`RSNeoConfig`: every number that shapes the backbone, with named presets (litgpt style).

Layer counting follows NEO's golden config: `num_layers` is the whole stack, of which the first
`prebuffer_layers` are the pre-buffer and the rest the post-LLM (the base LLM's layers, shifted).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from rsneo.errors import InputError
from rsneo.model.masks import BACKENDS
from rsneo.model.rope import PHASE_AXES

SPECTRAL_LAYOUTS = ("phase",)  # the first layout, "channels" (S on its own channels), is no longer read

# Anchor wavelengths (micrometres) of the spectral kernel generator: NEO's blue/green/red first, then the
# rest of the
# optical and thermal range. Kernels are interpolated in log-wavelength between neighbouring anchors.
DEFAULT_SPECTRAL_ANCHORS_UM: tuple[float, ...] = (
    0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.945, 1.375, 1.61, 2.19, 11.0,
)  # fmt: skip


@dataclass
class RSNeoConfig:
    """Sizes, rotary bases and special token ids of an rsneo backbone."""

    name: str = "custom"
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 3  # total, pre-buffer included
    prebuffer_layers: int = 1
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    # the spectral axis S: "phase" adds S x a learned frequency (zero at the start) to the rotary pairs of
    # [T | H | W] named by `spectral_pairs` (rsneo.model.attention), the one layout read (the first, S on its
    # own channels, is refused with the reason by `from_dict`)
    spectral_layout: str = "phase"
    spectral_pairs: str = "all"  # "all", "t", "hw" or "none" (rsneo.model.rope.PHASE_AXES)
    # S units per unit of the phase's position: phase = S / spectral_unit x frequency
    spectral_unit: float = 1.0
    rope_theta: float = 1_000_000.0  # T axis: the LLM's own base
    rope_theta_hw: float = 10_000.0  # H and W axes
    rope_linear_factor: float = 1.0  # Qwen3 linear `rope_scaling`: T and H/W positions / factor
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    # vision: NEO's patch embedding layer (16-pixel conv + GELU + 2D rotary, then a 2x2 merge to 32-pixel
    # tokens)
    vision_hidden_size: int = 32
    patch_size: int = 16
    merge_size: int = 2
    rope_theta_vision: float = 10_000.0
    spectral_anchors_um: tuple[float, ...] = DEFAULT_SPECTRAL_ANCHORS_UM
    reference_band_count: int = 3  # the kernel sum is scaled by reference_band_count / bands (1 for RGB)
    # special tokens
    img_start_token_id: int = 500
    img_end_token_id: int = 501
    img_context_token_id: int = 502
    eos_token_id: int | None = None
    # positions
    date_spacing: float | None = None  # T units per day between frames; None = consecutive frames
    mask_policy: str = "frame"  # "frame" or "scene"
    initializer_range: float = 0.02
    # how the model was trained to group bands, which prediction follows (rsneo.data.frames.BAND_GROUPS);
    # models without the record (the bundled one) were trained with the sensor's groups
    band_groups: str = "sensor"
    # attention kernels when a call names none (rsneo.model.masks.BACKENDS): a choice of this process (the
    # training config's `model.attn_backend`), not of the weights, so it is not saved (to_dict)
    attn_backend: str = "auto"

    def __post_init__(self) -> None:
        self.spectral_anchors_um = tuple(float(a) for a in self.spectral_anchors_um)
        if not 0 <= self.prebuffer_layers <= self.num_layers:
            raise InputError(
                f"config: prebuffer_layers must be in [0, num_layers={self.num_layers}], "
                f"got {self.prebuffer_layers}"
            )
        if self.num_heads % self.num_kv_heads:
            raise InputError(f"config: num_heads {self.num_heads} is not a multiple of num_kv_heads")
        if self.head_dim % 4:
            raise InputError("config: head_dim must be a multiple of 4")
        if self.spectral_layout not in SPECTRAL_LAYOUTS:
            raise InputError(
                f"config: spectral_layout must be one of {list(SPECTRAL_LAYOUTS)}, "
                f"got {self.spectral_layout!r}"
            )
        if self.spectral_pairs not in PHASE_AXES:
            raise InputError(
                f"config: spectral_pairs must be one of {list(PHASE_AXES)}, got {self.spectral_pairs!r}"
            )
        if not self.spectral_unit > 0:
            raise InputError(f"config: spectral_unit must be positive, got {self.spectral_unit}")
        if self.mask_policy not in ("frame", "scene"):
            raise InputError(f"config: mask_policy must be 'frame' or 'scene', got {self.mask_policy!r}")
        if list(self.spectral_anchors_um) != sorted(set(self.spectral_anchors_um)):
            raise InputError("config: spectral_anchors_um must be strictly increasing")
        if self.attn_backend not in BACKENDS:
            raise InputError(
                f"config: attn_backend must be one of {list(BACKENDS)}, got {self.attn_backend!r}"
            )

    @property
    def post_layers(self) -> int:
        return self.num_layers - self.prebuffer_layers

    @property
    def qk_dim(self) -> int:
        """Per-head query/key width: [T | H | W] = 2 x head_dim."""
        return 2 * self.head_dim

    # ---- presets and (de)serialisation
    # -------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> RSNeoConfig:
        if preset not in PRESETS:
            raise InputError(f"config preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        return replace(PRESETS[preset], **overrides)

    @property
    def token_size(self) -> int:
        """Pixels per image token side: a `patch_size` patch, merged `merge_size` x `merge_size` (NEO: 32)."""
        return self.patch_size * self.merge_size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spectral_anchors_um"] = list(self.spectral_anchors_um)
        del d["attn_backend"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RSNeoConfig:
        d = dict(d)
        legacy = d.pop("extra", None) or {}  # config.json files written before `band_groups` was a field
        if "band_groups" in legacy:
            d.setdefault("band_groups", legacy["band_groups"])
        # folders written before the phase layout have S channels (`spectral_head_dim`) and no layout key
        if d.get("spectral_layout") == "channels" or d.get("spectral_head_dim"):
            raise InputError(
                "config: this model gives the spectral axis S its own channels per head (the first layout, "
                "before `spectral_layout`), which this rsneo no longer reads; retrain it with `rsneo train` "
                "(the phase layout), or read it with rsneo from before the bundled model was retrained"
            )
        for key in ("spectral_head_dim", "rope_theta_s"):  # phase-layout folders wrote these, unused
            d.pop(key, None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"config: unknown keys {unknown}")
        hints = get_type_hints(cls)
        for key, value in d.items():
            if not _has_type(value, hints[key]):
                raise InputError(f"config: {key!r} is {value!r}; expected {_type_name(hints[key])}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> RSNeoConfig:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: expected an rsneo config.json, found none")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a JSON file ({exc}); expected an rsneo config.json") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object of config keys, found {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    @classmethod
    def from_neo_json(cls, neo: dict[str, Any], **overrides: Any) -> RSNeoConfig:
        """Translate a NEO config (`llm_config` + `vision_config`: the golden one, NEOChatConfig) to ours.

        NEO's release configs (the HF remote-code config) leave the image token ids unset (NEO reads them
        from its tokenizer; `convert neo` does too) and have no `extra_num_layers`: then the pre-buffer
        depth must come as the `prebuffer_layers` override (`convert neo` infers or asks for it).
        """
        llm, vis = neo["llm_config"], neo["vision_config"]
        prebuffer = overrides.pop("prebuffer_layers", None)
        if prebuffer is None:
            prebuffer = llm.get("extra_num_layers")
        if prebuffer is None:
            raise InputError(
                "NEO config: llm_config has no 'extra_num_layers' (the pre-buffer depth); "
                "give it (--prebuffer-layers)"
            )
        heads = llm["num_attention_heads"]
        head_dim = llm.get("head_dim") or llm["hidden_size"] // heads
        theta = llm.get("rope_theta") or (llm.get("rope_parameters") or {}).get("rope_theta", 1_000_000.0)
        ids = {
            k: neo[k]
            for k in ("img_start_token_id", "img_end_token_id", "img_context_token_id")
            if neo.get(k) is not None
        }
        if "img_end_token_id" not in ids and "img_start_token_id" in ids:
            ids["img_end_token_id"] = ids["img_start_token_id"] + 1  # NEO adds <img>, </img> in this order
        cfg = cls(
            name=overrides.pop("name", "neo"),
            vocab_size=llm["vocab_size"],
            hidden_size=llm["hidden_size"],
            intermediate_size=llm["intermediate_size"],
            num_layers=llm["num_hidden_layers"],
            prebuffer_layers=int(prebuffer),
            num_heads=heads,
            num_kv_heads=llm.get("num_key_value_heads", heads),
            head_dim=head_dim,
            rope_theta=float(theta),
            rope_theta_hw=float(llm.get("rope_theta_hw", 10_000.0)),
            rope_linear_factor=rope_linear_factor(llm, "NEO config llm_config"),
            rms_norm_eps=llm.get("rms_norm_eps", 1e-6),
            tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
            vision_hidden_size=vis.get("hidden_size", 1024),
            patch_size=vis.get("patch_size", 16),
            merge_size=round(1 / vis.get("downsample_ratio", 0.5)),
            rope_theta_vision=float(vis.get("rope_theta_vision", 10_000.0)),
            **ids,
        )
        return replace(cfg, **overrides)


def rope_linear_factor(llm: dict[str, Any], source: str) -> float:
    """The linear factor of a Qwen3/NEO `rope_scaling` (1 when absent); other scaling types are refused.

    NEO builds its T and H/W rotaries from the same config, so the scaling applies to both; rsneo honours the
    linear type (positions divided by the factor) and names any other type rather than silently ignoring it.
    """
    scaling = llm.get("rope_scaling") or (llm.get("rope_parameters") or {})
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return 1.0
    if kind == "linear":
        return float(scaling["factor"])
    raise InputError(
        f"{source}: rope_scaling type {kind!r} is not supported by rsneo (only 'linear' or none); "
        "convert a checkpoint without it"
    )


def _golden_tiny() -> RSNeoConfig:
    """The golden NEO config (../shared/golden/neo_tiny_config.json); the S axis adds no width."""
    return RSNeoConfig(name="tiny")  # the dataclass defaults are exactly the golden numbers


PRESETS: dict[str, RSNeoConfig] = {
    "tiny": _golden_tiny(),
    # ~9.1M parameters, ~37 MB in fp32 with embeddings: the bundled demo size
    "demo": RSNeoConfig(
        name="demo",
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=768,
        num_layers=6,
        prebuffer_layers=2,
        num_heads=8,
        num_kv_heads=4,
        head_dim=32,
        vision_hidden_size=128,
        tie_word_embeddings=True,
        # ids as `train_tokenizer` (rsneo.model.tokenizer) lays them out: 3 text specials, then the image ones
        img_start_token_id=3,
        img_end_token_id=4,
        img_context_token_id=5,
        eos_token_id=0,
    ),
    # NEO-2.2B: Qwen3-1.7B (28 layers) behind a 12-layer pre-buffer (NEO's VLMTrainKit recipe:
    # --extra_num_layers 12)
    "neo-2.2b": RSNeoConfig(
        name="neo-2.2b",
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=6144,
        num_layers=28 + 12,
        prebuffer_layers=12,
        num_heads=16,
        num_kv_heads=8,
        head_dim=128,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        vision_hidden_size=1024,
        rope_theta_vision=1000.0,
        img_start_token_id=151670,  # NEO adds <IMG_CONTEXT>, <img>, </img> after Qwen3's 151669 ids
        img_end_token_id=151671,
        img_context_token_id=151669,
        eos_token_id=151645,
    ),
    # NEO-9B: Qwen3-8B (36 layers) behind a 6-layer pre-buffer (scripts/8B_1PT.sh: 6 of 42 layers)
    "neo-9b": RSNeoConfig(
        name="neo-9b",
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=12288,
        num_layers=36 + 6,
        prebuffer_layers=6,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
        vision_hidden_size=1024,
        rope_theta_vision=1000.0,
        img_start_token_id=151670,  # NEO adds <IMG_CONTEXT>, <img>, </img> after Qwen3's 151669 ids
        img_end_token_id=151671,
        img_context_token_id=151669,
        eos_token_id=151645,
    ),
}


def _has_type(value: Any, kind: Any) -> bool:
    """Whether a JSON value fits a config field's type (an int fits a float; a bool is not a number)."""
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if get_origin(kind) in (UnionType, Union):
        return any(_has_type(value, k) for k in get_args(kind))
    if get_origin(kind) is tuple:
        item = get_args(kind)[0]
        return isinstance(value, list | tuple) and all(_has_type(v, item) for v in value)
    if kind is type(None):
        return value is None
    return isinstance(value, kind)


def _type_name(kind: Any) -> str:
    if get_origin(kind) in (UnionType, Union):
        return " or ".join(_type_name(k) for k in get_args(kind))
    if get_origin(kind) is tuple:
        return f"a list of {_type_name(get_args(kind)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        kind, "null" if kind is type(None) else str(kind)
    )
