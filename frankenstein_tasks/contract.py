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
    * A reasoning or transfer task marks its docs with `PROMPT_STYLE_KEY: True`: the `frankenstein`
      model then uses its prompt style's system prompt (`uses_prompt_style(doc)`); other tasks get
      the usual default system prompt.
    * The model drops lmms-eval's "<image>" placeholders from the text and strips it, except in docs
      marked `VERBATIM_TEXT_KEY: True` (`verbatim_text(doc)`, the `*_paper` tasks), whose text is sent
      exactly as it is, as the authors' code sends it (their pair set's counting prompts even start
      with a literal "<image>").
    * A task that supports teacher-forced scoring (`probe=zero_ablation,scoring=logprob`) puts the
      reference answer text in the doc under `REFERENCE_ANSWER_KEY`; the model reads it with
      `reference_answer(doc)` and measures its log-likelihood after the prompt instead of generating.

Response side
    * With `probe=none` the model returns the plain answer.
    * With a probe it returns `encode(ProbeResult(...))`: a JSON object under the key
      `"frankenstein_probe"` holding the unmodified model's answer (`baseline`) and, per decoder
      layer in `layers`, the answer under the intervention (`answers`) or a number (`values`, e.g.
      the attention mass on visual tokens). A probe that cannot run on an item (e.g. target and
      source give different numbers of visual tokens) sets `error` instead, and the task counts the
      item as skipped. With scoring=logprob, `values` are the reference answer's summed
      log-likelihood per layer, `baseline_value` the unablated one and `answer_tokens` its length.
      lmms-eval logs this string as the sample's `filtered_resps`, so `--log_samples` holds every
      per-layer answer.
    * The task calls `decode(response)`: a `ProbeResult`, or None for a plain answer.

Metrics side (the shapes of the results values are declared once, in `analysis.schema`)
    * Per sample, a per-layer metric is a dict `{layer: value}` (`per_layer(...)`); its aggregation is
      `aggregate_curve`, which puts a `LayerCurve` `{"layers": [...], "value": [...], "stderr": [...],
      "n": N}` (bootstrap standard errors, `analysis.bootstrap`) in the results JSON under the
      metric's name; a group row pools its tasks' curves with `pool_across_tasks`.
    * The change rate of a layer (METHOD.md 1a) is defined once, here: `changed_by_layer`, with the
      answer normalisation `normalize_answer`; the authors' variant (long answers that contain one
      another count as unchanged), reported beside it by the `*_paper` vision tasks, is
      `changed_by_layer_authors`.
    * People read curves in the console through `curve_summary` (a sparkline and where the curve
      falls below half its peak) and `curve_table` (a compact per-layer table); the results JSON keeps
      the full curve.
    * A statistic with an interval (the transfer tasks' M_vis, M_v2r, M_rea and accuracies) is an
      `IntervalEstimate` `{"value", "low", "high", "n"}` (`is_estimate`; null value or bounds when
      undefined); transition counts are `TransitionCounts` `{"n", "TT", "TF", "FT", "FF", "net_gain",
      ...}` (`is_transitions`). The console shows them as `estimate_summary` / `transitions_summary`.
"""

from __future__ import annotations

import json
import string
from typing import Any, Iterable, Mapping, Sequence

from pydantic import field_validator

from analysis.bootstrap import bootstrap_stderr
from analysis.schema import IntervalEstimate, LayerCurve, TransitionCounts
from surgery.errors import FrankensteinError
from surgery.probes import PROBES, ProbeOutput

SOURCE_IMAGE_KEY = "source_image"
REFERENCE_ANSWER_KEY = "reference_answer"
PROMPT_STYLE_KEY = "uses_prompt_style"
VERBATIM_TEXT_KEY = "verbatim_text"
RESPONSE_KEY = "frankenstein_probe"
_TRAILING_PUNCT = string.punctuation + "。，！？"


class ProbeResult(ProbeOutput):
    """Everything a probe produced for one request: the engine's `ProbeOutput` fields, with a
    per-layer probe (not "none") and readers by layer."""

    @field_validator("probe")
    @classmethod
    def _known_probe(cls, value: str) -> str:
        if value not in PROBES or value == "none":
            raise ValueError(f"{value!r} is not a per-layer probe; probes are {', '.join(PROBES)}")
        return value

    @classmethod
    def from_output(cls, output: ProbeOutput) -> "ProbeResult":
        """The engine's plain record, as the contract's model."""
        return cls.model_validate(output.model_dump())

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
    if not isinstance(result, ProbeResult):
        result = ProbeResult.from_output(result)
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


def normalize_answer(answer: str) -> str:
    """Lower-case, strip, drop trailing punctuation: two answers are "the same" if these match."""
    return answer.strip().lower().rstrip(_TRAILING_PUNCT).strip()


def changed_by_layer(result: ProbeResult) -> dict[int, float]:
    """Per layer, 1.0 if the answer under the intervention differs from the baseline (normalised), else 0.0."""
    baseline = normalize_answer(result.baseline)
    return {layer: float(normalize_answer(a) != baseline) for layer, a in result.answer_by_layer().items()}


def changed_by_layer_authors(result: ProbeResult) -> dict[int, float]:
    """Per layer, 1.0 if the answer changed by the authors' test (`paper_protocol.answers_differ`), else 0.0."""
    from frankenstein_tasks.paper_protocol import answers_differ

    return {layer: float(answers_differ(result.baseline, a)) for layer, a in result.answer_by_layer().items()}


def reference_answer(doc: Mapping[str, Any]) -> str | None:
    """The reference answer text a task offers for teacher-forced scoring, or None."""
    value = doc.get(REFERENCE_ANSWER_KEY)
    return str(value) if value not in (None, "") else None


def uses_prompt_style(doc: Mapping[str, Any]) -> bool:
    return bool(doc.get(PROMPT_STYLE_KEY))


def verbatim_text(doc: Mapping[str, Any]) -> bool:
    return bool(doc.get(VERBATIM_TEXT_KEY))


def per_layer(values: Mapping[int, float]) -> dict[str, float]:
    """A per-sample per-layer metric value (JSON keys are strings)."""
    return {str(int(k)): float(v) for k, v in values.items()}


def aggregate_curve(items: Iterable[Mapping[str, float]]) -> dict[str, Any]:
    """Mean per layer over samples, with bootstrap standard errors (samples resampled jointly).

    A sample lacking a layer (NaN in the table) is left out of that layer's mean and of its resamples.
    One sample gives standard errors 0 (nothing to resample); no sample, an empty curve with n = 0.
    """
    import numpy as np

    items = [it for it in items if it]
    if not items:
        return LayerCurve(layers=[], value=[], stderr=[], n=0).model_dump()
    layers = sorted({int(k) for it in items for k in it})
    table = np.full((len(items), len(layers)), np.nan)
    col = {layer: j for j, layer in enumerate(layers)}
    for i, it in enumerate(items):
        for k, v in it.items():
            table[i, col[int(k)]] = v
    mean = np.nanmean(table, axis=0)
    stderr = bootstrap_stderr(table)
    return LayerCurve(
        layers=layers,
        value=[round(float(x), 6) for x in mean],
        stderr=[round(float(x), 6) for x in stderr],
        n=len(items),
    ).model_dump()


def pool_across_tasks(metrics: Sequence[Any], sizes: Sequence[int], weight_by_size: bool = True) -> Any:
    """A group's value of one metric from its tasks' values: numbers and curves alike.

    lmms-eval 0.7.3 matches a group's `aggregate_metric_list` entry by substring ("accuracy" also
    picks "accuracy_by_layer"), and its own pooling multiplies values by sizes, which fails on
    curves. This pools numbers as lmms-eval does (mean, weighted by size) and curves layer by layer:
    the mean weighted by each task's n, and the standard error of that weighted mean for independent
    tasks, sqrt(sum((n_t / N)^2 se_t^2)), N the sum of the n of the tasks that have the layer. A task
    whose value at a layer is NaN (undefined) sits out that layer; a layer no task defines is NaN.
    """
    import math

    if not any(is_curve(m) for m in metrics):
        weights = list(sizes) if weight_by_size else [1] * len(metrics)
        return sum(m * w for m, w in zip(metrics, weights)) / sum(weights)
    curves = [LayerCurve.model_validate(m) for m in metrics if is_curve(m)]
    curves = [c for c in curves if c.n]
    layers = sorted({layer for c in curves for layer in c.layers})
    value, stderr = [], []
    for layer in layers:
        here = [(*c.at(layer), c.n) for c in curves if layer in c.layers]
        here = [(v, se, n) for v, se, n in here if not math.isnan(v)]
        total = sum(n for _, _, n in here)
        if not total:
            value.append(math.nan)
            stderr.append(math.nan)
            continue
        value.append(round(sum(v * n for v, _, n in here) / total, 6))
        stderr.append(round(math.sqrt(sum((n / total * se) ** 2 for _, se, n in here)), 6))
    return LayerCurve(layers=layers, value=value, stderr=stderr, n=sum(c.n for c in curves)).model_dump()


def count_skipped(items: Iterable[float]) -> int:
    """Aggregation of a task's `skipped` metric: how many items the probe could not run on."""
    return int(sum(items))


# ---------------------------------------------------------------------------------------------
# Reading curves in a console
# ---------------------------------------------------------------------------------------------

_SPARKS = "▁▂▃▄▅▆▇█"


def is_curve(value: Any) -> bool:
    return LayerCurve.claims(value)


def sparkline(values: Sequence[float]) -> str:
    """One block character per value; rates (all within [0, 1]) on a fixed 0..1 scale, else min..max."""
    if not values:
        return ""
    lo, hi = (0.0, 1.0) if all(0.0 <= v <= 1.0 for v in values) else (min(values), max(values))
    span = (hi - lo) or 1.0
    return "".join(_SPARKS[min(len(_SPARKS) - 1, int((v - lo) / span * len(_SPARKS)))] for v in values)


def half_peak_layer(curve: Mapping[str, Any]) -> int | None:
    """The first layer after the peak whose value falls below half the peak (None if it never does)."""
    values, layers = list(curve["value"]), list(curve["layers"])
    if not values:
        return None
    top = max(range(len(values)), key=lambda j: values[j])
    peak = values[top]
    return next((layers[j] for j in range(top + 1, len(values)) if values[j] < peak / 2), None)


def curve_summary(curve: Mapping[str, Any]) -> str:
    """A short cell for a console table, e.g. `▇▇▆▅▃▂▁▁ peak 0.94 @L0, <½ from L5 (n=100)`."""
    values, layers = list(curve["value"]), list(curve["layers"])
    if not values:
        return f"(no layers, n={curve.get('n', 0)})"
    top = max(range(len(values)), key=lambda j: values[j])
    half = half_peak_layer(curve)
    tail = f", <½ from L{half}" if half is not None else ""
    return f"{sparkline(values)} peak {values[top]:.2f} @L{layers[top]}{tail} (n={curve.get('n', 0)})"


def curve_table(curves: Mapping[str, Mapping[str, Any]]) -> str:
    """A compact per-layer table, one row per decoder layer and one column per named curve."""
    names = list(curves)
    layers = sorted({int(layer) for c in curves.values() for layer in c["layers"]})
    width = max([len(n) for n in names] + [6])
    lines = ["layer  " + "  ".join(f"{n:>{width}}" for n in names)]
    values = {n: dict(zip((int(x) for x in c["layers"]), c["value"])) for n, c in curves.items()}
    for layer in layers:
        cells = [values[n].get(layer) for n in names]
        lines.append(f"{layer:>5}  " + "  ".join(f"{'' if v is None else f'{v:.3f}':>{width}}" for v in cells))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Estimates with intervals, and transition counts, in a console
# ---------------------------------------------------------------------------------------------


def is_estimate(value: Any) -> bool:
    """An estimate as results hold it: `{"value", "low", "high", "n"}`."""
    return IntervalEstimate.claims(value)


def estimate_summary(value: Mapping[str, Any], digits: int = 2) -> str:
    """e.g. `0.42 [0.33, 0.51] (n=100)`; `n/a (n=0)` when undefined; no brackets without an interval."""
    n = f"(n={value.get('n', 0)})"
    if value.get("value") is None:
        return f"n/a {n}"
    interval = ""
    if value.get("low") is not None and value.get("high") is not None:
        interval = f" [{value['low']:.{digits}f}, {value['high']:.{digits}f}]"
    return f"{value['value']:.{digits}f}{interval} {n}"


def is_transitions(value: Any) -> bool:
    return TransitionCounts.claims(value)


def transitions_summary(value: Mapping[str, Any]) -> str:
    """e.g. `TT 40 TF 3 FT 9 FF 48, net +6`."""
    net = value["net_gain"].get("value") if isinstance(value["net_gain"], Mapping) else value["net_gain"]
    net_text = "n/a" if net is None else f"{round(net):+d}"
    return f"TT {value['TT']} TF {value['TF']} FT {value['FT']} FF {value['FF']}, net {net_text}"
