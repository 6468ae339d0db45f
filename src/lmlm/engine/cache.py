"""The KV cache the engine keeps over a batch: preallocated buffers per layer, and a ``CacheTrack`` that
feeds each row's new tokens left-padded, takes tokens fed on trial back out (``retract``), and drops
finished rows (``select``)."""

from __future__ import annotations

import inspect

import torch
from transformers.cache_utils import Cache, DynamicLayer


class BufferLayer(DynamicLayer):
    """A KV cache layer that writes each step into preallocated buffers (the stock DynamicLayer
    concatenates, copying the whole cache every step). The engine grows them before a step that would
    overflow (``reserve``), outside the forward, so that a compiled forward never branches on it.
    Defined once, so that a compiled forward sees the same class in every generate call."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def lazy_initialization(self, key_states, value_states):
        super().lazy_initialization(key_states, value_states)
        b, h, _, d = key_states.shape
        self.k_buffer = key_states.new_empty(b, h, self.capacity, d)
        self.v_buffer = value_states.new_empty(b, h, self.capacity, value_states.shape[-1])

    def reserve(self, columns: int):
        """Room for ``columns`` more positions; chunks of forced tokens can outgrow the first guess: double.
        A column always stays free: a write that fills the buffer exactly would make a compiled forward
        specialize on it, and recompile."""
        end = self.length + columns + 1
        if not self.is_initialized:
            self.capacity = max(self.capacity, end)
        elif end > self.k_buffer.shape[2]:
            grow = lambda buf: torch.cat([buf, buf.new_empty(*buf.shape[:2], max(end, 2 * buf.shape[2]) - buf.shape[2], buf.shape[3])], 2)  # noqa: E731
            self.k_buffer, self.v_buffer = grow(self.k_buffer), grow(self.v_buffer)

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self.k_buffer[:, :, self.length : end] = key_states
        self.v_buffer[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.k_buffer[:, :, :end], self.v_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices):
        if self.is_initialized:
            self.k_buffer, self.v_buffer = self.k_buffer[indices], self.v_buffer[indices]
            self.keys, self.values = self.k_buffer[:, :, : self.length], self.v_buffer[:, :, : self.length]


def make_cache(model, capacity: int) -> Cache:
    return Cache(layers=[BufferLayer(capacity) for _ in range(model.config.get_text_config().num_hidden_layers)])


def cache_keyword(model) -> str:
    """The forward keyword that takes the KV cache: transformers renamed ``past_key_values`` to ``cache``, and
    warns on the old name where it has."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class CacheTrack:
    """One model's KV cache over the active rows, fed in steps of each row's new tokens, left-padded to the
    longest. Tokens fed on trial that turn out wrong are retracted: masked out, and the row's position steps back."""

    def __init__(self, model, decode, pad: int, rows: int, capacity: int, device):
        self.model, self.decode, self.pad, self.device = model, decode, pad, device
        self.cache = make_cache(model, capacity)
        self.cache_keyword = cache_keyword(model)
        self.mask = torch.zeros(rows, 0, dtype=torch.long, device=device)
        self.next_pos = torch.zeros(rows, dtype=torch.long, device=device)

    def step(self, feeds: list[list[int]], last_positions: int = 1) -> torch.Tensor:
        """One forward over each row's new tokens; returns the logits of the last ``last_positions`` positions."""
        width = max(len(f) for f in feeds)
        ids = torch.tensor([[self.pad] * (width - len(f)) + f for f in feeds], device=self.device)
        new = torch.tensor([[0] * (width - len(f)) + [1] * len(f) for f in feeds], device=self.device)
        positions = self.next_pos[:, None] + (new.cumsum(-1) - 1).clamp(min=0)
        forward = self.model if self.mask.shape[1] == 0 else self.decode  # prompts run eager (see lmlm.engine.layout)
        self.mask = torch.cat([self.mask, new], dim=1)
        for layer in self.cache.layers:
            layer.reserve(width)
        out = forward(input_ids=ids, attention_mask=self.mask, position_ids=positions, **{self.cache_keyword: self.cache},
                      use_cache=True, logits_to_keep=last_positions)
        self.next_pos = self.next_pos + new.sum(-1)
        return out.logits

    def retract(self, b: int, count: int):
        """Take the last ``count`` tokens of batch row ``b`` back out of the cache."""
        self.mask[b, self.mask.shape[1] - count :] = 0
        self.next_pos[b] -= count

    def select(self, index: torch.Tensor):
        """Keep only the batch rows at ``index`` (finished rows leave the batch)."""
        self.cache.batch_select_indices(index)
        self.mask, self.next_pos = self.mask[index], self.next_pos[index]
