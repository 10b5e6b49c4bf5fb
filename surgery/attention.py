"""Attention shift (METHOD.md section 5): how much the generated tokens look at the image, per layer.

Which queries count: every generated token (the answer's tokens, EOS excluded), at the forward step
that takes it as input, attends over all cached columns (the prompt, the tokens before it, itself).
Its mass on the prompt's visual-token columns, per layer, averaged over heads and then over the
generated tokens, is the per-layer value. The last token of a row that stops at `max_new_tokens`
counts too: the decode runs one extra forward for it (only here; plain decoding has no use for it).
The query of the last prompt token (which predicts the first answer token) does not count.

Prompts decode as one batch (finished rows leave it); the weights come from a forward hook on each
layer's attention, with the model switched to eager attention for the decode steps only (other
implementations do not return weights; the prefill keeps the model's own, faster one).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from surgery.prompts import EncodedPrompt
from surgery.stack import DecoderStack


@dataclass
class AttentionOutcome:
    tokens: list[int]
    visual_mass: list[float]  # per decoder layer: mean over heads and generated tokens


def attention_sweep(
    stack: DecoderStack,
    prompts: Sequence[EncodedPrompt],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    max_batch_rows: int = 64,
    progress: Any = None,
) -> tuple[list[AttentionOutcome], list[AttentionRecord]]:
    """Greedy generation with the per-layer visual attention mass of the generated tokens."""
    outcomes: list[AttentionOutcome] = []
    records: list[AttentionRecord] = []
    for start in range(0, len(prompts), max_batch_rows):
        group = prompts[start : start + max_batch_rows]
        # The prefill runs with the model's own attention; only decode steps need weights (eager).
        rows = stack.prefill(group)
        with capture_decode_attention(stack) as record:
            tokens = stack.greedy_decode(
                rows, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids, feed_last_token=True
            )
        for slot in range(len(group)):
            outcomes.append(AttentionOutcome(tokens=tokens[slot], visual_mass=record.mean_visual_mass(slot)))
        records.append(record)
        if progress is not None:
            progress.update(len(group))
    return outcomes, records


@dataclass
class AttentionRecord:
    """Per output slot and layer: summed attention mass on visual columns, and the step count."""

    visual_mass: dict[int, torch.Tensor] = field(default_factory=dict)  # slot -> (layers,) sum over heads & steps
    steps: dict[int, int] = field(default_factory=dict)  # slot -> decode steps (queries) recorded
    heads: int = 0

    def mean_visual_mass(self, slot: int) -> list[float]:
        n = self.steps.get(slot, 0) * self.heads
        if n == 0:
            return []
        return (self.visual_mass[slot] / n).tolist()


@contextlib.contextmanager
def capture_decode_attention(stack: DecoderStack) -> Iterator[AttentionRecord]:
    """Record, for every decode step (one query per row), the attention each layer puts on visual columns.

    Needs attention weights, so the model runs with eager attention inside the block (and goes back
    to its own implementation afterwards). Rows map to output slots, and columns to visual / text,
    through the batch being decoded (`stack.active_rows`).
    """
    model = stack.model
    previous = model.config._attn_implementation
    record = AttentionRecord()
    handles = []

    def make_hook(layer_index: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, tuple) else None
            if weights is None or weights.shape[2] != 1:
                return  # prefill (many queries) or an implementation without weights
            rows = stack.active_rows
            w = weights[:, :, 0, :].float()  # (B, heads, L)
            vis_mass = (w * rows.visual.to(w.device)[:, None, :]).sum(-1)  # (B, heads)
            record.heads = w.shape[1]
            per_row = vis_mass.sum(-1).tolist()  # one device sync per hook call, not per row
            for b, slot in enumerate(rows.slots):
                if slot not in record.visual_mass:
                    record.visual_mass[slot] = torch.zeros(stack.num_layers, dtype=torch.float64)
                record.visual_mass[slot][layer_index] += per_row[b]
                if layer_index == 0:
                    record.steps[slot] = record.steps.get(slot, 0) + 1

        return hook

    try:
        if previous != "eager":
            model.set_attn_implementation("eager")
        for i, layer in enumerate(stack.layers):
            attention = stack.layout.layer_attention(layer)
            handles.append(attention.register_forward_hook(make_hook(i)))
        yield record
    finally:
        for h in handles:
            h.remove()
        if previous != "eager":
            model.set_attn_implementation(previous)
