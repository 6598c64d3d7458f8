"""The rsneo backbone: NEO (one transformer, Native-RoPE, mixed mask, pre-buffer) plus a spectral RoPE axis.

Public API:
- `RSNeoConfig.from_preset("tiny" | "demo" | "neo-2.2b" | "neo-9b")`; `config.prebuffer_layers` /
  `config.post_layers` split the stack (the first `prebuffer_layers` layers are the pre-buffer);
  `config.spectral_layout` ("phase": S as a learned phase on NEO's rotary pairs, q/k 2 x head_dim wide).
- `RSNeoForCausalLM(config)`; `model(inputs).logits` (batch, tokens, vocab) for a `ModelInputs`,
  `model(input_ids=...)` for plain text; `.generate(inputs, max_new_tokens)` (greedy, KV cache, images once);
  `.save_pretrained(dir)` / `RSNeoForCausalLM.from_pretrained(dir)` (safetensors shards + index +
  config.json).
- `model.backbone(inputs, output_hidden_states=True)` -> `.last_hidden_state` (batch, tokens, hidden) and
  `.hidden_states` (embeddings output + each layer). `model.backbone.prebuffer_layers` / `.post_layers` list
  the layers; `model.backbone.vision` is the spectral patch embedding; `model.backbone.flex` how Flex runs
  (its bucket ladder, `rsneo.model.flex`).
- `model.parameter_groups()` -> names by role: `vision`, `prebuffer`, `native_positions` (post-LLM
  q/k_proj_hw, their QK-norms and the spectral frequencies: names contain `_proj_hw.`, `_norm_h.`, `_norm_w.`,
  `.spectral_frequencies`), `post_llm`, `language` (embeddings, final norm, LM head). Stage 1 trains vision +
  prebuffer + native_positions.
- `document_positions` / `pack_documents` (positions.py): the one implementation of T/H/W/S indexes and block
  ids; `spectral_coordinate` (spectral.py): a band group's S coordinate.
- `attn_backend=` "auto" (a variable-length flash kernel when the batch is document-blocked on CUDA, else
  compiled Flex on CUDA, dense SDPA on CPU), "sdpa", "flex", "flash"; a call without it uses
  `config.attn_backend` (default "auto").
"""

from rsneo.model.backbone import BackboneOutput, KVCache, RSNeoBackbone
from rsneo.model.causal_lm import CausalLMOutput, RSNeoForCausalLM
from rsneo.model.config import PRESETS, RSNeoConfig
from rsneo.model.inputs import ImageInput, ModelInputs
from rsneo.model.positions import DocumentPositions, document_positions, pack_documents, text_positions
from rsneo.model.spectral import spectral_coordinate

__all__ = [
    "PRESETS",
    "BackboneOutput",
    "CausalLMOutput",
    "DocumentPositions",
    "ImageInput",
    "KVCache",
    "ModelInputs",
    "RSNeoBackbone",
    "RSNeoConfig",
    "RSNeoForCausalLM",
    "document_positions",
    "pack_documents",
    "spectral_coordinate",
    "text_positions",
]
