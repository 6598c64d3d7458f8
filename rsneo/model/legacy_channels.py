"""LEGACY: the first layout of the S axis, its own channels per head (`spectral_layout="channels"`).

Delete this file when the bundled model (rsneo/assets/model) has been retrained with the phase layout.

The first version gave S `spectral_head_dim` channels per head: `q_proj_s` / `k_proj_s`, their own QK-norms
(`q_norm_s`, `k_norm_s`; the key norm's weight is the gate, at zero for a fresh model) and a rotary at the
spectral coordinate with base `rope_theta_s`, appended to the query and key: [T | H | W | S], 2 x head_dim +
spectral_head_dim wide (320 at NEO-2.2B, more than the 256 flash kernels take). The bundled model was trained
that way; a `config.json` without `spectral_layout` is read as this layout, and such a folder computes exactly
what it computed before the phase layout (`tests/model/test_legacy_channels.py` compares it with outputs saved
then).

To delete: this file, every line marked `LEGACY channels` (`grep -rn "LEGACY channels" rsneo tests
benchmarks`), the fields `spectral_head_dim` and `rope_theta_s` of `RSNeoConfig`, and
tests/model/test_legacy_channels.py with its data file.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rsneo.model.rope import apply_rotary

# parameter-name patterns of the S channels (`RSNeoForCausalLM.parameter_groups`: native_positions)
PARAMS = ("_proj_s.", "_norm_s.")


def add_parameters(attention: nn.Module, config: Any, norm: type) -> None:
    """The S projections and QK-norms of one attention layer (none when `spectral_head_dim` is 0)."""
    d, sd = config.hidden_size, config.spectral_head_dim
    if not sd:
        return
    attention.q_proj_s = nn.Linear(d, config.num_heads * sd, bias=False)
    attention.k_proj_s = nn.Linear(d, config.num_kv_heads * sd, bias=False)
    attention.q_norm_s = norm(sd, config.rms_norm_eps)
    attention.k_norm_s = norm(sd, config.rms_norm_eps)


def project(attention: nn.Module, x: Tensor, table: tuple[Tensor, Tensor], heads: int, proj: str) -> Tensor:
    """The rotated S part (batch, heads, tokens, spectral_head_dim) of the queries (`proj` "q") or keys."""
    batch, length, _ = x.shape
    s = getattr(attention, f"{proj}_proj_s")(x).view(batch, length, heads, -1).transpose(1, 2)
    return apply_rotary(getattr(attention, f"{proj}_norm_s")(s), *table)


@torch.no_grad()
def init_gate(name: str, module: nn.Module) -> None:
    """A fresh model starts with the S gate (`k_norm_s`) shut: the S term of every score is exactly 0."""
    if name.endswith("self_attn.k_norm_s"):
        nn.init.zeros_(module.weight)
