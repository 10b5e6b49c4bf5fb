"""Zero ablation (METHOD.md 1b): which layers the reasoning needs.

Ablating decoder layer k means the layer returns its input unchanged: attention and MLP both
contribute zero to the residual stream, exactly as if the layer were deleted.

Fast path (`ablation_sweep`): every prompt with every ablated layer (plus the unablated baseline) is
one row, and rows of several prompts decode as one batch with a per-row mask of the layer to skip;
finished rows leave the batch. The prefill shares the work before the intervention: the rows of a
prompt are identical up to their ablated layer, so it runs one trunk per prompt and forks the row
that ablates layer k off the trunk at layer k (about half the prefill work of running every row
through every layer).

Reference path (`surgery.reference.ablation_generate_naive`): a forward hook makes the layer return
its input, and an ordinary `model.generate` runs per layer and prompt (batch 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from surgery.prompts import EncodedPrompt
from surgery.stack import DecoderStack, Rows


@dataclass
class AblationOutcome:
    """Generated token ids: the unablated baseline and one list per ablated layer."""

    baseline: list[int] | None
    by_layer: dict[int, list[int]]


def ablation_sweep(
    stack: DecoderStack,
    prompts: Sequence[EncodedPrompt],
    layers: Sequence[int],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    max_batch_rows: int = 64,
    include_baseline: bool = True,
    share_prefix: bool = True,
    progress: Any = None,
) -> list[AblationOutcome]:
    """Ablate each layer in `layers` for every prompt; one AblationOutcome per prompt."""
    layers = sorted(set(layers))
    variants: list[int | None] = ([None] if include_baseline else []) + layers  # None = unablated
    per_group = max(1, max_batch_rows // len(variants))
    outcomes: list[AblationOutcome] = []
    for start in range(0, len(prompts), per_group):
        group = prompts[start : start + per_group]
        prefill = _prefill_shared if share_prefix else _prefill_rowwise
        rows = prefill(stack, group, variants)
        tokens = stack.greedy_decode(rows, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
        R = len(variants)
        for k in range(len(group)):
            row = {variants[r]: tokens[k * R + r] for r in range(R)}
            outcomes.append(
                AblationOutcome(
                    baseline=row[None] if include_baseline else None,
                    by_layer={layer: row[layer] for layer in layers},
                )
            )
        if progress is not None:
            progress.update(len(group))
    return outcomes


def _skip_masks(variants: Sequence[int | None], g: int, device: Any) -> dict[int, torch.Tensor]:
    """layer -> (g*R,) rows that skip it; row order is (prompt, variant)."""
    return {
        v: torch.tensor([u == v for u in variants] * g, device=device) for v in variants if v is not None
    }


def _prefill_rowwise(stack: DecoderStack, prompts: Sequence[EncodedPrompt], variants: Sequence[int | None]) -> Rows:
    """Every (prompt, variant) row through every layer, skipping its own ablated layer."""
    g, R = len(prompts), len(variants)
    embeds = stack.prompt_embeddings(prompts)
    row_prompt = [i for i in range(g) for _ in range(R)]
    chunk = stack.chunk([prompts[i] for i in row_prompt], [embeds[i] for i in row_prompt], [(0, prompts[i].length) for i in row_prompt])
    return stack.extend(None, chunk, skip=_skip_masks(variants, g, stack.device))


def _prefill_shared(stack: DecoderStack, prompts: Sequence[EncodedPrompt], variants: Sequence[int | None]) -> Rows:
    """Prefill as a tree: one trunk per prompt; the row ablating layer k forks off at layer k."""
    g, R = len(prompts), len(variants)
    embeds = stack.prompt_embeddings(prompts)
    chunk = stack.chunk(prompts, embeds, [(0, p.length) for p in prompts])
    ablated = [v for v in variants if v is not None]

    branches: list[int] = []  # ablated layers forked so far; block b+1 of the batch holds branch b
    hidden = chunk.embeds  # (g * (1 + len(branches)), W, H): trunk first, then each branch
    per_layer_kv: list[tuple[torch.Tensor, torch.Tensor, list[int]]] = []
    for j in range(stack.num_layers):
        if j in ablated:
            # The row ablating j leaves layer j's input unchanged: fork it off the trunk here.
            branches.append(j)
            hidden = torch.cat([hidden, hidden[:g]], dim=0)
        runs = [None] + [b for b in branches if b != j]  # blocks that compute layer j
        blocks = [None] + branches
        take = torch.cat([torch.arange(g) + g * blocks.index(b) for b in runs]).to(stack.device)
        n_blocks = len(runs)
        cache = stack.new_cache()
        out = stack.run_layers(
            hidden[take],
            chunk.positions.repeat(1, n_blocks, 1),
            chunk.mask.repeat(n_blocks, 1),
            cache,
            layers=[j],
        )
        hidden = hidden.clone()
        hidden[take] = out
        kv = cache.layers[j]
        per_layer_kv.append((kv.keys, kv.values, runs))

    # Final rows in (prompt, variant) order. A row's layer-j cache comes from its own branch if it
    # forked before j, else from the trunk (identical up to its fork; for j == its own layer the
    # entries are never read, since the layer's output is discarded).
    cache = stack.new_cache()
    for j, (keys, values, runs) in enumerate(per_layer_kv):
        index = []
        for i in range(g):
            for v in variants:
                block = runs.index(v) if (v is not None and v < j) else 0
                index.append(i + g * block)
        index_t = torch.tensor(index, device=stack.device)
        cache.update(keys[index_t], values[index_t], j)
    final_index = []
    blocks = [None] + branches
    for i in range(g):
        for v in variants:
            final_index.append(i + g * blocks.index(v))
    final_t = torch.tensor(final_index, device=stack.device)
    row_prompt = torch.arange(g, device=stack.device).repeat_interleave(R)
    return Rows(
        cache=cache,
        attention_mask=chunk.mask[row_prompt],
        visual=chunk.visual[row_prompt],
        next_positions=chunk.positions[:, row_prompt, -1] + 1,
        logits=stack.next_token_logits(hidden[final_t]),
        slots=list(range(g * R)),
        skip=_skip_masks(variants, g, stack.device),
    )
