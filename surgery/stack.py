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
class Chunk:
    """Columns [start, stop) of each row's prompt, left-padded into one batch."""

    embeds: torch.Tensor  # (B, q, H)
    positions: torch.Tensor  # (P, B, q)
    mask: torch.Tensor  # (B, q) 1 = real token, 0 = pad
    visual: torch.Tensor  # (B, q) bool: visual token columns


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
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
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
    def prompt_embeddings(self, prompts: Sequence[EncodedPrompt]) -> list[torch.Tensor]:
        """(T_i, H) input embeddings per prompt, image features in place (one vision-tower call)."""
        embeds = [self.embed(p.input_ids.to(self.device)) for p in prompts]
        with_images = [i for i, p in enumerate(prompts) if p.pixel_values is not None]
        if not with_images:
            return embeds
        pixel_values = torch.cat([prompts[i].pixel_values for i in with_images]).to(self.device)
        grids = torch.cat([prompts[i].image_grid_thw for i in with_images]).to(self.device)
        features = self.layout.image_features(self.model, pixel_values, grids)
        per_image = iter(features)
        for i in with_images:
            n_images = prompts[i].image_grid_thw.shape[0]
            feats = torch.cat([next(per_image) for _ in range(n_images)]).to(embeds[i].dtype)
            mask = prompts[i].visual_mask.to(self.device)
            if int(mask.sum()) != feats.shape[0]:
                raise ValueError(f"prompt {i}: {int(mask.sum())} visual tokens but {feats.shape[0]} image features")
            embeds[i] = embeds[i].masked_scatter(mask[:, None], feats)
        return embeds

    def chunk(
        self, prompts: Sequence[EncodedPrompt], embeds: Sequence[torch.Tensor], spans: Sequence[tuple[int, int]]
    ) -> Chunk:
        """Columns spans[i] of prompt i for every row, left-padded to one width."""
        width = max(stop - start for start, stop in spans)
        B, H = len(prompts), embeds[0].shape[-1]
        P = prompts[0].positions.shape[0]
        out_embeds = torch.zeros(B, width, H, dtype=embeds[0].dtype, device=self.device)
        positions = torch.full((P, B, width), PAD_POSITION, dtype=torch.long, device=self.device)
        mask = torch.zeros(B, width, dtype=torch.long, device=self.device)
        visual = torch.zeros(B, width, dtype=torch.bool, device=self.device)
        for b, (p, e, (start, stop)) in enumerate(zip(prompts, embeds, spans)):
            n = stop - start
            if n == 0:
                continue
            out_embeds[b, width - n :] = e[start:stop]
            positions[:, b, width - n :] = p.positions[:, start:stop].to(self.device)
            mask[b, width - n :] = 1
            visual[b, width - n :] = p.visual_mask[start:stop].to(self.device)
        return Chunk(out_embeds, positions, mask, visual)

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
    ) -> torch.Tensor:
        """Run `layers` (default all) on hidden (B, q, H); `attention_mask` (B, cached + q).

        Rows flagged in `skip[i]` leave layer i's output unused: the layer returns its input
        (zero ablation of both residual branches). The layer still writes its cache entries,
        which only that layer ever reads.
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
                out = torch.where(skip[i][:, None, None], hidden, out)
            hidden = out
        return hidden

    @torch.no_grad()
    def next_token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(hidden[:, -1:]))[:, -1].float()

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
        hidden = self.run_layers(chunk.embeds, chunk.positions, attention_mask, cache, skip=skip)
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
