"""Reference paths: each intervention by its plain definition, on the model's own `generate` (batch 1).

The fast paths (`surgery.swap.swap_sweep`, `surgery.ablation.ablation_sweep`, `surgery.attention`)
run the decoder layer by layer through `DecoderStack`, with shared prefixes, batched variants and a
cache of their own. The functions here share none of that: they call the Hugging Face model as a
user would (`model(...)`, `model.generate(...)`, one prompt at a time) and put the intervention in
with forward hooks or by editing the returned cache by hand. Tests and benchmarks compare the fast
paths against them; nothing in a probe run calls them.

  generate_greedy         plain greedy `model.generate`, the baseline every path must reproduce
  zero_ablation           hook: decoder layers return their input (METHOD.md 1b)
  ablation_generate_naive one `generate` per ablated layer
  visual_kv_swap          hook: the prefill sees the source's visual keys/values in some layers
                          (METHOD.md 1a, "in attention")
  swap_generate_naive     one `generate` per swap layer, `from` mode, hooked into attention
  cache_edit_swap_generate `generate` on a cache whose visual entries at the given layers were
                          overwritten by hand (METHOD.md 1a, the cache view; what `only` and
                          `window` are defined by)
  swap_reinsert_generate_naive  the authors' swapper (`swap_decode=reinsert`): the in-attention swap
                          in the prefill, then a greedy loop in which every swapped layer appends
                          the source's visual keys/values to its cache again at every step
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch

from surgery.ablation import AblationOutcome
from surgery.arch import Layout
from surgery.prompts import EncodedPrompt
from surgery.swap import SwapOutcome, SwapPair, pair_error


def model_inputs(prompt: EncodedPrompt, device: Any, stop: int | None = None) -> dict[str, Any]:
    """`model(**...)` / `model.generate(**...)` keyword arguments for columns [0, stop) of one prompt."""
    stop = prompt.length if stop is None else stop
    inputs = {
        "input_ids": prompt.input_ids[None, :stop].to(device),
        "attention_mask": torch.ones(1, stop, dtype=torch.long, device=device),
    }
    if prompt.pixel_values is not None:
        inputs["pixel_values"] = prompt.pixel_values.to(device)
    if prompt.image_grid_thw is not None:  # M-RoPE models: image grids and which tokens are visual
        inputs["image_grid_thw"] = prompt.image_grid_thw.to(device)
        inputs["mm_token_type_ids"] = prompt.visual_mask.long()[None, :stop].to(device)
    return inputs


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def _new_tokens(out: torch.Tensor, prompt_length: int, eos_token_ids: Sequence[int]) -> list[int]:
    new = out[0, prompt_length:].tolist()
    eos = set(eos_token_ids)
    for k, token in enumerate(new):
        if token in eos:
            return new[:k]
    return new


@torch.no_grad()
def generate_greedy(model: Any, prompt: EncodedPrompt, *, max_new_tokens: int, eos_token_ids: Sequence[int]) -> list[int]:
    """`model.generate`, greedy, batch 1; returns the new tokens without the final EOS."""
    out = model.generate(
        **model_inputs(prompt, _device(model)),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=list(eos_token_ids),
        pad_token_id=list(eos_token_ids)[0],
    )
    return _new_tokens(out, prompt.length, eos_token_ids)


# -- zero ablation (METHOD.md 1b) -----------------------------------------------------------------


@contextlib.contextmanager
def zero_ablation(model: Any, layout: Layout, layers: Sequence[int]) -> Iterator[None]:
    """Inside the block, the given decoder layers return their input unchanged."""

    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        if isinstance(output, tuple):
            return (hidden, *output[1:])
        return hidden

    handles = []
    try:
        decoder_layers = layout.decoder_layers(model)
        for i in layers:
            handles.append(decoder_layers[i].register_forward_hook(hook, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


def ablation_generate_naive(
    model: Any,
    layout: Layout,
    prompt: EncodedPrompt,
    layers: Sequence[int],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
) -> AblationOutcome:
    """One `model.generate` per ablated layer, batch 1."""
    by_layer = {}
    for layer in layers:
        with zero_ablation(model, layout, [layer]):
            by_layer[layer] = generate_greedy(model, prompt, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
    baseline = generate_greedy(model, prompt, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
    return AblationOutcome(baseline=baseline, by_layer=by_layer)


# -- visual-token swap, in attention (METHOD.md 1a) -----------------------------------------------


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
        model(**model_inputs(prompt, _device(model)))
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


def swap_generate_naive(
    model: Any,
    layout: Layout,
    pair: SwapPair,
    layers: Sequence[int],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
) -> SwapOutcome:
    """Per layer, one `model.generate` with the swap hooked into attention (`from` mode)."""
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


# -- visual-token swap, the cache view (METHOD.md 1a, `only` / `window`) ---------------------------


@torch.no_grad()
def cache_edit_swap_generate(
    model: Any,
    pair: SwapPair,
    swapped_layers: Sequence[int],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
) -> list[int]:
    """Greedy tokens of the target prompt when its cache holds the source's visual entries at `swapped_layers`.

    The target's chunk 1 (up to the end of its visual tokens) and the source's run through the plain
    model with `use_cache`; the source's cached keys/values at the visual columns are copied over the
    target's in exactly `swapped_layers`; `model.generate` then continues from that cache with the
    rest of the prompt (the question) and decodes. With no layer swapped this is `generate_greedy`.
    """
    err = pair_error(pair)
    if err is not None:
        raise ValueError(err)
    target, source = pair.target, pair.source
    device = _device(model)
    boundary = target.visual_span[1]
    source_cache = model(**model_inputs(source, device, boundary), use_cache=True).past_key_values
    # The target last: the model keeps the M-RoPE offset of its latest prefill for the continuation.
    target_cache = model(**model_inputs(target, device, boundary), use_cache=True).past_key_values
    columns = torch.nonzero(target.visual_mask[:boundary]).flatten().to(device)
    for i in swapped_layers:
        target_cache.layers[i].keys[:, :, columns] = source_cache.layers[i].keys[:, :, columns]
        target_cache.layers[i].values[:, :, columns] = source_cache.layers[i].values[:, :, columns]
    # The images are in the cache already: the continuation gets the token ids only.
    text_only = {k: v for k, v in model_inputs(target, device).items() if k not in ("pixel_values", "image_grid_thw")}
    out = model.generate(
        **text_only,
        past_key_values=target_cache,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=list(eos_token_ids),
        pad_token_id=list(eos_token_ids)[0],
    )
    return _new_tokens(out, target.length, eos_token_ids)


# -- the authors' decode-time re-insertion (`swap_decode=reinsert`) -------------------------------


@contextlib.contextmanager
def reinsert_source_at_decode(
    model: Any, layout: Layout, cache: Any, copies: dict[int, tuple[torch.Tensor, torch.Tensor]], layers: Sequence[int]
) -> Iterator[None]:
    """Inside the block, a one-token forward makes each layer in `layers` store its new key/value
    followed by `copies[layer]` (the source's cached visual keys/values), as the authors' attention
    forward does when its swap runs on a decode step; and one-token queries attend to every cached
    column (their flash-attention path gets no mask for one unpadded row)."""

    def make_update(original, keys: torch.Tensor, values: torch.Tensor):
        def update(key_states, value_states, *args, **kwargs):
            if key_states.shape[-2] == 1:
                key_states = torch.cat([key_states, keys.to(key_states.dtype)], dim=-2)
                value_states = torch.cat([value_states, values.to(value_states.dtype)], dim=-2)
            return original(key_states, value_states, *args, **kwargs)

        return update

    def unmask(module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if hidden is not None and hidden.shape[1] == 1:
            kwargs["attention_mask"] = None
            return args, kwargs
        return None

    handles = [layout.layer_attention(layer).register_forward_pre_hook(unmask, with_kwargs=True)
               for layer in layout.decoder_layers(model)]
    patched = [cache.layers[i] for i in layers]
    try:
        for i, cache_layer in zip(layers, patched):
            cache_layer.update = make_update(cache_layer.update, *copies[i])
        yield
    finally:
        for cache_layer in patched:
            cache_layer.__dict__.pop("update", None)
        for h in handles:
            h.remove()


@torch.no_grad()
def swap_reinsert_generate_naive(
    model: Any,
    layout: Layout,
    pair: SwapPair,
    layers: Sequence[int],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
) -> SwapOutcome:
    """Per layer L (`from` mode), batch 1: the prefill with the swap hooked into attention at layers >= L,
    then a plain greedy loop (`model(...)` per token, explicit M-RoPE positions) in which those layers
    re-insert the source's visual keys/values at every step (`reinsert_source_at_decode`)."""
    err = pair_error(pair)
    if err is not None:
        return SwapOutcome(baseline=None, by_layer={}, error=err)
    device = _device(model)
    source_kv = capture_visual_kv(model, layout, pair.source)
    source_cache = model(**model_inputs(pair.source, device), use_cache=True).past_key_values
    columns = torch.nonzero(pair.source.visual_mask).flatten().to(device)
    n = len(layout.decoder_layers(model))
    copies = {i: (source_cache.layers[i].keys[:, :, columns].clone(), source_cache.layers[i].values[:, :, columns].clone())
              for i in range(n)}
    eos = set(eos_token_ids)
    by_layer = {}
    for layer in layers:
        swapped = list(range(layer, n))
        with visual_kv_swap(model, layout, source_kv, pair.target.visual_mask, swapped):
            out = model(**model_inputs(pair.target, device), use_cache=True)
        cache, tokens = out.past_key_values, []
        logits = out.logits[0, -1]
        with reinsert_source_at_decode(model, layout, cache, copies, swapped):
            for step in range(max_new_tokens):
                token = int(logits.argmax())
                if token in eos:
                    break
                tokens.append(token)
                if step == max_new_tokens - 1:
                    break
                positions = (pair.target.next_position + step).to(device)[:, None, None]  # (P, 1, 1)
                if layout.facts.rope != "mrope":  # 1-D positions: the model wants (batch, length)
                    positions = positions[0]
                out = model(input_ids=torch.tensor([[token]], device=device), past_key_values=cache,
                            position_ids=positions, use_cache=True)
                logits = out.logits[0, -1]
        by_layer[layer] = tokens
    baseline = generate_greedy(model, pair.target, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
    return SwapOutcome(baseline=baseline, by_layer=by_layer)
