"""The `frankenstein` lmms-eval model: Qwen2.5-VL / Qwen2-VL / Qwen3-VL / InternVL through HF transformers, with probes.

    lmms_eval --model frankenstein \\
        --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct,probe=visual_swap,layers=all \\
        --tasks frank_vision_counting --log_samples --output_path results/

Model args (all optional except the checkpoint):
    pretrained=PATH|ID       the checkpoint; or an in-memory Frankenstein splice:
    in=PATH|ID,rl=PATH|ID,splice=mid_late[,cuts=8:20]
    device=auto|cpu|cuda[:N] (auto: CUDA when available; under `accelerate launch` one GPU per process)
    device_map=auto          a model larger than one device, dispatched by accelerate over the GPUs (and CPU)
    dtype=auto|bfloat16|float16|float32 (auto: bfloat16 on GPU, float32 on CPU)
    attn_implementation=sdpa|eager|flash_attention_2
    probe=none|visual_swap|zero_ablation|attention (default none: an ordinary generator)
    layers=all|5|0-9|0-27:3|1;3;5 decoder layers a probe sweeps (default all)
    swap_mode=from|only|window, window=N  (visual_swap: layers >= L, only L, or L..L+N-1)
    swap_decode=prefill|reinsert  (visual_swap: swap in the prefill only, the method; reinsert: also
                             re-insert the source's visual K/V at every decoding step, as the authors'
                             code does, to compare with published curves; docs/METHOD.md, deviations)
    scoring=generate|logprob (zero_ablation: answers, or the reference answer's log-likelihood; no generation)
    ablate=LAYERS            (probe=none) zero-ablate these layers in every answer
    prompt_style=base|reasoner|revisual  system prompt of reasoning tasks (default: from the checkpoint id)
    max_batch_rows=N         rows decoded together (default 128 on GPU, 16 on CPU; a swept item takes 1 + len(layers) rows)
    max_new_tokens=N         used when the task's generation_kwargs give none (default 256)
    system_prompt=TEXT       overrides every task's system prompt ("" for none)
    response_cache=DIR       keep every finished response in DIR; a rerun (e.g. after a kill) reuses those
                             whose weights, answer-deciding args, prompt and generation settings match
    min_pixels=N, max_pixels=N, allow_pickle=true

Decoding is greedy (the method's setting); a task asking for sampling is refused. For each task the
first prompt, exactly as tokenized (system prompt, user turn, chat template; image placeholders counted)
and its new-token budget go to stderr once, so a run's log shows what the model was asked. The engine
(`surgery.probes.ProbeRunner`) returns plain `ProbeOutput`s; this class encodes them for the tasks
as `frankenstein_tasks.contract` describes.

Log-likelihood requests (`output_type: loglikelihood` and `multiple_choice`, images included) run
with probe=none (`ablate=` allowed) or probe=zero_ablation, teacher-forced (`surgery.loglikelihood`:
a context is prefilled once for all its continuations). The context is the prompt exactly as for
generation (chat template, images, system prompt, ready for the answer); the continuation's tokens
are those of prompt + continuation tokenized whole, past the prompt's own (lm-eval's rule). Each
request gets lmms-eval's convention, that of its own Hugging Face models (llava, llava_hf): the mean
negative log-likelihood per continuation token and whether the continuation is the greedy one;
lmms-eval's multiple-choice scoring takes the lowest. With probe=zero_ablation every layer's values
go through the task's own metrics (`layer_scores`, under `results["frankenstein"]`), as in lm-eval.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from loguru import logger as eval_logger
from tqdm import tqdm

from frankenstein_tasks import contract
from frankenstein_tasks.models.layer_scores import RESULTS_KEY, print_curves, request_key, score_layers
from frankenstein_tasks.models.model_args import ModelArgs, greedy_until, load_runner, request_chunks
from surgery.errors import FrankensteinError
from surgery.prompts import DEFAULT_SYSTEM_PROMPT

IMAGE_PAD = "<|image_pad|>"  # Qwen's visual placeholder token; a prompt shown in the log counts them

# Probes whose every item becomes 1 + len(layers) rows of a batch.
SWEEPING_PROBES = ("visual_swap", "zero_ablation")


class Frankenstein(lmms):
    is_simple = True

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        import torch
        from accelerate import Accelerator

        from surgery.loading import resolve_device

        args = ModelArgs.parse(**model_args)
        accelerator = Accelerator()
        device = args.device
        if accelerator.num_processes > 1:
            # Data parallel (`accelerate launch`): lmms-eval gives each process its share of the
            # requests by rank; each process runs the whole model on its own device (one GPU each,
            # or the CPU under `accelerate launch --cpu`).
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
            if device in (None, "auto"):
                device = str(accelerator.device)
        self.accelerator = accelerator
        self._device = torch.device(resolve_device(device))
        loaded = load_runner(args, str(self._device))
        self.runner, self.prompt_style = loaded.runner, loaded.style
        self._model, self.layout, self.probe_config = self.runner.model, self.runner.layout, self.runner.config
        self.system_prompt = args.system_prompt  # None: each task's own (see _system_prompt)
        # (task, doc_id, idx) -> ablated layer -> the loglikelihood response with that layer ablated
        self.layer_responses: dict[tuple[str, Any, int], dict[int, Any]] = {}
        self._shown_tasks: set[str] = set()
        self.store = None
        if args.response_cache:
            from frankenstein_tasks.models.response_store import ResponseStore

            self.store = ResponseStore.for_model(args.response_cache, args, device=str(self._device),
                                                 prompt_style=loaded.style.name, rank=self._rank)
        eval_logger.info(f"frankenstein: reasoning tasks use the {loaded.style.name} prompt style ({loaded.style_reason})")

    # -- lmms-eval plumbing --------------------------------------------------------------------
    @property
    def model(self) -> Any:
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self.runner.tokenizer

    @property
    def device(self) -> Any:
        return self._device

    @property
    def batch_size(self) -> int:
        return self.probe_config.max_batch_rows

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def sweeps_layers(self) -> bool:
        return self.probe_config.probe == "zero_ablation"

    # -- request types it does not serve ---------------------------------------------------------
    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise unserved(requests, "generate_until_multi_round")

    def generate_visual_cot(self, requests: list[Instance]) -> list[str]:
        raise unserved(requests, "generate_visual_cot")

    # -- log-likelihood ------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Instance]) -> list[Any]:
        """(mean negative log-likelihood per continuation token, is_greedy) per request, each in a
        GenerationResult (see below); see the module docstring."""
        prompts: dict[tuple, tuple[int, Any]] = {}  # (task, split, doc, context) -> (context number, engine request)
        contexts, continuations = [], []
        for request in requests:
            if len(request.args) < 6:  # lmms-eval's unconditional requests ("", choice) of acc_mutual_info
                raise unserved([request], "loglikelihood requests without a doc (acc_mutual_info)")
            context, continuation, _, doc_id, task, split = request.args[:6]
            key = (task, split, doc_id, context)  # same doc and text: same prompt, same images
            if key not in prompts:
                prompt = self._context_request(request)
                prompts[key] = (len(contexts), prompt)
                contexts.append(self.runner.encode(prompt))
            number, prompt = prompts[key]
            if not isinstance(continuation, str):  # output_type loglikelihood: the task's doc_to_target
                continuation = str(continuation(self.task_dict[task][split][doc_id]))
            ids = self.runner.continuation_ids(prompt, continuation)
            if not ids:
                raise FrankensteinError(f"task {task}: doc {doc_id} asks for the log-likelihood of an empty continuation")
            continuations.append((number, ids))
        desc = f"frankenstein loglikelihood ({self.probe_config.probe})"
        with tqdm(total=len(requests), disable=self.rank != 0, desc=desc, unit="request") as bar:
            outcomes = self.runner.score(contexts, continuations, progress=bar)
        if self.sweeps_layers:
            for request, outcome in zip(requests, outcomes):
                self.layer_responses[request_key(request)] = {layer: lmms_response(s) for layer, s in outcome.by_layer.items()}
        # lmms-eval 0.7.3's evaluator turns every response that is not text into its str() (its
        # `unwrap_generation_output`), which breaks multiple-choice scoring; a GenerationResult's
        # `text` is passed on as it is, so the pair travels in one.
        return [GenerationResult(text=lmms_response(outcome.baseline)) for outcome in outcomes]  # type: ignore[misc]

    def _context_request(self, request: Instance) -> Any:
        """The prompt of a log-likelihood request, as generation would see it (images, system prompt)."""
        from surgery.probes import ProbeRequest

        self.runner.check_scoring()
        context, _, doc_to_visual, doc_id, task, split = request.args[:6]
        doc = self.task_dict[task][split][doc_id]
        return ProbeRequest(text=_prompt_text(context, doc), images=self._images(doc, doc_to_visual, task),
                            system_prompt=self._system_prompt(doc))

    # -- generation ----------------------------------------------------------------------------
    def _rows_per_item(self) -> int:
        return 1 + len(self.runner.layers) if self.probe_config.probe in SWEEPING_PROBES else 1

    def generate_until(self, requests: list[Instance]) -> list[str]:
        keys = [self._store_key(r) for r in requests]
        # A response the store holds is reused; the others (None: not stored, or no store) are computed.
        responses: list[str | None] = [self.store.get(key) if key is not None else None for key in keys]
        todo = [i for i, response in enumerate(responses) if response is None]
        if self.store is not None and self.store.reused and self.rank == 0:
            # Printed, not logged: harness log levels differ, and a resumed run should always say so.
            tqdm.write(f"frankenstein: {self.store.reused} finished responses reused from {self.store.folder}", file=sys.stderr)
        rows = self._rows_per_item()
        desc = f"frankenstein ({self.probe_config.probe}" + (f", {rows} rows/item)" if rows > 1 else ")")
        with tqdm(total=len(requests), initial=len(requests) - len(todo), disable=self.rank != 0, desc=desc, unit="item") as bar:
            for chunk in request_chunks(requests, todo, rows, self.probe_config.max_batch_rows):
                # Images are read per chunk, so a large task never sits in memory at once.
                batch = [self._probe_request(requests[i]) for i in chunk]
                for i, request in zip(chunk, batch):
                    self._show_prompt_once(requests[i].args[4], request)
                for i, output in zip(chunk, self.runner.run(batch)):
                    responses[i] = output.baseline if output.probe == "none" else contract.encode(output)
                if self.store is not None:
                    self.store.put_many((keys[i], responses[i]) for i in chunk)
                bar.update(len(chunk))
        return responses  # type: ignore[return-value]

    def _show_prompt_once(self, task: str, request: Any) -> None:
        """Print the first prompt of `task` as the model receives it (decoded from its token ids)."""
        if task in self._shown_tasks or self.rank != 0:
            return
        self._shown_tasks.add(task)
        ids = self.runner.encode(request).input_ids.tolist()
        text = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        text = re.sub(f"(?:{re.escape(IMAGE_PAD)})+", lambda m: f"{IMAGE_PAD}x{len(m.group(0)) // len(IMAGE_PAD)}", text)
        budget = request.max_new_tokens or self.probe_config.default_max_new_tokens
        tqdm.write(f"frankenstein: {task}: first prompt as sent, max_new_tokens={budget}: {json.dumps(text, ensure_ascii=False)}",
                   file=sys.stderr)

    def _store_key(self, request: Instance) -> str | None:
        if self.store is None:
            return None
        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args[:6]
        doc = self.task_dict[task][split][doc_id]
        # The images as the model will see them (a doc may name them by path), the swap's source too.
        images = [v for v in (doc_to_visual(doc) or []) if v is not None]
        if self.probe_config.probe == "visual_swap":
            images.append(contract.source_visual(doc))
        return self.store.key(task, doc, context, gen_kwargs or {}, self._system_prompt(doc), images)

    def _probe_request(self, request: Instance) -> Any:
        from surgery.probes import ProbeRequest

        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args[:6]
        gen_kwargs = dict(gen_kwargs or {})
        until = greedy_until(gen_kwargs, task)
        doc = self.task_dict[task][split][doc_id]
        source = [contract.source_visual(doc)] if self.probe_config.probe == "visual_swap" else None
        reference = contract.reference_answer(doc) if self.probe_config.scoring == "logprob" else None
        return ProbeRequest(
            text=_prompt_text(context, doc),
            images=self._images(doc, doc_to_visual, task),
            source_images=source,
            max_new_tokens=int(gen_kwargs["max_new_tokens"]) if gen_kwargs.get("max_new_tokens") else None,
            until=[u for u in until if u and u != "\n\n"],
            reference_answer=reference,
            system_prompt=self._system_prompt(doc),
        )

    @staticmethod
    def _images(doc: Any, doc_to_visual: Any, task: str) -> list[Any]:
        from PIL import Image

        visuals = [v for v in (doc_to_visual(doc) or []) if v is not None]
        if any(not isinstance(v, Image.Image) for v in visuals):
            raise FrankensteinError(f"task {task}: the frankenstein model takes images only (no video or audio)")
        return [v.convert("RGB") for v in visuals]

    def _system_prompt(self, doc: Any) -> str | None:
        """`system_prompt=` if given; the prompt style's for reasoning tasks; else the usual default."""
        if self.system_prompt is not None:
            return self.system_prompt or None
        if contract.uses_prompt_style(doc):
            return self.prompt_style.system_prompt
        return DEFAULT_SYSTEM_PROMPT


def _prompt_text(context: str, doc: Any) -> str:
    """The user text the engine gets: lmms-eval's context without its `<image>` placeholders (the chat
    template places the images), or exactly as given where a task asks for it (the authors' prompts)."""
    return context if contract.verbatim_text(doc) else context.replace("<image>", "").strip()


def lmms_response(score: Any) -> tuple[float, bool]:
    """lmms-eval's loglikelihood response: (mean negative log-likelihood per token, is_greedy)."""
    return (-score.logprob / score.tokens, score.is_greedy)


def unserved(requests: list[Instance], what: str) -> FrankensteinError:
    """The one line for a request type the model does not serve, naming the task(s)."""
    tasks = sorted({str(r.task_name) for r in requests}) or ["?"]
    requested = what if what.endswith(")") else f"{what} requests"
    return FrankensteinError(
        f"task {', '.join(tasks)} asks for {requested}, which the frankenstein model does not serve "
        "(it serves generate_until and loglikelihood)"
    )


# ---------------------------------------------------------------------------------------------
# Per-layer scoring with lmms-eval's own task objects
# ---------------------------------------------------------------------------------------------


def install_layer_scoring() -> None:
    """Wrap `lmms_eval.evaluator.evaluate` so that sweeping runs score log-likelihood requests per layer."""
    import functools

    import lmms_eval.evaluator as evaluator
    from lmms_eval.api.metrics import mean
    from lmms_eval.evaluator_utils import get_task_list

    if getattr(evaluator.evaluate, "_frankenstein", False):
        return
    original = evaluator.evaluate

    @functools.wraps(original)
    def evaluate(lm: Any, task_dict: Any, *args: Any, **kwargs: Any) -> Any:
        results = original(lm, task_dict, *args, **kwargs)
        if isinstance(lm, Frankenstein) and lm.sweeps_layers:
            tasks = {out.task_name: out.task for out in get_task_list(task_dict) if getattr(out.task, "instances", None) is not None}
            # Every rank scores its own docs (score_layers gathers them); rank 0 holds the results.
            section = score_layers(tasks, lm.runner.layers, lm.layer_responses, mean=mean,
                                   doc_of=lambda task, instance: lm.task_dict[instance.task_name][instance.args[5]][instance.doc_id])
            if results is not None and section is not None and section["layer_scores"]:
                results[RESULTS_KEY] = section
                print_curves(section)
        return results

    evaluate._frankenstein = True
    evaluator.evaluate = evaluate


install_layer_scoring()
