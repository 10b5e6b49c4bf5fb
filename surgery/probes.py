"""Probes as one registry: requests in, plain per-layer results out.

`ProbeRunner` owns a loaded model's `DecoderStack` and runs a batch of `ProbeRequest`s through the
probe named in its `ProbeConfig` (`PROBES`, the one list of probe names):

    none            ordinary greedy generation (batched); `ablate=` zero-ablates fixed layers in it
    visual_swap     per decoder layer, the answer with the source image's visual K/V swapped in
    zero_ablation   per decoder layer, the answer with that layer zero-ablated; with scoring=logprob,
                    instead of answers the log-likelihood of each request's reference answer
    attention       the answer, and per layer the attention mass generated tokens put on the image

Log-likelihood requests (a context and continuation tokens: multiple choice, perplexity) go to
`ProbeRunner.score` instead, with probe=none (optionally `ablate=`) or zero_ablation (every layer in
`layers`), teacher-forced (`surgery.loglikelihood`).

Each request gets one `ProbeOutput`: plain data, no harness format. Front ends (the lmms-eval and
lm-eval models in `frankenstein_tasks.models`) translate their requests into `ProbeRequest`s and
encode the outputs for their harness; the engine knows no harness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from surgery.arch import Layout
from surgery.errors import FrankensteinError
from surgery.prompts import DEFAULT_SYSTEM_PROMPT, chat_text, continuation_ids, encode_ids, encode_prompt, encode_text
from surgery.stack import DecoderStack
from surgery.swap import SwapDecode, SwapMode


class ProbeConfig(BaseModel):
    """What to run; parsed from model args (`probe=visual_swap,layers=all,swap_mode=from`)."""

    model_config = ConfigDict(frozen=True)

    probe: str = "none"
    layers: str = "all"
    swap_mode: SwapMode = "from"
    window: int = Field(1, ge=1)
    swap_decode: SwapDecode = "prefill"  # visual_swap: swap in the prefill only, or also re-insert at every step (the authors' bug)
    scoring: str = "generate"  # zero_ablation: "generate" (answers) or "logprob" (teacher-forced)
    ablate: str | None = None  # layers zero-ablated in every generation of probe=none
    max_batch_rows: int = Field(32, ge=1)
    default_max_new_tokens: int = Field(256, ge=1)

    @field_validator("probe")
    @classmethod
    def _known_probe(cls, value: str) -> str:
        if value not in RUNNERS:
            raise ValueError(f"unknown probe {value!r}; probes are {', '.join(PROBES)}")
        return value

    @model_validator(mode="after")
    def _scoring_fits_probe(self) -> "ProbeConfig":
        if self.scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {self.scoring!r}; scorings are {', '.join(SCORINGS)}")
        if self.scoring != "generate" and self.probe != "zero_ablation":
            raise ValueError(f"scoring={self.scoring} works with probe=zero_ablation only, not probe={self.probe}")
        if self.swap_decode != "prefill" and self.probe != "visual_swap":
            raise ValueError(f"swap_decode={self.swap_decode} works with probe=visual_swap only, not probe={self.probe}")
        if self.ablate and self.probe != "none":
            raise ValueError("ablate= fixes ablated layers for ordinary generation (probe=none); probes sweep layers themselves")
        return self

    def layers_on(self, layout: Layout) -> tuple[list[int], list[int]]:
        """The swept and the ablated decoder layers on a model of `layout`, or one line saying why the
        config does not fit it. Needs no weights, so a front end can check a config before loading."""
        if self.probe == "visual_swap" and not layout.has_vision:
            raise FrankensteinError(f"probe=visual_swap needs a vision-language model, not {layout.model_type}")
        layers = parse_layers(self.layers, layout.num_layers)
        return layers, parse_layers(self.ablate, layout.num_layers) if self.ablate else []


def parse_layers(text: str | int | Sequence[int], num_layers: int) -> list[int]:
    """Decoder layers from 'all', '5', '0-9', '0-27:3' (step), '[1,3,5]', '1;3;5' or '0-3;8'."""
    if isinstance(text, int):
        items: list[str] = [str(text)]
    elif isinstance(text, (list, tuple)):
        items = [str(x) for x in text]
    else:
        raw = str(text).strip().strip("[]")
        if raw.lower() in ("all", ""):
            return list(range(num_layers))
        items = [p for p in re.split(r"[;,\s+]+", raw) if p]
    layers: set[int] = set()
    for item in items:
        m = re.fullmatch(r"(-?\d+)(?:-(\d+))?(?::(\d+))?", item)
        if m is None:
            raise FrankensteinError(f"cannot read layers {text!r}: use all, 5, 0-9, 0-27:3 or 1;3;5")
        start = int(m.group(1))
        stop = int(m.group(2)) if m.group(2) is not None else start
        step = int(m.group(3)) if m.group(3) is not None else 1
        if step < 1 or stop < start:
            raise FrankensteinError(f"cannot read layers {item!r}: ranges go low-high with a positive step")
        layers.update(range(start, stop + 1, step))
    bad = sorted(x for x in layers if not 0 <= x < num_layers)
    if bad:
        raise FrankensteinError(f"layers {bad} are out of range: the model has decoder layers 0..{num_layers - 1}")
    return sorted(layers)


class ProbeOutput(BaseModel):
    """What a probe produced for one request (plain data; front ends encode it for their harness).

    `baseline` is the unmodified model's answer (the only field for probe=none); `answers` (per-layer
    answers under the intervention) or `values` (per-layer numbers) are aligned with `layers`; a
    probe that cannot run on an item sets `error` instead. The harness contract's `ProbeResult`
    (`frankenstein_tasks.contract`) is this schema with its own checks and readers.
    """

    probe: str  # a probe of PROBES
    baseline: str = ""  # the answer without any intervention
    layers: list[int] = Field(default_factory=list)  # decoder layer indices, aligned with answers / values
    answers: list[str] | None = None  # per-layer answer under the intervention
    values: list[float] | None = None  # per-layer number (attention mass on visual tokens, log-likelihood)
    options: dict[str, Any] = Field(default_factory=dict)  # probe settings, e.g. swap mode and window
    error: str | None = None  # why the probe could not run on this item
    baseline_value: float | None = None  # the unmodified model's number (scoring=logprob)
    answer_tokens: int | None = None  # scoring=logprob: tokens in the reference answer (per-token = value / this)


@dataclass
class ProbeRequest:
    """One prompt: the question text, the target images, and for a swap the source images."""

    text: str
    images: list[Any] = field(default_factory=list)
    source_images: list[Any] | None = None
    max_new_tokens: int | None = None
    until: list[str] = field(default_factory=list)
    reference_answer: str | None = None  # scoring=logprob: the text whose log-likelihood is measured
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT  # None: no system message (the template's default)
    chat: bool = True  # False: `text` is the whole prompt already (e.g. lm-eval applied its own template)


class ProbeRunner:
    def __init__(
        self,
        model: Any,
        layout: Layout,
        processor: Any,
        config: ProbeConfig | None = None,
    ):
        config = config or ProbeConfig()
        self.model, self.layout, self.processor, self.config = model, layout, processor, config
        self.stack = DecoderStack(model, layout)
        self.layers, self.ablated = config.layers_on(layout)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.eos_token_ids = eos_token_ids(model, self.tokenizer)

    # -- helpers -------------------------------------------------------------------------------
    def encode(self, request: ProbeRequest, images: Sequence[Any] | None = None) -> Any:
        """The request's prompt as the engine sees it (its own images, or `images` instead)."""
        if not request.chat:
            return encode_text(self.processor, self.model, self.layout, request.text)
        return encode_prompt(
            self.processor, self.model, self.layout, request.text,
            request.images if images is None else images, system_prompt=request.system_prompt,
        )

    def decode(self, tokens: list[int] | None, until: Sequence[str]) -> str:
        if tokens is None:
            return ""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        for stop in until:
            if stop:
                text = text.split(stop)[0]
        return text

    def decoding(self, requests: Sequence[ProbeRequest], progress: Any) -> dict[str, Any]:
        """Keyword arguments every sweep takes: decode budget, stop tokens, batch size, progress."""
        return {
            "max_new_tokens": max(r.max_new_tokens or self.config.default_max_new_tokens for r in requests),
            "eos_token_ids": self.eos_token_ids,
            "max_batch_rows": self.config.max_batch_rows,
            "progress": progress,
        }

    # -- entry points --------------------------------------------------------------------------
    def run(self, requests: Sequence[ProbeRequest], progress: Any = None) -> list[ProbeOutput]:
        """One ProbeOutput per request."""
        if not requests:
            return []
        return RUNNERS[self.config.probe](self, list(requests), progress)

    def score(
        self, contexts: Sequence[Any], continuations: Sequence[tuple[int, Sequence[int]]], progress: Any = None
    ) -> list[Any]:
        """Log-likelihood requests: per continuation (context index, token ids), a
        `surgery.loglikelihood.ContinuationOutcome`: the unablated score (with `ablate=` layers
        skipped) and, for probe=zero_ablation, one per swept layer."""
        from surgery.loglikelihood import loglikelihood_sweep

        self.check_scoring()
        if not continuations:
            return []
        return loglikelihood_sweep(
            self.stack, contexts, continuations, SCORED_LAYERS[self.config.probe](self),
            ablated=self.ablated, max_batch_rows=self.config.max_batch_rows, progress=progress,
        )

    def check_scoring(self) -> None:
        """Refuse log-likelihood requests under a probe that has no log-likelihood form."""
        if self.config.probe not in SCORED_LAYERS:
            raise FrankensteinError(
                f"probe={self.config.probe} has no log-likelihood form; log-likelihood requests run with "
                f"probe={' or probe='.join(SCORED_LAYERS)}"
            )

    def encode_ids(self, ids: Sequence[int]) -> Any:
        """A text prompt the harness tokenized already."""
        return encode_ids(self.model, self.layout, ids)

    def continuation_ids(self, request: ProbeRequest, continuation: str) -> list[int]:
        """Token ids of `continuation` right after the request's prompt (as `encode` builds it)."""
        prompt = request.text
        if request.chat:
            prompt = chat_text(self.processor, self.layout, request.text, len(request.images), system_prompt=request.system_prompt)
        return continuation_ids(self.tokenizer, prompt, continuation)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids from the model's generation config and its tokenizer."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if not ids:
        raise FrankensteinError("the model defines no end-of-sequence token (generation_config or tokenizer)")
    return sorted(ids)


# ---------------------------------------------------------------------------------------------
# The probes
# ---------------------------------------------------------------------------------------------


def _run_none(runner: ProbeRunner, requests: list[ProbeRequest], progress: Any) -> list[ProbeOutput]:
    from surgery.stack import generate_batched

    prompts = [runner.encode(r) for r in requests]
    tokens = generate_batched(
        runner.stack,
        prompts,
        skip_layers=runner.ablated,
        **runner.decoding(requests, progress),
    )
    return [ProbeOutput(probe="none", baseline=runner.decode(t, r.until)) for t, r in zip(tokens, requests)]


def _run_visual_swap(runner: ProbeRunner, requests: list[ProbeRequest], progress: Any) -> list[ProbeOutput]:
    from surgery.swap import SwapPair, SwapSpec, swap_sweep

    pairs = []
    for r in requests:
        if len(r.images) != 1 or not r.source_images or len(r.source_images) != 1:
            raise FrankensteinError("probe=visual_swap needs exactly one target and one source image per item")
        pairs.append(SwapPair(runner.encode(r), runner.encode(r, r.source_images)))
    spec = SwapSpec(mode=runner.config.swap_mode, window=runner.config.window, decode=runner.config.swap_decode)
    outcomes = swap_sweep(
        runner.stack,
        pairs,
        runner.layers,
        spec,
        **runner.decoding(requests, progress),
    )
    options = {"mode": spec.mode, "window": spec.window if spec.mode == "window" else None}
    if spec.decode != "prefill":  # recorded only when set, so default results read as before
        options["decode"] = spec.decode
    results = []
    for o, r in zip(outcomes, requests):
        if o.error is not None:
            results.append(ProbeOutput(probe="visual_swap", layers=runner.layers, options=options, error=o.error))
            continue
        results.append(
            ProbeOutput(
                probe="visual_swap",
                baseline=runner.decode(o.baseline, r.until),
                layers=runner.layers,
                answers=[runner.decode(o.by_layer[layer], r.until) for layer in runner.layers],
                options=options,
            )
        )
    return results


def _run_zero_ablation(runner: ProbeRunner, requests: list[ProbeRequest], progress: Any) -> list[ProbeOutput]:
    return SCORINGS[runner.config.scoring](runner, requests, progress)


def _zero_ablation_generate(runner: ProbeRunner, requests: list[ProbeRequest], progress: Any) -> list[ProbeOutput]:
    from surgery.ablation import ablation_sweep

    prompts = [runner.encode(r) for r in requests]
    outcomes = ablation_sweep(
        runner.stack,
        prompts,
        runner.layers,
        **runner.decoding(requests, progress),
    )
    return [
        ProbeOutput(
            probe="zero_ablation",
            baseline=runner.decode(o.baseline, r.until),
            layers=runner.layers,
            answers=[runner.decode(o.by_layer[layer], r.until) for layer in runner.layers],
        )
        for o, r in zip(outcomes, requests)
    ]


def _zero_ablation_logprob(runner: ProbeRunner, requests: list[ProbeRequest], progress: Any) -> list[ProbeOutput]:
    from surgery.ablation import ablation_logprob_sweep

    missing = [i for i, r in enumerate(requests) if not (r.reference_answer or "").strip()]
    if missing:
        raise FrankensteinError(
            "scoring=logprob needs a reference answer for every item, and this task gives none "
            f"({len(missing)} of {len(requests)} items lack one); use a frank_reasoning task or scoring=generate"
        )
    prompts = [runner.encode(r) for r in requests]
    answers = [runner.tokenizer.encode(r.reference_answer, add_special_tokens=False) for r in requests]
    outcomes = ablation_logprob_sweep(
        runner.stack, prompts, answers, runner.layers, max_batch_rows=runner.config.max_batch_rows, progress=progress
    )
    return [
        ProbeOutput(
            probe="zero_ablation",
            layers=runner.layers,
            values=[o.by_layer[layer].total for layer in runner.layers],
            baseline_value=o.baseline.total,
            answer_tokens=o.baseline.tokens,
            options={"scoring": "logprob"},
        )
        for o in outcomes
    ]


def _run_attention(runner: ProbeRunner, requests: list[ProbeRequest], progress: Any) -> list[ProbeOutput]:
    from surgery.attention import attention_sweep

    prompts = [runner.encode(r) for r in requests]
    outcomes, _ = attention_sweep(
        runner.stack,
        prompts,
        **runner.decoding(requests, progress),
    )
    results = []
    for o, r in zip(outcomes, requests):
        values = [o.visual_mass[layer] for layer in runner.layers] if o.visual_mass else []
        results.append(
            ProbeOutput(
                probe="attention",
                baseline=runner.decode(o.tokens, r.until),
                layers=runner.layers if values else [],
                values=values,
                error=None if values else "no tokens were generated, so there is no attention to measure",
            )
        )
    return results


# Probe name -> runner: the one list of probes (model args, docs and tasks read it from here).
RUNNERS: dict[str, Callable[[ProbeRunner, list[ProbeRequest], Any], list[ProbeOutput]]] = {
    "none": _run_none,
    "visual_swap": _run_visual_swap,
    "zero_ablation": _run_zero_ablation,
    "attention": _run_attention,
}
PROBES = tuple(RUNNERS)

# Probes that answer log-likelihood requests (multiple choice, perplexity) -> the layers each sweeps.
SCORED_LAYERS: dict[str, Callable[[ProbeRunner], list[int]]] = {
    "none": lambda runner: [],
    "zero_ablation": lambda runner: runner.layers,
}

# How zero_ablation scores a layer: by the answer it generates, or by the reference answer's log-likelihood.
SCORINGS: dict[str, Callable[[ProbeRunner, list[ProbeRequest], Any], list[ProbeOutput]]] = {
    "generate": _zero_ablation_generate,
    "logprob": _zero_ablation_logprob,
}
