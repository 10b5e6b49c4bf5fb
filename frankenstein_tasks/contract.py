"""The contract between the `frankenstein` lmms-eval model and the `frank_*` tasks. One place, on purpose.

lmms-eval hands a model one request per doc and expects one string back; a task then turns
(doc, that string) into per-sample metric values, and an aggregation turns those into the numbers
of the results JSON. A probe produces many answers per doc (one per layer), so both sides agree on:

Request side
    * `doc_to_visual(doc)` returns the **target** visuals only, so any ordinary model (the built-in
      `qwen2_5_vl`, or `frankenstein` with `probe=none`) answers about the target image.
    * A task that supports visual swapping puts the **source** image in the doc under
      `SOURCE_IMAGE_KEY` (an absolute path or a PIL image). The model reads it with
      `source_visual(doc)`; it finds the doc as lmms-eval's own models do,
      `self.task_dict[task][split][doc_id]`.

Response side
    * With `probe=none` the model returns the plain answer.
    * With a probe it returns `encode(ProbeResult(...))`: a JSON object under the key
      `"frankenstein_probe"` holding the unmodified model's answer (`baseline`) and, per decoder
      layer in `layers`, the answer under the intervention (`answers`) or a number (`values`, e.g.
      the attention mass on visual tokens). A probe that cannot run on an item (e.g. target and
      source give different numbers of visual tokens) sets `error` instead, and the task counts the
      item as skipped. lmms-eval logs this string as the sample's `filtered_resps`, so
      `--log_samples` holds every per-layer answer.
    * The task calls `decode(response)`: a `ProbeResult`, or None for a plain answer.

Metrics side
    * Per sample, a per-layer metric is a dict `{layer: value}` (`per_layer(...)`); its aggregation is
      `aggregate_curve`, which puts `{"layers": [...], "value": [...], "stderr": [...], "n": N}`
      (bootstrap standard errors) in the results JSON under the metric's name.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping, Sequence

from pydantic import BaseModel, Field, field_validator

from surgery.errors import FrankensteinError
from surgery.probes import PROBES, ProbeOutput

SOURCE_IMAGE_KEY = "source_image"
RESPONSE_KEY = "frankenstein_probe"
BOOTSTRAP_ITERS = 1000
BOOTSTRAP_SEED = 1234


class ProbeResult(BaseModel):
    """Everything a probe produced for one request."""

    probe: str  # a probe of `surgery.probes.PROBES` other than "none"
    baseline: str = ""  # the answer without any intervention
    layers: list[int] = Field(default_factory=list)  # decoder layer indices, aligned with answers / values
    answers: list[str] | None = None  # per-layer answer under the intervention
    values: list[float] | None = None  # per-layer number (attention mass on visual tokens)
    options: dict[str, Any] = Field(default_factory=dict)  # probe settings, e.g. swap mode and window
    error: str | None = None  # why the probe could not run on this item

    @field_validator("probe")
    @classmethod
    def _known_probe(cls, value: str) -> str:
        if value not in PROBES or value == "none":
            raise ValueError(f"{value!r} is not a per-layer probe; probes are {', '.join(PROBES)}")
        return value

    def answer_by_layer(self) -> dict[int, str]:
        if self.answers is None:
            return {}
        return dict(zip(self.layers, self.answers))

    def value_by_layer(self) -> dict[int, float]:
        if self.values is None:
            return {}
        return dict(zip(self.layers, self.values))


def encode(result: ProbeResult | ProbeOutput) -> str:
    """The string a probing model returns from generate_until (the engine's ProbeOutput, or a ProbeResult)."""
    if isinstance(result, ProbeOutput):
        result = ProbeResult.model_validate(dataclasses.asdict(result))
    return json.dumps({RESPONSE_KEY: result.model_dump()}, ensure_ascii=False)


def decode(response: str) -> ProbeResult | None:
    """The ProbeResult in a model response, or None if the response is a plain answer."""
    text = response.strip() if isinstance(response, str) else ""
    if not text.startswith("{") or RESPONSE_KEY not in text:
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or RESPONSE_KEY not in payload:
        return None
    return ProbeResult.model_validate(payload[RESPONSE_KEY])


def source_visual(doc: Mapping[str, Any]) -> Any:
    """The source image of a swap pair, as a PIL RGB image."""
    from PIL import Image

    value = doc.get(SOURCE_IMAGE_KEY)
    if value is None:
        raise FrankensteinError(
            f"probe=visual_swap needs a source image in each doc (field {SOURCE_IMAGE_KEY!r}); "
            "use a frank_vision_* task"
        )
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    try:
        with Image.open(value) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as e:
        raise FrankensteinError(f"cannot read source image {value}: {e}") from None


def per_layer(values: Mapping[int, float]) -> dict[str, float]:
    """A per-sample per-layer metric value (JSON keys are strings)."""
    return {str(int(k)): float(v) for k, v in values.items()}


def aggregate_curve(items: Iterable[Mapping[str, float]]) -> dict[str, Any]:
    """Mean per layer over samples, with bootstrap standard errors (samples resampled jointly)."""
    import numpy as np

    items = [it for it in items if it]
    if not items:
        return {"layers": [], "value": [], "stderr": [], "n": 0}
    layers = sorted({int(k) for it in items for k in it})
    table = np.full((len(items), len(layers)), np.nan)
    col = {layer: j for j, layer in enumerate(layers)}
    for i, it in enumerate(items):
        for k, v in it.items():
            table[i, col[int(k)]] = v
    mean = np.nanmean(table, axis=0)
    stderr = _bootstrap_stderr(table)
    return {
        "layers": layers,
        "value": [round(float(x), 6) for x in mean],
        "stderr": [round(float(x), 6) for x in stderr],
        "n": len(items),
    }


def _bootstrap_stderr(table: Any, iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED) -> Sequence[float]:
    import numpy as np

    n = table.shape[0]
    if n < 2:
        return [0.0] * table.shape[1]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(iters, n))
    means = np.nanmean(table[idx], axis=1)  # (iters, layers)
    return np.nanstd(means, axis=0, ddof=1)
