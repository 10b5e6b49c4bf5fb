"""The `frankenstein` lm-eval model: zero-ablation sweeps on lm-eval's own tasks, scored by lm-eval.

    from frankenstein_tasks.models.lm_eval_model import FrankensteinLM
    lm = FrankensteinLM(pretrained="Qwen/Qwen2.5-7B", probe="zero_ablation")
    results = lm_eval.simple_evaluate(model=lm, tasks=["gsm8k"])
    results["frankenstein"]["layer_scores"]["gsm8k"]["exact_match,strict-match"]  # a curve over layers

    frankenstein lm-eval --model frankenstein --model_args pretrained=...,probe=zero_ablation --tasks gsm8k

It runs text-only Qwen2 / Qwen2.5 causal LMs and the text path of Qwen2.5-VL / Qwen2-VL checkpoints
through the same engine as the lmms-eval model, with the same model args (`model_args.ModelArgs`).

How per-layer scores come from lm-eval's own metrics without calling lm-eval once per layer: the
model answers every request of a run in one batched sweep (items x layers, `surgery.ablation`),
returns the unablated answers to lm-eval (which scores them as usual) and keeps every layer's
answers. Importing this module wraps `lm_eval.evaluator.evaluate`, which `simple_evaluate` and the
lm-eval CLI call: when the model is a sweeping `FrankensteinLM`, after lm-eval has scored the
unablated answers the wrapper puts each layer's answers into the same task objects, runs the task's
own filters (`apply_filters`) and `process_results`, and aggregates with the task's own aggregation
functions. The curves land under `results["frankenstein"]` (saved in lm-eval's results JSON):
`layer_scores[task]["<metric>,<filter>"]` and, for metrics aggregated by a mean,
`layer_drops[task]["<metric>,<filter>"]` (unablated minus ablated, per item, bootstrap stderr), plus
`answers[task][doc_id][layer]` with every layer's raw answer.

lm-eval 0.4.x has no entry point for third-party models, so the shell route is
`frankenstein lm-eval ...`: it imports this module (which registers the model name `frankenstein`
with lm-eval's registry) and hands its arguments to lm-eval's own CLI.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from frankenstein_tasks import contract
from frankenstein_tasks.models.model_args import ModelArgs, greedy_until, load_runner, request_chunks
from surgery.errors import FrankensteinError

RESULTS_KEY = "frankenstein"


@register_model("frankenstein")
class FrankensteinLM(LM):
    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        from surgery.loading import resolve_device

        args = ModelArgs.parse(**model_args)
        if args.probe not in ("none", "zero_ablation") or args.scoring != "generate":
            raise FrankensteinError(
                f"the lm-eval frankenstein model runs probe=none or probe=zero_ablation (generated answers); "
                f"got probe={args.probe}, scoring={args.scoring}"
            )
        self._device = resolve_device(args.device)
        loaded = load_runner(args, self._device)
        self.runner, self.style = loaded.runner, loaded.style
        self.system_prompt = args.system_prompt
        self.layer_answers: dict[tuple[str, int, int], dict[int, str]] = {}  # (task, doc_id, idx) -> layer -> answer

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None) -> "FrankensteinLM":
        # lm-eval adds --device / --batch_size as extra config; model args given explicitly win.
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None) -> "FrankensteinLM":
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @property
    def sweeps_layers(self) -> bool:
        return self.runner.config.probe == "zero_ablation"

    @property
    def layers(self) -> list[int]:
        return self.runner.layers

    # -- lm-eval's interface -------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return getattr(self.runner.tokenizer, "name_or_path", "frankenstein").replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.runner.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        raise FrankensteinError("the frankenstein lm-eval model generates; loglikelihood tasks are not supported")

    def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
        raise FrankensteinError("the frankenstein lm-eval model generates; loglikelihood tasks are not supported")

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        rows_per_item = 1 + len(self.layers) if self.sweeps_layers else 1
        answers: list[str | None] = [None] * len(requests)
        with tqdm(total=len(requests), disable=disable_tqdm, desc=f"frankenstein ({self.runner.config.probe})") as bar:
            for chunk in request_chunks(requests, range(len(requests)), rows_per_item, self.runner.config.max_batch_rows):
                batch = [self._request(requests[i]) for i in chunk]
                for i, output in zip(chunk, self.runner.run(batch)):
                    answers[i] = output.baseline
                    if self.sweeps_layers:
                        self.layer_answers[_key(requests[i])] = dict(zip(output.layers, output.answers))
                bar.update(len(chunk))
        return answers  # type: ignore[return-value]

    def _request(self, instance: Any) -> Any:
        from surgery.probes import ProbeRequest

        context, gen_kwargs = instance.args[0], dict(instance.args[1] or {})
        until = greedy_until(gen_kwargs, instance.task_name)
        budget = gen_kwargs.get("max_gen_toks") or gen_kwargs.get("max_new_tokens")
        # lm-eval hands over the whole prompt as text (its chat template already applied, if asked).
        return ProbeRequest(
            text=context, chat=False, max_new_tokens=int(budget) if budget else None, until=[u for u in until if u]
        )


def _key(instance: Any) -> tuple[str, int, int]:
    return (instance.task_name, instance.doc_id, instance.idx)


# ---------------------------------------------------------------------------------------------
# Per-layer scoring with lm-eval's own task objects
# ---------------------------------------------------------------------------------------------


def score_layers(lm: FrankensteinLM, task_dict: Any) -> dict[str, Any]:
    """Per task, per (metric, filter): the curve over ablated layers, scored by the task itself."""
    scores: dict[str, Any] = {}
    drops: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    for name, task in _leaf_tasks(task_dict).items():
        instances = [inst for inst in (task.instances or []) if inst.request_type == "generate_until"]
        if not instances:
            continue
        baseline = {_key(inst): list(inst.resps) for inst in instances}
        per_doc = {layer: _doc_metrics(task, instances, lm, layer) for layer in [None, *lm.layers]}
        for inst in instances:  # leave the task as lm-eval left it
            inst.resps, inst.filtered_resps = baseline[_key(inst)], {}
        task.apply_filters()
        scores[name], drops[name] = _curves(task, per_doc, lm.layers)
        answers[name] = {
            str(doc_id): {str(layer): lm.layer_answers[(name, doc_id, idx)][layer] for layer in lm.layers}
            for (_, doc_id, idx) in baseline
            if (name, doc_id, idx) in lm.layer_answers
        }
    return {"layers": lm.layers, "layer_scores": scores, "layer_drops": drops, "answers": answers}


def _doc_metrics(task: Any, instances: list[Any], lm: FrankensteinLM, layer: int | None) -> dict[tuple[str, str], dict[int, Any]]:
    """(metric, filter) -> doc_id -> value, with every instance answering as layer `layer` (None: unablated)."""
    if layer is not None:
        for inst in instances:
            inst.resps, inst.filtered_resps = [lm.layer_answers[_key(inst)][layer]], {}
        task.apply_filters()
    by_doc: dict[int, list[Any]] = defaultdict(list)
    for inst in sorted(instances, key=lambda i: (i.doc_id, i.idx)):
        by_doc[inst.doc_id].append(inst)
    out: dict[tuple[str, str], dict[int, Any]] = defaultdict(dict)
    for doc_id, group in by_doc.items():
        for filter_key in group[0].filtered_resps:
            metrics = task.process_results(group[0].doc, [inst.filtered_resps[filter_key] for inst in group])
            for metric, value in metrics.items():
                out[(metric, filter_key)][doc_id] = value
    return out


def _curves(task: Any, per_doc: dict[int | None, Any], layers: list[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    from lm_eval.api.metrics import mean

    aggregation = task.aggregation()
    scores, drops = {}, {}
    for metric, filter_key in per_doc[None]:
        name = f"{metric},{filter_key}"
        by_layer = {layer: per_doc[layer][(metric, filter_key)] for layer in layers}
        agg = aggregation.get(metric, mean)
        if agg is mean:  # per-item values: a curve with bootstrap stderr, and the per-item drop
            docs = sorted(per_doc[None][(metric, filter_key)])
            items = [{str(layer): float(by_layer[layer][d]) for layer in layers} for d in docs]
            scores[name] = contract.aggregate_curve(items)
            base = per_doc[None][(metric, filter_key)]
            drops[name] = contract.aggregate_curve(
                [{str(layer): float(base[d]) - float(by_layer[layer][d]) for layer in layers} for d in docs]
            )
        else:  # corpus-level metrics (e.g. BLEU): the task's own aggregation per layer, no stderr
            values = [float(agg(list(by_layer[layer].values()))) for layer in layers]
            scores[name] = {"layers": layers, "value": values, "stderr": [None] * len(layers), "n": len(per_doc[None][(metric, filter_key)])}
    return scores, drops


def _leaf_tasks(task_dict: Any) -> dict[str, Any]:
    """Task name -> Task object, from lm-eval's task dict (new or nested format)."""
    from lm_eval.api.task import Task

    if isinstance(task_dict, dict) and "tasks" in task_dict:
        return dict(task_dict["tasks"])
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        for key, value in (node.items() if isinstance(node, dict) else []):
            if isinstance(value, Task):
                found[getattr(key, "group_name", key) if not isinstance(key, str) else key] = value
            else:
                walk(value)

    walk(task_dict)
    return found


def install_layer_scoring() -> None:
    """Wrap `lm_eval.evaluator.evaluate` so that sweeping FrankensteinLM runs get per-layer scores."""
    import lm_eval.evaluator as evaluator

    if getattr(evaluator.evaluate, "_frankenstein", False):
        return
    original = evaluator.evaluate

    @functools.wraps(original)
    def evaluate(lm: Any, task_dict: Any, *args: Any, **kwargs: Any) -> Any:
        results = original(lm, task_dict, *args, **kwargs)
        if results is not None and isinstance(lm, FrankensteinLM) and lm.sweeps_layers:
            results[RESULTS_KEY] = score_layers(lm, task_dict)
            _print_curves(results[RESULTS_KEY])
        return results

    evaluate._frankenstein = True
    evaluator.evaluate = evaluate


def _print_curves(scored: dict[str, Any]) -> None:
    for task, curves in scored["layer_scores"].items():
        named = {key: curve for key, curve in curves.items() if curve["stderr"] and curve["stderr"][0] is not None}
        if named:
            print(f"\n{task}: score per ablated decoder layer (lm-eval's own metrics)\n" + contract.curve_table(named))


install_layer_scoring()
