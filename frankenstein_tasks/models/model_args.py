"""Model args of the `frankenstein` harness models, validated once, and the engine they build.

The lmms-eval model (`frankenstein.py`) and the lm-eval model (`lm_eval_model.py`) take the same
`--model_args`; both hand them to `ModelArgs` (pydantic: an unknown or malformed arg is one line naming
it) and call `load_runner`, which loads the checkpoint (or an in-memory Frankenstein splice) and wraps
it in the engine's `ProbeRunner`. They also share how requests reach the engine: `request_chunks`
(which requests run together), `greedy_until` (greedy decoding only, and the stop strings) and
`Budgets` (each request's new-token budget, and the note when the model arg's is overridden).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from frankenstein_tasks.loading_fields import (
    CHECK_DEVICE,
    CHECK_DEVICE_MAP,
    CHECK_DTYPE,
)
from frankenstein_tasks.prompt_styles import (
    PromptStyle,
    prompt_style,
    style_for_checkpoint,
)
from surgery.errors import FrankensteinError

log = logging.getLogger(__name__)


class ModelArgs(BaseModel):
    """`--model_args` of the frankenstein models (see the lmms-eval model's docstring for each)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    pretrained: str | None = None
    in_model: str | None = Field(None, alias="in")
    rl_model: str | None = Field(None, alias="rl")
    splice: str | None = None
    cuts: str | None = None
    device: Annotated[str | None, CHECK_DEVICE] = "auto"
    device_map: Annotated[str | None, CHECK_DEVICE_MAP] = None  # accelerate's "auto" / "balanced" / ...: a model larger than one device
    dtype: Annotated[str, CHECK_DTYPE] = "auto"
    attn_implementation: str | None = None
    probe: str = "none"
    layers: str = "all"
    swap_mode: str = "from"
    window: int = 1
    swap_decode: str = "prefill"
    scoring: str = "generate"
    ablate: str | None = None
    prompt_style: str | None = None
    max_batch_rows: int | None = None
    max_new_tokens: int = 256  # only for requests whose task sets no budget (`Budgets`)
    max_length: int | None = Field(None, ge=1)  # lm-eval model: context window of log-likelihood requests (default: the model's)
    system_prompt: str | None = None  # None: each task's own; "" for no system message
    min_pixels: int | None = None
    max_pixels: int | None = None
    allow_pickle: bool = False
    response_cache: str | None = None  # folder: finished responses kept there, reused by a rerun
    # Accepted for harness compatibility (`--batch_size`); batching is `max_batch_rows`.
    batch_size: int | str | None = None
    max_batch_size: int | None = None

    @classmethod
    def parse(cls, **kwargs: Any) -> "ModelArgs":
        given = {k: v for k, v in kwargs.items() if v is not None}
        for key in ("layers", "ablate", "cuts"):  # harnesses parse "5" as an int
            if key in given:
                given[key] = str(given[key])
        try:
            return cls.model_validate(given)
        except ValidationError as e:
            raise FrankensteinError(_one_line(e)) from None

    @property
    def checkpoint_id(self) -> str | None:
        """What names the model (for its default prompt style): pretrained, or IN of a splice."""
        return self.pretrained or self.in_model


def _one_line(error: ValidationError) -> str:
    err = error.errors()[0]
    name = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        known = ", ".join(sorted(f.alias or n for n, f in ModelArgs.model_fields.items()))
        return f"unknown model arg {name!r} for frankenstein; known: {known}"
    where = f"model arg {name}: " if name else "model args: "
    return where + err["msg"].removeprefix("Value error, ")


@dataclass
class LoadedRunner:
    runner: Any  # surgery.probes.ProbeRunner
    style: PromptStyle  # the prompt style of reasoning tasks
    style_reason: str


def load_runner(args: ModelArgs, device: str) -> LoadedRunner:
    """Load the model args' checkpoint (or splice) on `device` and build the engine around it.

    Everything that can be checked without weights is checked first (the probe settings, the
    checkpoint's config and safetensors headers, the layers against its layer count, the splice and
    its cuts, the processor files), so bad input fails in seconds, before a 7B model loads."""
    from surgery.loading import load_processor, resolve_dtype
    from surgery.probes import ProbeConfig, ProbeRunner

    try:
        config = ProbeConfig(
            probe=args.probe,
            layers=args.layers,
            swap_mode=args.swap_mode,
            window=args.window,
            swap_decode=args.swap_decode,
            scoring=args.scoring,
            ablate=args.ablate or None,
            max_batch_rows=args.max_batch_rows or (128 if device.startswith("cuda") else 16),
            default_max_new_tokens=args.max_new_tokens,
        )
    except ValidationError as e:
        raise FrankensteinError(_one_line(e)) from None
    layout, processor_source = _checkpoint(args)
    config.layers_on(layout)
    processor_kwargs = {k: v for k, v in (("min_pixels", args.min_pixels), ("max_pixels", args.max_pixels)) if v}
    processor = load_processor(processor_source, **(processor_kwargs if layout.has_vision else {}))
    model, layout = _load(args, resolve_dtype(args.dtype, device), device)
    if args.prompt_style:
        style, why = prompt_style(args.prompt_style), f"prompt_style={args.prompt_style} given"
    else:
        style, why = style_for_checkpoint(args.checkpoint_id)
    return LoadedRunner(ProbeRunner(model, layout, processor, config), style, why)


def _checkpoint(args: ModelArgs) -> tuple[Any, str]:
    """The layout of the model args' checkpoint or splice (config and headers; no weights) and where
    its processor comes from (for a splice, the model that supplies the early block)."""
    from surgery.arch import layout_of_checkpoint, parse_cuts
    from surgery.splice import check_pair, check_variant, splice_plan

    if args.splice:
        check_variant(args.splice)
        if not (args.in_model and args.rl_model):
            raise FrankensteinError("splice=... needs both in=PATH and rl=PATH")
        if args.device_map:
            raise FrankensteinError("splice=... builds the splice on one device; device_map= works with pretrained= (a merged checkpoint)")
        pair = check_pair(args.in_model, args.rl_model, allow_pickle=args.allow_pickle)
        plan = splice_plan(pair.layout, args.splice, parse_cuts(args.cuts))
        return pair.layout, pair.locations[plan.early_source]
    if not args.pretrained:
        raise FrankensteinError("frankenstein needs pretrained=PATH (or in=..., rl=..., splice=VARIANT)")
    return layout_of_checkpoint(args.pretrained, allow_pickle=args.allow_pickle), args.pretrained


def _load(args: ModelArgs, dtype: str, device: str) -> tuple[Any, Any]:
    from surgery.loading import load_model

    common = dict(dtype=dtype, device=device, attn_implementation=args.attn_implementation, allow_pickle=args.allow_pickle)
    if args.splice:
        from surgery.arch import parse_cuts
        from surgery.splice import load_spliced

        model, layout, _ = load_spliced(args.in_model, args.rl_model, args.splice, cuts=parse_cuts(args.cuts), **common)
        return model, layout
    return load_model(args.pretrained, device_map=args.device_map, **common)


# ---------------------------------------------------------------------------------------------
# Requests: how both harness models hand theirs to the engine
# ---------------------------------------------------------------------------------------------


def request_chunks(requests: Sequence[Any], indices: Iterable[int], rows_per_item: int, max_batch_rows: int) -> Iterator[list[int]]:
    """The `indices` of harness requests (`args[0]` the prompt, `args[1]` the generation settings) in
    the chunks the engine runs together.

    Requests with the same generation settings form a group (groups in order of first appearance);
    within a group the shortest prompts come first, so a chunk pads least; a chunk holds at most
    `max_batch_rows // rows_per_item` requests, and at least one.
    """
    groups: dict[str, list[int]] = {}
    for i in indices:
        groups.setdefault(json.dumps(requests[i].args[1], sort_keys=True, default=str), []).append(i)
    per_call = max(1, max_batch_rows // rows_per_item)
    for group in groups.values():
        group.sort(key=lambda i: len(requests[i].args[0]))
        for start in range(0, len(group), per_call):
            yield group[start : start + per_call]


def greedy_until(gen_kwargs: Mapping[str, Any], task: str) -> list[str]:
    """The stop strings (`until`) of a task's generation settings; a task asking for sampling is refused."""
    if gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature") or 0) > 0:
        raise FrankensteinError(
            f"task {task} asks for sampling (do_sample/temperature); the frankenstein model decodes greedily"
        )
    until = gen_kwargs.get("until") or []
    return [until] if isinstance(until, str) else list(until)


class Budgets:
    """The new-token budget of each request, and a note when the `max_new_tokens` model arg loses.

    A request's budget is its task's generation setting (`max_new_tokens`, or lm-eval's
    `max_gen_toks`); the model arg is the default for tasks that set none. Every frank_* task sets
    one, so a `max_new_tokens` model arg given with them would change nothing: instead of ignoring it
    silently, `of` says so once per task (pass `--gen_kwargs max_new_tokens=N` to change a task's).
    """

    def __init__(self, args: ModelArgs, warn: Callable[[str], None]):
        self.model_arg = args.max_new_tokens if "max_new_tokens" in args.model_fields_set else None
        self.warn = warn
        self.told: set[str] = set()

    def of(self, gen_kwargs: Mapping[str, Any], task: str) -> int | None:
        """The request's own budget (None: the model arg's applies)."""
        budget = gen_kwargs.get("max_gen_toks") or gen_kwargs.get("max_new_tokens")
        if not budget:
            return None
        if self.model_arg is not None and int(budget) != self.model_arg and task not in self.told:
            self.told.add(task)
            self.warn(
                f"frankenstein: model arg max_new_tokens={self.model_arg} does not apply to task {task}: its generation "
                f"settings ask for {int(budget)} new tokens, which win (--gen_kwargs max_new_tokens={self.model_arg} sets the task's)"
            )
        return int(budget)
