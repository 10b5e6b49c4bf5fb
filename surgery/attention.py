"""Attention shift (METHOD.md section 5): how much the generated tokens look at the image, per layer.

For every decode step, each generated token's query attends over the cached columns; the mass it
puts on the visual-token columns, averaged over heads and steps, is the per-layer value. Prompts
decode as one batch (finished rows leave it); the weights come from a forward hook on each layer's
attention, with the model switched to eager attention for the decode steps only (other
implementations do not return weights; the prefill keeps the model's own, faster one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from surgery.prompts import EncodedPrompt
from surgery.stack import AttentionRecord, DecoderStack, capture_decode_attention


@dataclass
class AttentionOutcome:
    tokens: list[int]
    visual_mass: list[float]  # per decoder layer: mean over heads and decode steps


def attention_sweep(
    stack: DecoderStack,
    prompts: Sequence[EncodedPrompt],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    max_batch_rows: int = 64,
    keep_steps: bool = False,
    progress: Any = None,
) -> tuple[list[AttentionOutcome], list[AttentionRecord]]:
    """Greedy generation with the per-layer visual attention mass of the generated tokens."""
    outcomes: list[AttentionOutcome] = []
    records: list[AttentionRecord] = []
    for start in range(0, len(prompts), max_batch_rows):
        group = prompts[start : start + max_batch_rows]
        # The prefill runs with the model's own attention; only decode steps need weights (eager).
        rows = stack.prefill(group)
        with capture_decode_attention(stack, keep_steps=keep_steps) as record:
            tokens = stack.greedy_decode(rows, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
        for slot in range(len(group)):
            outcomes.append(AttentionOutcome(tokens=tokens[slot], visual_mass=record.mean_visual_mass(slot)))
        records.append(record)
        if progress is not None:
            progress.update(len(group))
    return outcomes, records
