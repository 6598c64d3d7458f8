"""`RSNeoForCausalLM`: the backbone plus the language-model head, checkpoint I/O and generation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.errors import InputError
from rsneo.model.backbone import BackboneOutput, KVCache, RSNeoBackbone
from rsneo.model.checkpoint import load_pretrained, save_pretrained
from rsneo.model.config import RSNeoConfig
from rsneo.model.generate import generate
from rsneo.model.inputs import ModelInputs
from rsneo.model.positions import text_positions

# Parameter-name patterns of the native positions (H/W from NEO, S's spectral frequencies new); see
# `parameter_groups`.
NATIVE_POSITION_PARAMS = (
    "_proj_hw.",
    "_norm_h.",
    "_norm_w.",
    ".spectral_frequencies",
)


@torch.no_grad()
def init_module(config: RSNeoConfig, name: str, module: nn.Module) -> None:
    """rsneo's initialisation of one submodule (`name` as in `named_modules`, children not included), after
    its own `reset_parameters`: normal(0, initializer_range) for linear and embedding weights outside the
    patch embedding (Qwen3's rule); the spectral frequencies stay at zero
    (`NativeAttention.reset_parameters`).
    """
    if isinstance(module, nn.Linear | nn.Embedding) and not name.startswith("backbone.vision"):
        nn.init.normal_(module.weight, std=config.initializer_range)


@dataclass
class CausalLMOutput:
    logits: Tensor  # (batch, tokens, vocab)
    loss: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    last_hidden_state: Tensor | None = None
    cache: KVCache | None = None


class RSNeoForCausalLM(nn.Module):
    def __init__(self, config: RSNeoConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = RSNeoBackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embed_tokens.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Qwen3-style: normal(0, initializer_range) for linear and embedding weights (`init_module`); the
        spectral frequencies start at zero, where S changes nothing."""
        if self.lm_head.weight.is_meta:
            return
        for name, module in self.named_modules():
            self.init_module(name, module)

    def init_module(self, name: str, module: nn.Module) -> None:
        """`init_weights` for one submodule (see the module-level `init_module`): lets a model built on the
        meta device be materialised after sharding (`rsneo.train.scale`)."""
        init_module(self.config, name, module)

    def parameter_groups(self) -> dict[str, list[str]]:
        """Parameter names by role, for freezing per stage (stage 1: vision + prebuffer + native_positions).

        vision: the spectral patch embedding; prebuffer: all of the first `prebuffer_layers` layers;
        native_positions: q/k_proj_hw, their QK-norms and the spectral frequencies in the post-LLM layers;
        post_llm: the rest of the post-LLM layers; language: word embeddings, final norm, LM head.
        """
        groups: dict[str, list[str]] = {
            k: [] for k in ("vision", "prebuffer", "native_positions", "post_llm", "language")
        }
        for name, _ in self.named_parameters():
            if name.startswith("backbone.vision."):
                groups["vision"].append(name)
            elif name.startswith("backbone.layers."):
                index = int(name.split(".")[2])
                if index < self.config.prebuffer_layers:
                    groups["prebuffer"].append(name)
                elif any(p in name for p in NATIVE_POSITION_PARAMS):
                    groups["native_positions"].append(name)
                else:
                    groups["post_llm"].append(name)
            else:
                groups["language"].append(name)
        return groups

    def forward(
        self,
        inputs: ModelInputs | None = None,
        *,
        input_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        attn_backend: str | None = None,  # None: model.config.attn_backend
        cache: KVCache | None = None,
        image_embeds: Tensor | None = None,
    ) -> CausalLMOutput:
        """`model(inputs)` for a packed `ModelInputs`, or `model(input_ids=...)` (batch, tokens) for text."""
        if inputs is None:
            if input_ids is None:
                raise InputError("model: give either ModelInputs or input_ids")
            if bool((input_ids == self.config.img_context_token_id).any()):
                raise InputError("model(input_ids=...): text only; images need ModelInputs with band groups")
            inputs = text_positions(input_ids)
        out: BackboneOutput = self.backbone(
            inputs, output_hidden_states=output_hidden_states, attn_backend=attn_backend, cache=cache,
            image_embeds=image_embeds,
        )  # fmt: skip
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if inputs.labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), inputs.labels.flatten(), ignore_index=-100)
        return CausalLMOutput(logits, loss, out.hidden_states, out.last_hidden_state, out.cache)

    def generate(self, inputs: ModelInputs | Tensor, max_new_tokens: int = 32, **kwargs: Any) -> Tensor:
        """Greedy generation with a KV cache; see `rsneo.model.generate.generate`."""
        return generate(self, inputs, max_new_tokens, **kwargs)

    def save_pretrained(self, folder: str | Path, max_shard_bytes: int = 2 * 1024**3) -> None:
        save_pretrained(self, folder, max_shard_bytes)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> RSNeoForCausalLM:
        return load_pretrained(cls, folder, device, dtype)  # type: ignore[return-value]
