"""Visual-token swapping (METHOD.md 1a): which layers read the image, and for what.

A probe item is a pair: the target prompt (target image + question) and the source prompt (source
image + the same question). Swapping at layer L replaces, during the prefill only, the target's
keys/values at the visual-token positions with the source's at layers >= L (`from`, the default),
at layer L only (`only`), or at layers L .. L+window-1 (`window`). Decoding then proceeds normally.

Fast path (`swap_sweep`), as METHOD.md describes it: the visual tokens come before the question, so
the target is prefilled in two chunks. Chunk 1 (everything up to the end of the visual tokens) and
the source's chunk 1 run once per pair, for all layers; for every variant the cache rows are copied
from the target and the visual columns of the swapped layers overwritten with the source's; then
the question (chunk 2) and the decode run for all variants of several pairs as one batch, finished
rows leaving the batch.

Reference paths (`surgery.reference`): `swap_generate_naive` hooks the source's visual keys/values
into attention during the prefill (`from`, the definition), and `cache_edit_swap_generate` edits the
cache of a plain `model.generate` by hand at exactly the swapped layers (the cache view, which
defines `only` and `window`). The fast path agrees with both token for token.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import torch
from pydantic import BaseModel, Field

from surgery.errors import FrankensteinError
from surgery.prompts import EncodedPrompt
from surgery.stack import DecoderStack, Rows

SwapMode = Literal["from", "only", "window"]  # layers >= L, L only, L .. L+window-1
SwapDecode = Literal["prefill", "reinsert"]  # swap in the prefill only (the method), or re-insert at every step too


class SwapSpec(BaseModel):
    """Which layers a swap at layer L touches."""

    mode: SwapMode = "from"
    window: int = Field(1, ge=1)
    decode: SwapDecode = "prefill"

    def swapped_layers(self, layer: int, num_layers: int) -> list[int]:
        if self.mode == "from":
            return list(range(layer, num_layers))
        if self.mode == "only":
            return [layer]
        return list(range(layer, min(num_layers, layer + self.window)))


@dataclass
class SwapPair:
    target: EncodedPrompt
    source: EncodedPrompt


@dataclass
class SwapOutcome:
    """Generated token ids: the unswapped baseline and one list per requested layer."""

    baseline: list[int] | None
    by_layer: dict[int, list[int]]
    error: str | None = None


def pair_error(pair: SwapPair) -> str | None:
    """Why a pair cannot be swapped, or None. The two prompts must differ only in pixel content."""
    t, s = pair.target, pair.source
    if t.num_visual == 0:
        return "the target prompt has no image"
    if t.num_visual != s.num_visual:
        return f"target and source give different numbers of visual tokens ({t.num_visual} vs {s.num_visual})"
    if t.length != s.length or not torch.equal(t.input_ids, s.input_ids):
        return "target and source prompts differ in their text; a swap pair shares one question"
    if not torch.equal(t.positions, s.positions):
        return "target and source images have different grids (sizes); a swap pair needs equal-size images"
    return None


def swap_sweep(
    stack: DecoderStack,
    pairs: Sequence[SwapPair],
    layers: Sequence[int],
    spec: SwapSpec = SwapSpec(),
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    max_batch_rows: int = 64,
    include_baseline: bool = True,
    progress: Any = None,
) -> list[SwapOutcome]:
    """Swap every pair at every layer in `layers`; returns one SwapOutcome per pair."""
    layers = list(layers)
    outcomes: list[SwapOutcome | None] = [None] * len(pairs)
    valid = []
    for i, pair in enumerate(pairs):
        err = pair_error(pair)
        if err is None:
            valid.append(i)
        else:
            outcomes[i] = SwapOutcome(baseline=None, by_layer={}, error=err)
    variants: list[int | None] = ([None] if include_baseline else []) + layers  # None = unswapped
    per_group = max(1, max_batch_rows // max(1, len(variants)))
    for start in range(0, len(valid), per_group):
        group = valid[start : start + per_group]
        tokens = _swap_group(stack, [pairs[i] for i in group], variants, spec, max_new_tokens, eos_token_ids)
        for k, i in enumerate(group):
            row = tokens[k]
            outcomes[i] = SwapOutcome(
                baseline=row[None] if include_baseline else None,
                by_layer={layer: row[layer] for layer in layers},
            )
        if progress is not None:
            progress.update(len(group))
    return outcomes  # type: ignore[return-value]


def _swap_group(
    stack: DecoderStack,
    pairs: Sequence[SwapPair],
    variants: Sequence[int | None],
    spec: SwapSpec,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
) -> list[dict[int | None, list[int]]]:
    g, R = len(pairs), len(variants)
    targets, sources = [p.target for p in pairs], [p.source for p in pairs]
    embeds = stack.prompt_embeddings(targets + sources)  # one vision-tower call for all images
    boundary = [t.visual_span[1] for t in targets]  # chunk 1 = [0, end of visual tokens)

    # Chunk 1, shared by every variant: targets in rows 0..g-1, sources in rows g..2g-1.
    chunk1 = stack.chunk(targets + sources, embeds, [(0, b) for b in boundary] * 2)
    cache1 = stack.new_cache()
    stack.run_layers(chunk1.embeds, chunk1.positions, chunk1.mask, cache1, injection=chunk1.injection)

    # One row per (pair, variant): the target's cache, with the visual columns of the swapped
    # layers taken from the source. Target and source rows have identical padding and columns.
    row_pair = torch.arange(g, device=stack.device).repeat_interleave(R)
    row_visual = chunk1.visual[row_pair]  # (g*R, W1)
    cache = stack.new_cache()
    for layer_index in range(stack.num_layers):
        uses_source = torch.tensor(
            [v is not None and layer_index in spec.swapped_layers(v, stack.num_layers) for v in variants] * g,
            device=stack.device,
        )
        kv = cache1.layers[layer_index]
        where = kv.keys.device  # the layer's own device when the model is dispatched over several
        replace = (row_visual & uses_source[:, None])[:, None, :, None].to(where)  # (rows, 1, W1, 1)
        source_rows, target_rows = (row_pair + g).to(where), row_pair.to(where)
        keys = torch.where(replace, kv.keys[source_rows], kv.keys[target_rows])
        values = torch.where(replace, kv.values[source_rows], kv.values[target_rows])
        cache.update(keys, values, layer_index)
    del cache1

    rows = Rows(
        cache=cache,
        attention_mask=chunk1.mask[row_pair],
        visual=row_visual,
        next_positions=chunk1.positions[:, row_pair, -1] + 1,
        logits=torch.empty(0),
        slots=list(range(g * R)),
    )
    # Chunk 2 (the question and the assistant header) and the decode, for all variants at once.
    repeated = [targets[i] for i in row_pair.tolist()]
    chunk2 = stack.chunk(repeated, [embeds[i] for i in row_pair.tolist()], [(boundary[i], targets[i].length) for i in row_pair.tolist()])
    rows = stack.extend(rows, chunk2)
    with _reinsertion_bias(stack, rows, variants, spec) if spec.decode == "reinsert" else contextlib.nullcontext():
        tokens = stack.greedy_decode(rows, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
    return [{variants[r]: tokens[k * R + r] for r in range(R)} for k in range(g)]


@contextlib.contextmanager
def _reinsertion_bias(stack: DecoderStack, rows: Rows, variants: Sequence[int | None], spec: SwapSpec) -> Iterator[None]:
    """During the decode of `rows`: at decode step k (k = 1 for the first decoded token's forward), the
    visual columns of every swapped layer get log(k + 1) added to their attention scores, i.e. the
    weight of k + 1 copies of the source's visual keys (module docstring). Rows are (pair, variant)
    in slot order, `len(variants)` slots per pair; finished rows leave the batch, and
    `stack.active_rows` says which remain.
    """
    R, start = len(variants), rows.attention_mask.shape[1]
    if stack.model.config._attn_implementation not in ("eager", "sdpa"):
        raise FrankensteinError(
            f"swap_decode=reinsert needs eager or sdpa attention (an additive mask), not {stack.model.config._attn_implementation}"
        )

    def make_hook(layer_index: int):
        swaps = torch.tensor([v is not None and layer_index in spec.swapped_layers(v, stack.num_layers) for v in variants],
                             device=stack.device)

        def hook(module, args, kwargs):
            active = stack.active_rows
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            if active is None or hidden is None or hidden.shape[1] != 1:
                return None  # not a decode step of this batch
            step = active.attention_mask.shape[1] - start  # decode forwards so far, this one included
            rows_swap = swaps[torch.tensor(active.slots, device=stack.device) % R]  # (B,)
            if not bool(rows_swap.any()):
                return None  # no row swaps this layer: its mask stays as built
            bias = (active.visual & rows_swap[:, None]).to(hidden.dtype) * math.log(step + 1)  # (B, L)
            kwargs["attention_mask"] = _add_bias(kwargs.get("attention_mask"), bias, hidden.dtype)
            return args, kwargs

        return hook

    handles = [stack.layout.layer_attention(layer).register_forward_pre_hook(make_hook(i), with_kwargs=True)
               for i, layer in enumerate(stack.layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _add_bias(mask: torch.Tensor | None, bias: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An additive (B, 1, 1, L) attention mask: `mask` (None, boolean or additive) plus `bias` (B, L)."""
    if mask is None:
        base = torch.zeros(bias.shape[0], 1, 1, bias.shape[1], dtype=dtype, device=bias.device)
    elif mask.dtype == torch.bool:
        base = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    else:
        base = mask
    return base + bias[:, None, None, :].to(base.dtype)
