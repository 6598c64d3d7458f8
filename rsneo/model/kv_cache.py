"""The key/value cache of generation: buffers allocated up front, written in place.

`KVCache(capacity)` holds, per layer, keys (batch, kv heads, capacity, qk_dim) and values (batch, kv heads,
capacity, head_dim), and the doc / block ids of the cached tokens. Each forward writes its tokens after the
cached ones and attends over views of the filled part, so a step costs no copy of the past (the former
`torch.cat` per layer and step copied the whole cache every token). Without a capacity, or past it, the
buffers double, which keeps appends amortised O(1) for callers that cannot know the final length.

The mask of a one-token step is the key buffer's doc ids compared with the token's doc, written into a
preallocated buffer: for the last query every key is causal, so the rule of `masks.may_attend` reduces to
"same document, or itself".
"""

from __future__ import annotations

import torch
from torch import Tensor


def _grown(buffer: Tensor | None, filled: int, need: int, capacity: int, like: Tensor) -> Tensor:
    """`buffer` if it holds `need` token positions (dim 2 of keys/values, dim 1 of ids), else a larger copy
    of its filled part."""
    dim = 2 if like.dim() == 4 else 1
    if buffer is not None and buffer.shape[dim] >= need:
        return buffer
    size = max(capacity, need, 2 * (buffer.shape[dim] if buffer is not None else 0))
    shape = list(like.shape)
    shape[dim] = size
    grown = like.new_empty(shape)
    if buffer is not None and filled:
        grown.narrow(dim, 0, filled).copy_(buffer.narrow(dim, 0, filled))
    return grown


class KVCache:
    """Keys/values of every layer plus the doc/block ids of the cached tokens (for the mask of new tokens)."""

    def __init__(self, capacity: int = 0) -> None:
        self.capacity = capacity  # tokens to allocate for at the first write: prompt + new tokens
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self._doc: Tensor | None = None  # (batch, allocated)
        self._block: Tensor | None = None
        self._step_mask: Tensor | None = None  # (batch, allocated) bool
        self.length = 0  # tokens cached

    @property
    def doc_ids(self) -> Tensor | None:
        return None if self._doc is None else self._doc[:, : self.length]

    @property
    def block_ids(self) -> Tensor | None:
        return None if self._block is None else self._block[:, : self.length]

    @property
    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """Per layer, (keys, values) of the cached tokens (views)."""
        return [
            (k[:, :, : self.length], v[:, :, : self.length])
            for k, v in zip(self.keys, self.values, strict=True)
        ]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this call's keys/values (batch, heads, new, dim) of `layer` after the cached ones; return
        the keys/values of cached + new tokens (views). The length advances in `extend`, after all layers."""
        end = self.length + k.shape[2]
        if layer == len(self.keys):
            self.keys.append(None)  # type: ignore[arg-type]
            self.values.append(None)  # type: ignore[arg-type]
        self.keys[layer] = _grown(self.keys[layer], self.length, end, self.capacity, k)
        self.values[layer] = _grown(self.values[layer], self.length, end, self.capacity, v)
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def key_ids(self, doc: Tensor, block: Tensor) -> tuple[Tensor, Tensor]:
        """Write the new tokens' doc/block ids (batch, new) after the cached ones; return all keys' ids."""
        end = self.length + doc.shape[1]
        self._doc = _grown(self._doc, self.length, end, self.capacity, doc)
        self._block = _grown(self._block, self.length, end, self.capacity, block)
        self._doc[:, self.length : end] = doc
        self._block[:, self.length : end] = block
        return self._doc[:, :end], self._block[:, :end]

    def step_mask(self, doc: Tensor) -> Tensor:
        """(batch, 1, 1, keys) bool for one new token per row (after `key_ids`): its document, and itself."""
        end = self.length + 1
        assert self._doc is not None and doc.shape[1] == 1
        if self._step_mask is None or self._step_mask.shape[1] < self._doc.shape[1]:
            self._step_mask = torch.empty(self._doc.shape, dtype=torch.bool, device=self._doc.device)
        mask = self._step_mask[:, :end]
        torch.eq(self._doc[:, :end], doc, out=mask)
        mask &= doc >= 0  # padding attends only itself
        mask[:, -1] = True
        return mask[:, None, None, :]

    def extend(self, new_tokens: int) -> None:
        """Count the tokens the last forward wrote (every layer and the ids) as cached."""
        self.length += new_tokens
