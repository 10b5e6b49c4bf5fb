"""Per-layer results through a task's own filters, metrics and aggregation, in either harness.

A sweeping `frankenstein` model (probe=zero_ablation) answers every request once per ablated layer
in one batched pass and hands the harness only the unablated responses, which the harness scores
as usual. After the harness's `evaluate` has run, `score_layers` puts each layer's responses into the
same task objects (generated answers, `(log-likelihood, is_greedy)` pairs or rolling
log-likelihoods: whatever the request type returns), runs the task's own filters and
`process_results`, and aggregates per layer with the task's own aggregation functions. lm-eval's and
lmms-eval's task objects share that API (`instances`, `apply_filters`, `process_results`,
`aggregation`), so this one module serves both harness models; each wraps its harness's `evaluate`
(`lm_eval_model.install_layer_scoring`, `frankenstein.install_layer_scoring`).

Under data parallel every rank scores the docs it ran and rank 0 merges them (`torch.distributed`).
The section lands in the results as `results["frankenstein"]`:

    layers                                    the swept decoder layers
    layer_scores[task]["<metric>,<filter>"]   a curve over layers (`contract.aggregate_curve` shape)
    layer_drops[task][...]                    unablated minus ablated, per item (mean-aggregated metrics)
    answers[task][doc_id][layer]              generated answers
    loglikelihoods[task][doc_id][layer]       per request of the doc, in order: [ll, is_greedy], or ll
    docs_by_rank[task]                        the doc ids each rank scored
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

from frankenstein_tasks import contract

RESULTS_KEY = "frankenstein"

Key = tuple[str, Any, int]  # (task name, doc id, request index within the doc)


def request_key(instance: Any) -> Key:
    return (instance.task_name, instance.doc_id, instance.idx)


def score_layers(
    tasks: Mapping[str, Any],
    layers: Sequence[int],
    responses: Mapping[Key, Mapping[int, Any]],
    *,
    doc_of: Callable[[Any, Any], Any],
    mean: Callable[[list], float],
) -> dict[str, Any] | None:
    """The results section (see the module docstring), on rank 0; None on the other ranks.

    `responses[key][layer]` is what the model would have returned for that request with that layer
    ablated; `doc_of(task, instance)` the doc a request belongs to; `mean` the harness's own mean
    aggregation (metrics it aggregates get per-item drops and bootstrap errors).
    """
    local: dict[str, Any] = {}
    for name, task in tasks.items():
        instances = [inst for inst in (task.instances or []) if request_key(inst) in responses]
        if instances:
            local[name] = _score_task(task, instances, layers, responses, doc_of)
    rank, world = _distributed()
    gathered = _gather(local, rank, world)
    if gathered is None:
        return None
    section: dict[str, Any] = {"layers": list(layers), "layer_scores": {}, "layer_drops": {}, "answers": {},
                               "loglikelihoods": {}, "docs_by_rank": {}}
    for name in dict.fromkeys(n for part in gathered for n in part):
        parts = [part[name] for part in gathered if name in part]
        per_doc = {layer: _merge([p["metrics"][layer] for p in parts]) for layer in [None, *layers]}
        aggregation = tasks[name].aggregation() if name in tasks else {}
        section["layer_scores"][name], section["layer_drops"][name] = _curves(per_doc, layers, aggregation, mean)
        kind = parts[0]["kind"]
        section[kind][name] = {doc: by_layer for p in parts for doc, by_layer in p["responses"].items()}
        section["docs_by_rank"][name] = [sorted(p["docs"]) for p in parts] if world > 1 else [sorted(parts[0]["docs"])]
    return section


def _score_task(task: Any, instances: list[Any], layers: Sequence[int], responses: Mapping[Key, Any], doc_of: Callable) -> dict:
    baseline = {request_key(inst): list(inst.resps) for inst in instances}
    metrics = {layer: _doc_metrics(task, instances, responses, layer, doc_of) for layer in [None, *layers]}
    for inst in instances:  # leave the task as the harness left it
        inst.resps, inst.filtered_resps = baseline[request_key(inst)], {}
    task.apply_filters()
    generated = all(inst.request_type.startswith("generate") for inst in instances)
    by_doc: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for inst in sorted(instances, key=lambda i: (str(i.doc_id), i.idx)):
        for layer in layers:
            value = responses[request_key(inst)][layer]
            by_doc[str(inst.doc_id)][str(layer)].append(list(value) if isinstance(value, tuple) else value)
    if generated:  # one answer per doc
        shown: dict = {doc: {layer: values[0] for layer, values in per_layer.items()} for doc, per_layer in by_doc.items()}
    else:
        shown = {doc: dict(per_layer) for doc, per_layer in by_doc.items()}
    return {"metrics": metrics, "responses": shown, "kind": "answers" if generated else "loglikelihoods",
            "docs": sorted({inst.doc_id for inst in instances}, key=str)}


def _doc_metrics(task: Any, instances: list[Any], responses: Mapping[Key, Any], layer: int | None,
                 doc_of: Callable) -> dict[tuple[str, str], dict[Any, Any]]:
    """(metric, filter) -> doc_id -> value, with every request answered as with layer `layer` ablated
    (None: unablated, the harness's own responses)."""
    if layer is not None:
        for inst in instances:
            inst.resps, inst.filtered_resps = [responses[request_key(inst)][layer]], {}
        task.apply_filters()
    by_doc: dict[Any, list[Any]] = defaultdict(list)
    for inst in sorted(instances, key=lambda i: (str(i.doc_id), i.idx)):
        by_doc[inst.doc_id].append(inst)
    out: dict[tuple[str, str], dict[Any, Any]] = defaultdict(dict)
    for doc_id, group in by_doc.items():
        doc = doc_of(task, group[0])
        for filter_key in group[0].filtered_resps:
            metrics = task.process_results(doc, [inst.filtered_resps[filter_key] for inst in group])
            for metric, value in metrics.items():
                out[(metric, filter_key)][doc_id] = value
    return dict(out)


def _merge(parts: list[dict[tuple[str, str], dict[Any, Any]]]) -> dict[tuple[str, str], dict[Any, Any]]:
    merged: dict[tuple[str, str], dict[Any, Any]] = defaultdict(dict)
    for part in parts:
        for key, by_doc in part.items():
            merged[key].update(by_doc)
    return dict(merged)


def _curves(per_doc: dict[int | None, Any], layers: Sequence[int], aggregation: Mapping[str, Any],
            mean: Callable) -> tuple[dict[str, Any], dict[str, Any]]:
    layers = list(layers)
    scores, drops = {}, {}
    for metric, filter_key in per_doc[None]:
        name = f"{metric},{filter_key}"
        base = per_doc[None][(metric, filter_key)]
        by_layer = {layer: per_doc[layer][(metric, filter_key)] for layer in layers}
        docs = sorted(base, key=str)
        agg = aggregation.get(metric, mean)
        if agg is mean:  # per-item values: a curve with bootstrap stderr, and the per-item drop
            scores[name] = contract.aggregate_curve([{str(layer): float(by_layer[layer][d]) for layer in layers} for d in docs])
            drops[name] = contract.aggregate_curve(
                [{str(layer): float(base[d]) - float(by_layer[layer][d]) for layer in layers} for d in docs]
            )
        else:  # corpus-level metrics (perplexity, BLEU): the task's own aggregation per layer, no stderr
            values = [float(agg([by_layer[layer][d] for d in docs])) for layer in layers]
            scores[name] = {"layers": layers, "value": values, "stderr": [None] * len(layers), "n": len(docs)}
    return scores, drops


def _distributed() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(local: Any, rank: int, world: int) -> list[Any] | None:
    """Every rank's `local` on rank 0 (in rank order), None elsewhere."""
    if world == 1:
        return [local]
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(local, gathered, dst=0)
    return gathered


def print_curves(section: Mapping[str, Any]) -> None:
    for task, curves in section["layer_scores"].items():
        named = {key: curve for key, curve in curves.items() if curve["layers"]}
        if named:
            print(f"\n{task}: score per ablated decoder layer (the task's own metrics)\n" + contract.curve_table(named))
