"""A KV cache whose decode steps write one column instead of re-copying the whole cache.

transformers' `DynamicLayer` grows by `torch.cat` on every update, so each decode step copies every
cached key and value (for a 7B model with a few dozen rows and a thousand-token prompt that is
gigabytes per step). `ReservedLayer` keeps buffers with spare room: `reserve(n)` (called before a
decode) makes room for n more columns at once, and an update writes into the buffer and returns a
view. It is a `DynamicLayer` to everything else (masks, `batch_select_indices`, `.keys` / `.values`).

transformers' public cache API has no growable, pre-reserved layer (`StaticCache` fixes one length for
every row up front and cannot drop finished rows), so this relies on `DynamicLayer` internals
(`lazy_initialization`, the `keys` / `values` attributes): transformers is pinned in pyproject.toml to
the minor release the engine's invariant tests (tests/test_surgery.py) pass on.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer


class ReservedLayer(DynamicLayer):
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self._keys = key_states.new_empty(*key_states.shape[:-2], 0, key_states.shape[-1])
        self._values = value_states.new_empty(*value_states.shape[:-2], 0, value_states.shape[-1])
        self._length = 0
        self.is_initialized = True

    # `.keys` / `.values` are the filled part of the buffers (DynamicLayer code reads and assigns them).
    @property
    def keys(self) -> Any:
        return None if not getattr(self, "is_initialized", False) else self._keys[..., : self._length, :]

    @keys.setter
    def keys(self, value: Any) -> None:
        if value is None:
            return
        self._keys, self._length = value, value.shape[-2]

    @property
    def values(self) -> Any:
        return None if not getattr(self, "is_initialized", False) else self._values[..., : self._length, :]

    @values.setter
    def values(self, value: Any) -> None:
        if value is None:
            return
        self._values = value

    def reserve(self, extra: int) -> None:
        """Make room for `extra` more columns without reallocating during the next `extra` updates."""
        if not self.is_initialized or self._keys.shape[-2] >= self._length + extra:
            return
        capacity = self._length + extra
        for name in ("_keys", "_values"):
            old = getattr(self, name)
            new = old.new_empty(*old.shape[:-2], capacity, old.shape[-1])
            new[..., : self._length, :] = old[..., : self._length, :]
            setattr(self, name, new)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        q = key_states.shape[-2]
        if self._keys.shape[-2] < self._length + q:
            self.reserve(max(q, self._length // 2))
        self._keys[..., self._length : self._length + q, :] = key_states
        self._values[..., self._length : self._length + q, :] = value_states
        self._length += q
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length if getattr(self, "is_initialized", False) else 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0:
            indices = indices.to(self._keys.device)  # the layer's device when the model spans several
            self._keys = self._keys[indices, ...]
            self._values = self._values[indices, ...]


def new_cache(num_layers: int) -> Cache:
    return Cache(layers=[ReservedLayer() for _ in range(num_layers)])


def reserve(cache: Cache, extra: int) -> None:
    for layer in cache.layers:
        if isinstance(layer, ReservedLayer):
            layer.reserve(extra)
