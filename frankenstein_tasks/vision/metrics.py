"""Per-sample metrics of the frank_vision_* tasks, for plain answers and for probe responses.

A plain answer (any ordinary model, or `frankenstein` with probe=none) gives
    accuracy               1 if the answer is right for the target image
A probe response (`contract.decode` finds a ProbeResult) gives
    accuracy               the same, for the unmodified model's answer (`baseline`)
    change_rate            per layer: 1 if the answer under the intervention differs from the baseline
                           after normalisation (`contract.changed_by_layer`)
    source_adoption_rate   per layer (visual_swap only): 1 if that answer is right for the source image
    skipped                1 if the probe could not run on the item (its `error`), else 0;
                           a skipped item contributes to no other metric
The `*_paper` tasks (`process_results_paper`) also give
    change_rate_paper      per layer, change by the authors' test (`contract.changed_by_layer_authors`)
The per-layer values are `contract.per_layer` dicts; `contract.aggregate_curve` turns them into a
curve with bootstrap standard errors. lmms-eval aggregates each metric over the samples that return
it, so the plain and the probe path each give a clean results JSON.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from frankenstein_tasks.contract import (
    ProbeResult,
    aggregate_curve,
    changed_by_layer,
    changed_by_layer_authors,
    count_skipped,
    decode,
    per_layer,
)

from .scoring import is_correct

log = logging.getLogger(__name__)

__all__ = ["aggregate_curve", "count_skipped", "plain_metrics", "probe_metrics", "process_results", "process_results_paper"]


def plain_metrics(task: str, meta: Mapping[str, Any], answer: str) -> dict[str, float]:
    return {"accuracy": float(is_correct(task, answer, meta, "target"))}


def probe_metrics(task: str, meta: Mapping[str, Any], result: ProbeResult) -> dict[str, Any]:
    answers = result.answer_by_layer()
    if result.error is not None or not answers:
        if result.error is None:  # e.g. an attention probe: numbers, no answers to score here
            log.warning("probe %s gave no per-layer answers; the item counts as skipped", result.probe)
        return {"skipped": 1.0}
    metrics: dict[str, Any] = {
        "accuracy": float(is_correct(task, result.baseline, meta, "target")),
        "change_rate": per_layer(changed_by_layer(result)),
        "skipped": 0.0,
    }
    if result.probe == "visual_swap":
        metrics["source_adoption_rate"] = per_layer(
            {layer: float(is_correct(task, a, meta, "source")) for layer, a in answers.items()}
        )
    return metrics


def process_results(doc: Mapping[str, Any], results: list[str]) -> dict[str, Any]:
    """lmms-eval's process_results for a frank_vision_* doc (see `tasks/frank_vision/utils.py`)."""
    response = results[0] if results else ""
    response = response if isinstance(response, str) else ""
    meta = json.loads(doc["meta"]) if isinstance(doc["meta"], str) else doc["meta"]
    result = decode(response)
    if result is None:
        return plain_metrics(doc["task"], meta, response)
    return probe_metrics(doc["task"], meta, result)


def process_results_paper(doc: Mapping[str, Any], results: list[str]) -> dict[str, Any]:
    """process_results of a frank_vision_*_paper doc: the same metrics, and the authors' change rate."""
    metrics = process_results(doc, results)
    result = decode(results[0]) if results and isinstance(results[0], str) else None
    if result is not None and "change_rate" in metrics:
        metrics["change_rate_paper"] = per_layer(changed_by_layer_authors(result))
    return metrics
