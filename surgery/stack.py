"""The decoder stack run layer by layer: the engine under every probe.

`DecoderStack` drives a loaded model's own modules (embeddings, vision tower, decoder layers, final
norm, lm_head — found through the architecture adapter) with explicit positions, explicit 2-D
attention masks and a `DynamicCache`, so a probe can
  * prefill a prompt in chunks and edit the cache in between (visual-token swap),
  * run a subset of layers on a subset of rows (shared prefixes),
  * skip a layer for some rows of a batch (zero ablation),
and `greedy_decode` decodes all rows as one batch; rows that finish leave the batch.

Batches are left-padded per chunk (padding may sit between two chunks of one row); pads are masked
out of attention and never change a position id.

What differs between model families reaches the engine as capabilities from the adapter, each
interpreted here once: 3-D M-RoPE or 1-D positions (`EncodedPrompt.positions` has 3 or 1 rows),
which processor outputs carry the images, and features added to the visual positions' hidden
states after the first K decoder layers (`Injection`; Qwen3-VL's DeepStack, each row its own).

A model dispatched by accelerate (`device_map`, layers on several devices, offloaded to CPU or
disk) runs as it is: every module's hook moves its inputs and loads offloaded weights, the cache of
each layer lives where that layer runs, and the engine's own tensors (masks, row indices, logits)
live on the embeddings' execution device and are moved to a layer's device where they meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from surgery.arch import Layout
from surgery.errors import FrankensteinError
from surgery.prompts import EncodedPrompt

PAD_POSITION = 0  # position id given to pads; masked out, so any value works


@dataclass
class Embedded:
    """One prompt's input embeddings (image features in place), and its injected features."""

    embeds: torch.Tensor  # (T, H)
    injected: torch.Tensor | None = None  # (K, number of visual tokens, H): added after decoder layers 0..K-1


@dataclass
class Injection:
    """Features added to the hidden states of a batch's visual columns after decoder layers 0..K-1.

    `features[k]` lists one vector per True entry of `visual`, in row-major order (each row's own
    image features, as the model's own forward adds them: `hidden[visual] += features[k]`).
    """

    visual: torch.Tensor  # (B, q) bool
    features: torch.Tensor  # (K, n, H)

    @property
    def num_layers(self) -> int:
        """K: features are added after decoder layers 0..K-1."""
        return self.features.shape[0]

    def after_layer(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """`hidden` (B, q, H) after decoder layer `layer`, with that layer's features added (a new tensor)."""
        if layer >= self.num_layers:
            return hidden
        mask = self.visual.to(hidden.device)
        hidden = hidden.clone()
        hidden[mask] = hidden[mask] + self.features[layer].to(hidden.device, hidden.dtype)
        return hidden

    def repeat(self, times: int) -> "Injection":
        """The same features for a batch that repeats these rows `times` times (block after block)."""
        return Injection(self.visual.repeat(times, 1), self.features.repeat(1, times, 1))


@dataclass
class Chunk:
    """Columns [start, stop) of each row's prompt, left-padded into one batch."""

    embeds: torch.Tensor  # (B, q, H)
    positions: torch.Tensor  # (P, B, q)
    mask: torch.Tensor  # (B, q) 1 = real token, 0 = pad
    visual: torch.Tensor  # (B, q) bool: visual token columns
    injection: Injection | None = None  # features added at the visual columns after the first layers


@dataclass
class Rows:
    """A batch in the middle of decoding: its cache and what the next step needs."""

    cache: Any  # DynamicCache
    attention_mask: torch.Tensor  # (B, L) over every cached column
    visual: torch.Tensor  # (B, L) bool: cached columns holding visual tokens
    next_positions: torch.Tensor  # (P, B)
    logits: torch.Tensor  # (B, V) predicting the next token
    slots: list[int]  # output slot of each row
    skip: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (B,) rows that skip it

    def select(self, keep: torch.Tensor) -> "Rows":
        idx = torch.nonzero(keep).flatten()
        self.cache.batch_select_indices(idx)
        return Rows(
            cache=self.cache,
            attention_mask=self.attention_mask[idx],
            visual=self.visual[idx],
            next_positions=self.next_positions[:, idx],
            logits=self.logits[idx],
            slots=[self.slots[i] for i in idx.tolist()],
            skip={k: v[idx] for k, v in self.skip.items()},
        )


class DecoderStack:
    def __init__(self, model: Any, layout: Layout):
        self.model = model
        self.layout = layout
        self.text_model = layout.text_model(model)
        self.layers = layout.decoder_layers(model)
        self.embed = layout.embed_tokens(model)
        self.norm = layout.final_norm(model)
        self.lm_head = layout.lm_head(model)
        self.config = self.text_model.config
        self.mrope = layout.facts.rope == "mrope"
        self.device, self.dtype = execution_device(self.embed), model.dtype
        self.active_rows: Rows | None = None  # the batch being decoded (read by attention capture)
        self.layer_types = getattr(self.config, "layer_types", None) or ["full_attention"] * self.num_layers
        if set(self.layer_types) != {"full_attention"}:
            raise FrankensteinError(
                f"{layout.model_type} checkpoint uses {sorted(set(self.layer_types))} layers; "
                "the surgery engine supports full-attention layers only"
            )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    # -- inputs --------------------------------------------------------------------------------
    @torch.no_grad()
    def prompt_embeddings(self, prompts: Sequence[EncodedPrompt]) -> list[Embedded]:
        """Input embeddings per prompt, image features in place, and injected features (one vision-tower call)."""
        embeds = [Embedded(self.embed(p.input_ids.to(self.device)).to(self.device)) for p in prompts]
        with_images = [i for i, p in enumerate(prompts) if p.pixel_values is not None]
        if not with_images:
            return embeds
        grids = [prompts[i].image_grid_thw for i in with_images]
        tokens, injected = self.layout.image_features(
            self.model,
            pixel_values=torch.cat([prompts[i].pixel_values for i in with_images]).to(self.device),
            image_grid_thw=torch.cat(grids).to(self.device) if all(g is not None for g in grids) else None,
        )
        counts = [prompts[i].num_visual for i in with_images]
        if sum(counts) != tokens.shape[0]:
            raise ValueError(f"{sum(counts)} visual tokens in the prompts but {tokens.shape[0]} image features")
        per_prompt = zip(tokens.split(counts), *(f.split(counts) for f in injected))
        for i, (feats, *extra) in zip(with_images, per_prompt):
            mask = prompts[i].visual_mask.to(self.device)
            e = embeds[i].embeds
            embeds[i] = Embedded(
                e.masked_scatter(mask[:, None], feats.to(self.device, e.dtype)),
                torch.stack(extra).to(self.device) if extra else None,
            )
        return embeds

    def chunk(
        self, prompts: Sequence[EncodedPrompt], embeds: Sequence[Embedded], spans: Sequence[tuple[int, int]]
    ) -> Chunk:
        """Columns spans[i] of prompt i for every row, left-padded to one width."""
        width = max(stop - start for start, stop in spans)
        B, H = len(prompts), embeds[0].embeds.shape[-1]
        P = prompts[0].positions.shape[0]
        out_embeds = torch.zeros(B, width, H, dtype=embeds[0].embeds.dtype, device=self.device)
        positions = torch.full((P, B, width), PAD_POSITION, dtype=torch.long, device=self.device)
        mask = torch.zeros(B, width, dtype=torch.long, device=self.device)
        visual = torch.zeros(B, width, dtype=torch.bool, device=self.device)
        injected = []  # per row, the injected features of its visual columns in this span
        for b, (p, e, (start, stop)) in enumerate(zip(prompts, embeds, spans)):
            n = stop - start
            if n == 0:
                continue
            out_embeds[b, width - n :] = e.embeds[start:stop]
            positions[:, b, width - n :] = p.positions[:, start:stop].to(self.device)
            mask[b, width - n :] = 1
            visual[b, width - n :] = p.visual_mask[start:stop].to(self.device)
            if e.injected is not None:
                before, inside = int(p.visual_mask[:start].sum()), int(p.visual_mask[start:stop].sum())
                injected.append(e.injected[:, before : before + inside])
        injection = Injection(visual, torch.cat(injected, dim=1)) if injected and bool(visual.any()) else None
        return Chunk(out_embeds, positions, mask, visual, injection)

    # -- layers --------------------------------------------------------------------------------
    def new_cache(self) -> Any:
        from surgery.cache import new_cache

        return new_cache(self.num_layers)

    def _masks(self, hidden: torch.Tensor, attention_mask: torch.Tensor, cache: Any, positions: torch.Tensor, layer: int) -> dict:
        from transformers.masking_utils import create_causal_mask

        # Sized against the first layer run: a cache may hold entries for that layer only (the
        # ablation tree feeds one layer at a time, each on top of its own cached prefix).
        kwargs = dict(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            past_key_values=cache if cache is not None and cache.get_seq_length(layer) > 0 else None,
            position_ids=None if self.mrope else positions[0],
            layer_idx=layer,
        )
        return {"full_attention": create_causal_mask(**kwargs)}

    @torch.no_grad()
    def run_layers(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: Any,
        *,
        layers: Sequence[int] | None = None,
        skip: dict[int, torch.Tensor] | None = None,
        injection: Injection | None = None,
    ) -> torch.Tensor:
        """Run `layers` (default all) on hidden (B, q, H); `attention_mask` (B, cached + q).

        Rows flagged in `skip[i]` leave layer i's output unused: the layer returns its input
        (zero ablation of both residual branches). The layer still writes its cache entries,
        which only that layer ever reads. `injection`'s features are added after their layers
        whether or not a row skips them: they enter the residual stream at that point, not
        through the layer.
        """
        rotary_positions = positions if self.mrope else positions[0]
        position_embeddings = self.text_model.rotary_emb(hidden, rotary_positions)
        layers = range(self.num_layers) if layers is None else layers
        masks = self._masks(hidden, attention_mask, cache, positions, layers[0])
        layer_position_ids = None if self.mrope else positions[0]
        for i in layers:
            out = self.layers[i](
                hidden,
                attention_mask=masks[self.layer_types[i]],
                position_embeddings=position_embeddings,
                position_ids=layer_position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            if skip and i in skip:
                out = torch.where(skip[i].to(out.device)[:, None, None], hidden.to(out.device), out)
            hidden = out if injection is None else injection.after_layer(out, i)
        return hidden

    @torch.no_grad()
    def next_token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(hidden[:, -1:]))[:, -1].float().to(self.device)

    @torch.no_grad()
    def extend(self, rows: Rows | None, chunk: Chunk, *, skip: dict | None = None) -> Rows:
        """Feed a chunk of prompt columns to every row (after `rows`' cache, or into a new one)."""
        if rows is not None:
            cache = rows.cache
            attention_mask = torch.cat([rows.attention_mask, chunk.mask], dim=1)
            visual = torch.cat([rows.visual, chunk.visual], dim=1)
            slots, skip = rows.slots, rows.skip if skip is None else skip
        else:
            cache = self.new_cache()
            attention_mask, visual = chunk.mask, chunk.visual
            slots, skip = list(range(chunk.embeds.shape[0])), skip or {}
        hidden = self.run_layers(chunk.embeds, chunk.positions, attention_mask, cache, skip=skip, injection=chunk.injection)
        last_real = chunk.positions[:, :, -1]  # chunks are left-padded: the last column is real
        return Rows(
            cache=cache,
            attention_mask=attention_mask,
            visual=visual,
            next_positions=last_real + 1,
            logits=self.next_token_logits(hidden),
            slots=slots,
            skip=dict(skip),
        )

    def prefill(self, prompts: Sequence[EncodedPrompt], *, skip_layers: Sequence[int] = ()) -> Rows:
        """Every prompt, whole, as one left-padded batch ready to decode (`skip_layers` ablated in every row)."""
        chunk = self.chunk(prompts, self.prompt_embeddings(prompts), [(0, p.length) for p in prompts])
        every_row = torch.ones(len(prompts), dtype=torch.bool, device=self.device)
        return self.extend(None, chunk, skip={layer: every_row for layer in skip_layers})

    # -- decoding ------------------------------------------------------------------------------
    @torch.no_grad()
    def greedy_decode(
        self,
        rows: Rows,
        *,
        max_new_tokens: int,
        eos_token_ids: Sequence[int],
        feed_last_token: bool = False,
    ) -> dict[int, list[int]]:
        """Greedy tokens per output slot (EOS excluded). Finished rows leave the batch.

        With `feed_last_token`, rows that stop at `max_new_tokens` also run the forward of their last
        token (its logits are unused): attention capture needs that token's attention, plain
        decoding does not pay for it.
        """
        from surgery.cache import reserve

        eos = torch.tensor(sorted(set(eos_token_ids)), device=self.device)
        outputs: dict[int, list[int]] = {slot: [] for slot in rows.slots}
        reserve(rows.cache, max_new_tokens)
        for step in range(max_new_tokens):
            tokens = rows.logits.argmax(dim=-1)
            finished = torch.isin(tokens, eos)
            for slot, token, done in zip(rows.slots, tokens.tolist(), finished.tolist()):
                if not done:
                    outputs[slot].append(token)
            if step == max_new_tokens - 1 and not feed_last_token:
                break
            if bool(finished.any()):
                if bool(finished.all()):
                    break
                keep = ~finished
                rows, tokens = rows.select(keep), tokens[keep]
            hidden = self.embed(tokens[:, None])
            B = hidden.shape[0]
            ones = torch.ones(B, 1, dtype=rows.attention_mask.dtype, device=self.device)
            rows.attention_mask = torch.cat([rows.attention_mask, ones], dim=1)
            rows.visual = torch.cat([rows.visual, torch.zeros(B, 1, dtype=torch.bool, device=self.device)], dim=1)
            positions = rows.next_positions[:, :, None]
            self.active_rows = rows
            hidden = self.run_layers(hidden, positions, rows.attention_mask, rows.cache, skip=rows.skip)
            rows.logits = self.next_token_logits(hidden)
            rows.next_positions = rows.next_positions + 1
        self.active_rows = None
        return outputs


def execution_device(module: Any) -> torch.device:
    """Where `module` runs: its accelerate hook's execution device when dispatched (its weights may sit
    on the meta device, offloaded), else the device of its weights."""
    device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if device is not None:
        return torch.device(device)
    for param in module.parameters():
        if param.device.type != "meta":
            return param.device
    raise FrankensteinError(f"cannot tell where {type(module).__name__} runs: its weights are offloaded and it has no accelerate hook")


def generate_batched(
    stack: DecoderStack,
    prompts: Sequence[EncodedPrompt],
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    max_batch_rows: int = 64,
    skip_layers: Sequence[int] = (),
    progress: Any = None,
) -> list[list[int]]:
    """Plain greedy generation, `max_batch_rows` prompts at a time (`skip_layers` zero-ablated throughout)."""
    out: list[list[int]] = []
    for start in range(0, len(prompts), max_batch_rows):
        group = prompts[start : start + max_batch_rows]
        rows = stack.prefill(group, skip_layers=skip_layers)
        tokens = stack.greedy_decode(rows, max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids)
        out.extend(tokens[slot] for slot in range(len(group)))
        if progress is not None:
            progress.update(len(group))
    return out
