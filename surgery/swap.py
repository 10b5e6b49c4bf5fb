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

Reference path (`swap_generate_naive`): the definition itself, with forward hooks on the key/value
projections of the swapped layers that substitute the source's visual keys/values inside attention
during the prefill, and an ordinary `model.generate` per layer and pair (batch 1). For `from` both
paths agree exactly; for `only` and `window` the definition is the cache view (METHOD.md), which only
the fast path implements.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import torch
from pydantic import BaseModel, Field

from surgery.arch import Layout
from surgery.prompts import EncodedPrompt
from surgery.stack import DecoderStack, Rows

SwapMode = Literal["from", "only", "window"]  # layers >= L, L only, L .. L+window-1


class SwapSpec(BaseModel):
    """Which layers a swap at layer L touches."""

    mode: SwapMode = "from"
    window: int = Field(1, ge=1)

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
    stack.run_layers(chunk1.embeds, chunk1.positions, chunk1.mask, cache1)

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
        replace = (row_visual & uses_source[:, None])[:, None, :, None]  # (rows, 1, W1, 1)
        kv = cache1.layers[layer_index]
        keys = torch.where(replace, kv.keys[row_pair + g], kv.keys[row_pair])
        values = torch.where(replace, kv.values[row_pair + g], kv.values[row_pair])
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
    tokens = stack.greedy_decode(rows, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
    return [{variants[r]: tokens[k * R + r] for r in range(R)} for k in range(g)]


# ---------------------------------------------------------------------------------------------
# Reference path: the definition, with hooks and model.generate (batch 1)
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def capture_visual_kv(model: Any, layout: Layout, prompt: EncodedPrompt) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per decoder layer, the key / value projection outputs at the visual positions of `prompt`."""
    captured: dict[int, list[torch.Tensor]] = {}
    visual = prompt.visual_mask

    def make_hook(layer_index: int):
        def hook(module, args, output):
            captured.setdefault(layer_index, []).append(output[0, visual.to(output.device)].clone())

        return hook

    handles = []
    try:
        for i, layer in enumerate(layout.decoder_layers(model)):
            for proj in layout.key_value_projections(layer):
                handles.append(proj.register_forward_hook(make_hook(i)))
        device = next(model.parameters()).device
        model(**_model_inputs(prompt, device))
    finally:
        for h in handles:
            h.remove()
    return {i: (kv[0], kv[1]) for i, kv in captured.items()}


@contextlib.contextmanager
def visual_kv_swap(
    model: Any,
    layout: Layout,
    source_kv: dict[int, tuple[torch.Tensor, torch.Tensor]],
    visual_mask: torch.Tensor,
    layers: Sequence[int],
) -> Iterator[None]:
    """Inside the block, the prefill of a prompt sees `source_kv` at its visual positions in `layers`."""

    def make_hook(replacement: torch.Tensor):
        def hook(module, args, output):
            if output.shape[1] != visual_mask.shape[0]:
                return None  # a decode step (or another prompt): leave it alone
            output = output.clone()
            output[:, visual_mask.to(output.device)] = replacement.to(output.dtype)
            return output

        return hook

    handles = []
    try:
        decoder_layers = layout.decoder_layers(model)
        for i in layers:
            k_proj, v_proj = layout.key_value_projections(decoder_layers[i])
            handles.append(k_proj.register_forward_hook(make_hook(source_kv[i][0])))
            handles.append(v_proj.register_forward_hook(make_hook(source_kv[i][1])))
        yield
    finally:
        for h in handles:
            h.remove()


def _model_inputs(prompt: EncodedPrompt, device: Any) -> dict[str, Any]:
    inputs = {
        "input_ids": prompt.input_ids[None].to(device),
        "attention_mask": torch.ones(1, prompt.length, dtype=torch.long, device=device),
    }
    if prompt.pixel_values is not None:
        inputs["mm_token_type_ids"] = prompt.visual_mask.long()[None].to(device)
        inputs["pixel_values"] = prompt.pixel_values.to(device)
        inputs["image_grid_thw"] = prompt.image_grid_thw.to(device)
    return inputs


@torch.no_grad()
def generate_greedy(model: Any, prompt: EncodedPrompt, *, max_new_tokens: int, eos_token_ids: Sequence[int]) -> list[int]:
    """`model.generate`, greedy, batch 1; returns the new tokens without the final EOS."""
    device = next(model.parameters()).device
    out = model.generate(
        **_model_inputs(prompt, device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=list(eos_token_ids),
        pad_token_id=list(eos_token_ids)[0],
    )
    new = out[0, prompt.length :].tolist()
    eos = set(eos_token_ids)
    for k, token in enumerate(new):
        if token in eos:
            return new[:k]
    return new


def swap_generate_naive(
    model: Any,
    layout: Layout,
    pair: SwapPair,
    layers: Sequence[int],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
) -> SwapOutcome:
    """The old way: per layer, one `model.generate` with the swap hooked into attention (`from` mode)."""
    err = pair_error(pair)
    if err is not None:
        return SwapOutcome(baseline=None, by_layer={}, error=err)
    source_kv = capture_visual_kv(model, layout, pair.source)
    n = len(layout.decoder_layers(model))
    by_layer = {}
    for layer in layers:
        with visual_kv_swap(model, layout, source_kv, pair.target.visual_mask, range(layer, n)):
            by_layer[layer] = generate_greedy(model, pair.target, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
    baseline = generate_greedy(model, pair.target, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
    return SwapOutcome(baseline=baseline, by_layer=by_layer)
