"""Prompts as the surgery engine sees them: token ids, images, and explicit positions.

Every prompt is encoded on its own (no padding) and keeps its own position ids, computed over the
whole prompt with the model's own M-RoPE rule (`Layout.rope_positions`) (METHOD.md 1a: a two-chunk prefill
reproduces the one-shot prefill exactly only with explicit 3-D position ids). The engine pads and
batches these itself, so padding never changes a position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from surgery.arch import Layout
from surgery.errors import FrankensteinError

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."  # what lmms-eval's qwen2_5_vl uses


@dataclass
class EncodedPrompt:
    """One prompt, unpadded. `positions` is (3, T) for M-RoPE models, (1, T) otherwise."""

    input_ids: torch.Tensor  # (T,)
    positions: torch.Tensor  # (P, T)
    visual_mask: torch.Tensor  # (T,) bool: image or video placeholder tokens
    pixel_values: torch.Tensor | None = None  # patches of all images of this prompt
    image_grid_thw: torch.Tensor | None = None  # (n_images, 3)

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_visual(self) -> int:
        return int(self.visual_mask.sum())

    @property
    def visual_span(self) -> tuple[int, int]:
        """(first visual position, one past the last); (0, 0) when the prompt has no image."""
        idx = torch.nonzero(self.visual_mask).flatten()
        if idx.numel() == 0:
            return (0, 0)
        return int(idx[0]), int(idx[-1]) + 1

    @property
    def next_position(self) -> torch.Tensor:
        """Position ids (P,) of the first token after the prompt: text positions continue by one."""
        return self.positions[:, -1] + 1



def chat_messages(text: str, num_images: int, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> list[dict]:
    """Chat messages in the layout lmms-eval's Qwen models use: images first, then the text."""
    messages: list[dict] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": text}]
    messages.append({"role": "user", "content": content})
    return messages


def encode_prompt(
    processor: Any,
    model: Any,
    layout: Layout,
    text: str,
    images: Sequence[Any] = (),
    *,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> EncodedPrompt:
    """Apply the chat template, tokenize, preprocess images and compute position ids."""
    images = list(images)
    if images and not layout.has_vision:
        raise FrankensteinError(f"{layout.model_type} is a text-only model; it cannot take images")
    chat = chat_text(processor, layout, text, len(images), system_prompt=system_prompt)
    if layout.has_vision:
        batch = processor(text=[chat], images=images or None, return_tensors="pt")
    else:
        batch = processor(text=[chat], return_tensors="pt")
    return encode_batch(batch, model, layout)


def chat_text(
    processor: Any, layout: Layout, text: str, num_images: int = 0, *, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
) -> str:
    """The prompt as text, chat template applied, ready for the answer (one placeholder per image)."""
    messages = chat_messages(text, num_images, system_prompt)
    if not layout.has_vision:
        messages = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else text} for m in messages]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def continuation_ids(tokenizer: Any, context: str, continuation: str) -> list[int]:
    """Token ids of `continuation` after `context`: context + continuation tokenized whole, minus the
    context's own token count (lm-eval's rule for causal models, so a token that straddles the
    boundary belongs to the continuation)."""
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    return list(whole[len(tokenizer(context, add_special_tokens=False)["input_ids"]) :])


def encode_ids(model: Any, layout: Layout, ids: Sequence[int]) -> EncodedPrompt:
    """A text prompt given as token ids (a harness tokenized it already)."""
    return encode_batch({"input_ids": torch.tensor([list(ids)], dtype=torch.long)}, model, layout)


def encode_text(processor: Any, model: Any, layout: Layout, text: str) -> EncodedPrompt:
    """A prompt given as finished text (no chat template applied here, no images)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    return encode_batch(tokenizer([text], return_tensors="pt"), model, layout)


def encode_batch(batch: Any, model: Any, layout: Layout) -> EncodedPrompt:
    """EncodedPrompt from a processor output of ONE unpadded prompt."""
    input_ids = batch["input_ids"]
    if input_ids.shape[0] != 1:
        raise ValueError("encode_batch takes one prompt at a time")
    visual = torch.isin(input_ids[0], torch.tensor(layout.visual_token_ids(model.config), dtype=input_ids.dtype))
    if layout.facts.rope == "mrope":
        mm_types = batch.get("mm_token_type_ids")
        if mm_types is None:
            mm_types = visual.long()[None]
        positions = layout.rope_positions(
            model,
            input_ids,
            mm_token_type_ids=mm_types,
            image_grid_thw=batch.get("image_grid_thw"),
            video_grid_thw=batch.get("video_grid_thw"),
        )[:, 0]
    else:
        positions = torch.arange(input_ids.shape[1])[None]
    return EncodedPrompt(
        input_ids=input_ids[0],
        positions=positions,
        visual_mask=visual,
        pixel_values=batch.get("pixel_values"),
        image_grid_thw=batch.get("image_grid_thw"),
    )
