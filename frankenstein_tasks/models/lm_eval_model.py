"""The `frankenstein` lm-eval model: lm-eval's own tasks (leaderboards included), per ablated layer.

    from frankenstein_tasks.models.lm_eval_model import FrankensteinLM
    lm = FrankensteinLM(pretrained="Qwen/Qwen2.5-7B", probe="zero_ablation")
    results = lm_eval.simple_evaluate(model=lm, tasks=["gsm8k", "arc_easy"])
    results["frankenstein"]["layer_scores"]["arc_easy"]["acc,none"]  # a curve over ablated layers

    frankenstein lm-eval run --model frankenstein --model_args pretrained=...,probe=zero_ablation --tasks arc_easy
    frankenstein lm-eval run --model frankenstein --model_args in=IN,rl=RL,splice=mid_late --tasks leaderboard

It runs text-only Qwen2 / Qwen2.5 causal LMs and the text path of Qwen2.5-VL / Qwen2-VL checkpoints
(or an in-memory Frankenstein splice of two, `in=,rl=,splice=,cuts=`) through the same engine as the
lmms-eval model, with the same model args (`model_args.ModelArgs`), and serves every lm-eval request
type: `generate_until` (greedy), `loglikelihood` (multiple choice) and `loglikelihood_rolling`
(perplexity). Log-likelihoods follow lm-eval's own Hugging Face model (`lm_eval.models.huggingface`):
requests are tokenized by lm-eval's `TemplateLM` (context / continuation split, empty contexts),
inputs longer than `max_length` lose tokens on the left, rolling windows come from lm-eval's
`get_rolling_token_windows`, and `is_greedy` means every continuation token is the argmax. So with
probe=none the numbers are those of lm-eval's `hf` model on the same checkpoint.

How per-layer scores come from lm-eval's own metrics without calling lm-eval once per layer: the
model answers every request of a run in one batched sweep (items x layers: `surgery.ablation` for
answers, `surgery.loglikelihood` for log-likelihoods, contexts prefilled once for all their
continuations), returns the unablated responses to lm-eval (which scores them as usual) and keeps
every layer's. Importing this module wraps `lm_eval.evaluator.evaluate`, which `simple_evaluate` and
the lm-eval CLI call: for a sweeping `FrankensteinLM`, `layer_scores.score_layers` then runs each
layer's responses through the tasks' own filters, `process_results` and aggregation; the curves
land under `results["frankenstein"]` (saved in lm-eval's results JSON; see `layer_scores`).

Data parallel: under `torchrun --nproc_per_node N` (or `accelerate launch`, which sets the same
environment) each process joins a `torch.distributed` group (gloo on CPU, one GPU per process with
NCCL), lm-eval gives each rank its share of the docs, and rank 0 merges results and per-layer scores.

lm-eval 0.4.x has no entry point for third-party models, so the shell route is
`frankenstein lm-eval ...`: it imports this module (which registers the model name `frankenstein`
with lm-eval's registry) and hands its arguments to lm-eval's own CLI.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from typing import Any

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from frankenstein_tasks.models.layer_scores import RESULTS_KEY, print_curves, request_key, score_layers
from frankenstein_tasks.models.model_args import ModelArgs, greedy_until, load_runner, request_chunks
from surgery.errors import FrankensteinError

DEFAULT_MAX_LENGTH = 2048  # lm-eval's HFLM default when neither the config nor the tokenizer says


@register_model("frankenstein")
class FrankensteinLM(TemplateLM):
    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        from surgery.loading import resolve_device

        args = ModelArgs.parse(**model_args)
        if args.probe not in ("none", "zero_ablation") or args.scoring != "generate":
            raise FrankensteinError(
                f"the lm-eval frankenstein model runs probe=none or probe=zero_ablation; "
                f"got probe={args.probe}, scoring={args.scoring}"
            )
        self._rank, self._world_size = join_process_group()
        device = args.device
        if self._world_size > 1 and device in (None, "auto") and _cuda():
            device = f"cuda:{os.environ.get('LOCAL_RANK', self._rank)}"  # one GPU per process
        self._device = resolve_device(device)
        loaded = load_runner(args, self._device)
        self.runner, self.style = loaded.runner, loaded.style
        self.system_prompt = args.system_prompt
        self._max_length = args.max_length
        # (task, doc_id, idx) -> ablated layer -> what the request returns with that layer ablated
        self.layer_responses: dict[tuple[str, Any, int], dict[int, Any]] = {}
        self._scored: list[Any] = []  # outcomes of the last `_loglikelihood_tokens` call, for `loglikelihood`

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

    # -- lm-eval's interface: tokens and processes ---------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self.runner.tokenizer

    @property
    def tokenizer_name(self) -> str:
        return getattr(self.tokenizer, "name_or_path", "frankenstein").replace("/", "__")

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        # What an empty context and the first rolling window condition on (as lm-eval's HFLM).
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        if self._max_length:
            return self._max_length
        from lm_eval.models.utils import resolve_max_length

        return resolve_max_length(self.runner.model.config, self.tokenizer, default=DEFAULT_MAX_LENGTH)

    @property
    def device(self) -> Any:
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        # As lm-eval's HFLM: the tokenizer's own default, except for a string that already starts with the prefix token.
        special = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        if add_special_tokens is None and string.startswith(self.tokenizer.decode(self.prefix_token_id)):
            special = {"add_special_tokens": False}
        return self.tokenizer.encode(string, **special)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False, add_generation_prompt=add_generation_prompt)

    def all_gather(self, tensor: Any) -> Any:
        if self.world_size == 1:
            return tensor
        import torch
        import torch.distributed as dist

        parts = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return torch.stack(parts)

    def gather_object(self, obj: Any, dst: int = 0) -> Any:
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        gathered = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, gathered, dst=dst)
        return gathered

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    # -- requests ------------------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        rows_per_item = 1 + len(self.layers) if self.sweeps_layers else 1
        answers: list[str | None] = [None] * len(requests)
        desc = f"frankenstein ({self.runner.config.probe})"
        with tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc=desc) as bar:
            for chunk in request_chunks(requests, range(len(requests)), rows_per_item, self.runner.config.max_batch_rows):
                batch = [self._request(requests[i]) for i in chunk]
                for i, output in zip(chunk, self.runner.run(batch)):
                    answers[i] = output.baseline
                    if self.sweeps_layers:
                        self.layer_responses[request_key(requests[i])] = dict(zip(output.layers, output.answers))
                bar.update(len(chunk))
        return answers  # type: ignore[return-value]

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        # lm-eval's TemplateLM tokenizes (its context / continuation rule) and calls _loglikelihood_tokens.
        results = super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        if self.sweeps_layers:
            for instance, outcome in zip(requests, self._scored):
                self.layer_responses[request_key(instance)] = {
                    layer: (score.logprob, score.is_greedy) for layer, score in outcome.by_layer.items()
                }
        self._scored = []
        return results

    def _loglikelihood_tokens(self, requests: list[Any], disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        """`requests`: ((context, continuation) or None, context tokens, continuation tokens), as lm-eval builds them."""
        self._scored = self._score([(ctx, cont) for _, ctx, cont in requests], disable_tqdm, "loglikelihood")
        results = []
        for (strings, _, _), outcome in zip(requests, self._scored):
            answer = (outcome.baseline.logprob, outcome.baseline.is_greedy)
            if strings is not None:
                self.cache_hook.add_partial("loglikelihood", strings, answer)
            results.append(answer)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """The whole string's log-likelihood, in disjoint windows of `max_length` tokens (lm-eval's rule)."""
        from lm_eval import utils

        windows, owner = [], []
        for k, (string,) in enumerate(request.args for request in requests):
            for window in utils.get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1
            ):
                windows.append(utils.make_disjoint_window(window))
                owner.append(k)
        outcomes = self._score(windows, disable_tqdm, "loglikelihood_rolling")
        totals = [0.0] * len(requests)
        per_layer: list[dict[int, float]] = [defaultdict(float) for _ in requests]
        for k, outcome in zip(owner, outcomes):  # a request's windows add up (is_greedy is dropped, as in lm-eval)
            totals[k] += outcome.baseline.logprob
            for layer, score in outcome.by_layer.items():
                per_layer[k][layer] += score.logprob
        for request, total, layered in zip(requests, totals, per_layer):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
            if self.sweeps_layers:
                self.layer_responses[request_key(request)] = {layer: layered[layer] for layer in self.layers}
        return totals

    def _score(self, pairs: list[tuple[list[int], list[int]]], disable_tqdm: bool, what: str) -> list[Any]:
        """Engine outcomes for (context tokens, continuation tokens) pairs; equal contexts are prefilled once."""
        contexts, index, continuations = [], {}, []
        for context, continuation in pairs:
            context = self._fit(list(context), list(continuation))
            key = tuple(context)
            if key not in index:
                index[key] = len(contexts)
                contexts.append(self.runner.encode_ids(context))
            continuations.append((index[key], list(continuation)))
        desc = f"frankenstein {what} ({self.runner.config.probe})"
        with tqdm(total=len(continuations), disable=disable_tqdm or self.rank != 0, desc=desc, unit="request") as bar:
            return self.runner.score(contexts, continuations, progress=bar)

    def _fit(self, context: list[int], continuation: list[int]) -> list[int]:
        """The context tokens the model sees: cut from the left so context + continuation fits
        `max_length` + 1 (the last continuation token is predicted, never fed), as lm-eval's HFLM."""
        if not continuation or len(continuation) > self.max_length:
            raise FrankensteinError(
                f"a continuation of {len(continuation)} tokens cannot be scored with max_length={self.max_length}"
            )
        whole = (context + continuation)[-(self.max_length + 1) :]
        return whole[: len(whole) - len(continuation)]

    def _request(self, instance: Any) -> Any:
        from surgery.probes import ProbeRequest

        context, gen_kwargs = instance.args[0], dict(instance.args[1] or {})
        until = greedy_until(gen_kwargs, instance.task_name)
        budget = gen_kwargs.get("max_gen_toks") or gen_kwargs.get("max_new_tokens")
        # lm-eval hands over the whole prompt as text (its chat template already applied, if asked).
        return ProbeRequest(
            text=context, chat=False, max_new_tokens=int(budget) if budget else None, until=[u for u in until if u]
        )


def join_process_group() -> tuple[int, int]:
    """(rank, world size): under a multi-process launcher (WORLD_SIZE > 1: torchrun, accelerate launch)
    this process joins the `torch.distributed` group (NCCL with GPUs, gloo on CPU); else (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if _cuda() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------
# Per-layer scoring with lm-eval's own task objects
# ---------------------------------------------------------------------------------------------


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


def add_group_curves(section: dict[str, Any], task_dict: Any) -> None:
    """Per-layer curves of lm-eval's groups (mmlu, leaderboard_bbh, ...): each group's own aggregation
    (`Group.aggregate`: its metrics, filters and size weighting) over its tasks' values at each layer."""
    groups = task_dict.get("groups", {}) if isinstance(task_dict, dict) else {}
    layers = section["layers"]
    leaves = section["layer_scores"]
    for name, group in groups.items():
        per_layer = []
        for k in range(len(layers)):
            metrics = {task: {**{key: c["value"][k] for key, c in curves.items() if c["layers"] == layers},
                              "sample_len": max((c["n"] for c in curves.values()), default=0)}
                       for task, curves in leaves.items()}
            per_layer.append(group.aggregate(metrics))
        keys = [key for key in per_layer[0] if "," in key and "_stderr" not in key] if per_layer else []
        if keys:
            n = per_layer[0].get("sample_len", 0)
            section["layer_scores"][name] = {key: {"layers": layers, "value": [float(m[key]) for m in per_layer],
                                                   "stderr": [None] * len(layers), "n": n} for key in keys}


def install_layer_scoring() -> None:
    """Wrap `lm_eval.evaluator.evaluate` so that sweeping FrankensteinLM runs get per-layer scores."""
    import lm_eval.evaluator as evaluator
    from lm_eval.api.metrics import mean

    if getattr(evaluator.evaluate, "_frankenstein", False):
        return
    original = evaluator.evaluate

    @functools.wraps(original)
    def evaluate(lm: Any, task_dict: Any, *args: Any, **kwargs: Any) -> Any:
        results = original(lm, task_dict, *args, **kwargs)
        if isinstance(lm, FrankensteinLM) and lm.sweeps_layers:
            # Every rank scores its own docs (score_layers gathers them); rank 0 holds the results.
            section = score_layers(_leaf_tasks(task_dict), lm.layers, lm.layer_responses,
                                   doc_of=lambda task, instance: instance.doc, mean=mean)
            if results is not None and section is not None:
                add_group_curves(section, task_dict)
                results[RESULTS_KEY] = section
                print_curves(section)
        return results

    evaluate._frankenstein = True
    evaluator.evaluate = evaluate


install_layer_scoring()
