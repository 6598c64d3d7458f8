"""The rsneo backbone: word + spectral patch embeddings, pre-buffer and post-LLM native layers, final norm.

Heads call `backbone(inputs, output_hidden_states=True)` and read `last_hidden_state` (batch, tokens, hidden)
and
`hidden_states` (embeddings output, then each layer's output; the last one before the final norm).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsneo.errors import InputError
from rsneo.model.attention import AttentionMask, NativeAttention, RMSNorm
from rsneo.model.config import RSNeoConfig
from rsneo.model.flex import FlexOptions
from rsneo.model.inputs import ModelInputs
from rsneo.model.kv_cache import KVCache
from rsneo.model.masks import BACKENDS, dense_mask, flash_plan, flex_block_mask
from rsneo.model.patch_embed import SpectralPatchEmbedding
from rsneo.model.rope import NativeRopeTables
from rsneo.model.varlen import varlen_kernel


class SwiGLU(nn.Module):
    def __init__(self, config: RSNeoConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class NativeLayer(nn.Module):
    """One NEO primitive: pre-norm native attention and pre-norm SwiGLU, each with a residual."""

    def __init__(self, config: RSNeoConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = NativeAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(
        self,
        x: Tensor,
        rope: NativeRopeTables,
        mask: AttentionMask,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        """x (batch, tokens, hidden) -> the layer's output (a new tensor: FSDP hooks it for the backward)."""
        attn, _ = self.self_attn(self.input_layernorm(x), rope, mask, cache, layer)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x))


@dataclass
class BackboneOutput:
    last_hidden_state: Tensor  # (batch, tokens, hidden), after the final norm
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings, then each layer's output
    cache: KVCache | None = None


class RSNeoBackbone(nn.Module):
    def __init__(self, config: RSNeoConfig) -> None:
        super().__init__()
        self.config = config
        # the weight is given (initialised by `init_weights`): Embedding's own init on the meta device would
        # import torch._dynamo (torch 2.14), seconds of every command's start-up
        weight = torch.empty(config.vocab_size, config.hidden_size)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, _weight=weight)
        self.vision = SpectralPatchEmbedding(config)
        self.layers = nn.ModuleList(NativeLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # how Flex runs in this process (bucket ladder, compilation): a setting, not a weight
        self.flex = FlexOptions()

    @property
    def prebuffer_layers(self) -> list[NativeLayer]:
        return list(self.layers[: self.config.prebuffer_layers])

    @property
    def post_layers(self) -> list[NativeLayer]:
        return list(self.layers[self.config.prebuffer_layers :])

    def embed(self, inputs: ModelInputs, image_embeds: Tensor | None = None, check: bool = True) -> Tensor:
        """Word embeddings, `<IMG_CONTEXT>` positions replaced by patch embeddings (batch, tokens, hidden).

        `check=False` skips counting the `<IMG_CONTEXT>` tokens against the band groups: the count reads the
        ids back (a host sync on an accelerator), and inputs built by `pack_documents` were matched to their
        band groups already. How many image tokens there are is then known on the host, from the groups.
        """
        x = self.embed_tokens(inputs.input_ids)
        slots = inputs.input_ids == self.config.img_context_token_id
        n_slots = int(slots.sum()) if check else sum(im.num_tokens for im in inputs.images)
        if image_embeds is None and n_slots:
            image_embeds = self.vision(inputs.images)
        n_embeds = 0 if image_embeds is None else image_embeds.shape[0]
        if check and n_slots != n_embeds:
            raise InputError(
                f"inputs: {n_slots} <IMG_CONTEXT> tokens but the band groups give {n_embeds} image tokens"
            )
        if n_embeds:
            x = x.masked_scatter(slots[..., None], image_embeds.to(x.dtype))
        return x

    def attention_mask(
        self,
        inputs: ModelInputs,
        backend: str,
        cache: KVCache | None = None,
        dtype: torch.dtype | None = None,
    ) -> AttentionMask:
        """Build the mask once for all layers; `auto` picks a variable-length flash kernel (document-blocked
        batches) or compiled Flex on CUDA, and dense SDPA on CPU.

        `flash` runs SDPA per segment where no flash kernel applies (CPU, fp32) and falls back to dense SDPA
        when the mask is not document-blocked; `flex` on CPU with gradients runs as SDPA (FlexAttention has no
        CPU backward). `dtype` is the attention's dtype (the autocast dtype under autocast).
        """
        if backend not in BACKENDS:
            raise InputError(f"attention backend: expected one of {BACKENDS}, got {backend!r}")
        doc, block = inputs.doc_ids, inputs.block_ids
        if cache is not None and cache.length:
            k_doc, k_block = cache.key_ids(doc, block)  # written in place: no copy of the cached ids
            if doc.shape[1] == 1:  # a generation step: one comparison into a preallocated buffer
                return AttentionMask("sdpa", dense=cache.step_mask(doc), kernel="sdpa")
            dense = dense_mask(doc, block, k_doc, k_block, cache.length)
            return AttentionMask("sdpa", dense=dense, kernel="sdpa")
        dtype = dtype or torch.float32
        if backend in ("auto", "flash"):
            plan = flash_plan(doc, block, self.config.qk_dim)
            kernel = varlen_kernel(doc.device, dtype, self.config.qk_dim)
            if plan is not None and (backend == "flash" or kernel != "sdpa per segment"):
                return AttentionMask("flash", flash=plan, kernel=kernel)
            backend = ("flex" if doc.is_cuda else "sdpa") if backend == "auto" else "sdpa"
        if backend == "flex" and not doc.is_cuda and torch.is_grad_enabled():
            backend = "sdpa"  # FlexAttention has no CPU backward; SDPA computes the same numbers
        if backend == "flex":
            kernel = "flex compiled" if self.flex.compiled(doc.device) else "flex uncompiled"
            block_mask = flex_block_mask(doc, block, self.flex.buckets)
            return AttentionMask("flex", block_mask=block_mask, kernel=kernel, flex=self.flex)
        dense = dense_mask(doc, block, doc, block)
        return AttentionMask("sdpa", dense=dense, kernel="sdpa", padded_values=self._value_buffer(doc, dtype))

    def _value_buffer(self, doc: Tensor, dtype: torch.dtype) -> Tensor | None:
        """Zeros (batch, tokens, kv heads, q/k width) into which every layer writes its values: on the CPU
        the fused kernel takes one head width, and padding once per forward spares a padded copy per layer.
        Inference only (layers write it in place, which autograd cannot keep)."""
        cfg = self.config
        if doc.is_cuda or torch.is_grad_enabled() or cfg.qk_dim == cfg.head_dim:
            return None
        return torch.zeros(*doc.shape, cfg.num_kv_heads, cfg.qk_dim, dtype=dtype, device=doc.device)

    def forward(
        self,
        inputs: ModelInputs,
        output_hidden_states: bool = False,
        attn_backend: str | None = None,
        cache: KVCache | None = None,
        image_embeds: Tensor | None = None,
        check_inputs: bool = True,
    ) -> BackboneOutput:
        """Run the stack. With `cache`, `inputs` are the new tokens only, written into the cache in place.

        `attn_backend` None: the config's (`RSNeoConfig.attn_backend`). `check_inputs=False`: see `embed` (the
        training step, whose inputs `pack_documents` built, passes it).
        """
        cfg = self.config
        x = self.embed(inputs, image_embeds, check_inputs)
        rope = NativeRopeTables.build(inputs.positions.to(x.device), cfg, x.dtype)
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        mask = self.attention_mask(inputs, attn_backend or cfg.attn_backend, cache, dtype)
        hidden = [x] if output_hidden_states else None
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, mask, cache, i)
            if hidden is not None:
                hidden.append(x)
        if cache is not None:
            if not cache.length:  # the prompt: its ids were not written by the mask
                cache.key_ids(inputs.doc_ids, inputs.block_ids)
            cache.extend(inputs.input_ids.shape[1])
        return BackboneOutput(self.norm(x), tuple(hidden) if hidden is not None else None, cache)
