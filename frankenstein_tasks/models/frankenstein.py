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
    scoring=generate|logprob (zero_ablation: answers, or the reference answer's log-likelihood; no generation)
    ablate=LAYERS            (probe=none) zero-ablate these layers in every answer
    prompt_style=base|reasoner|revisual  system prompt of reasoning tasks (default: from the checkpoint id)
    max_batch_rows=N         rows decoded together (default 128 on GPU, 16 on CPU; a swept item takes 1 + len(layers) rows)
    max_new_tokens=N         used when the task's generation_kwargs give none (default 256)
    system_prompt=TEXT       overrides every task's system prompt ("" for none)
    response_cache=DIR       keep every finished response in DIR; a rerun (e.g. after a kill) reuses them
    min_pixels=N, max_pixels=N, allow_pickle=true

Decoding is greedy (the method's setting); a task asking for sampling is refused. The engine
(`surgery.probes.ProbeRunner`) returns plain `ProbeOutput`s; this class encodes them for the tasks
as `frankenstein_tasks.contract` describes.
"""

from __future__ import annotations

import sys
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger as eval_logger
from tqdm import tqdm

from frankenstein_tasks import contract
from frankenstein_tasks.models.model_args import ModelArgs, greedy_until, load_runner, request_chunks
from surgery.errors import FrankensteinError
from surgery.prompts import DEFAULT_SYSTEM_PROMPT

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
        self.store = None
        if args.response_cache:
            from frankenstein_tasks.models.response_store import ResponseStore

            self.store = ResponseStore.for_model_args(args.response_cache, args.model_dump(), self._rank)
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

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise FrankensteinError("the frankenstein model generates; loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise FrankensteinError("the frankenstein model does not support multi-round generation tasks")

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
                for i, output in zip(chunk, self.runner.run(batch)):
                    responses[i] = output.baseline if output.probe == "none" else contract.encode(output)
                if self.store is not None:
                    self.store.put_many((keys[i], responses[i]) for i in chunk)
                bar.update(len(chunk))
        return responses  # type: ignore[return-value]

    def _store_key(self, request: Instance) -> str | None:
        if self.store is None:
            return None
        context, gen_kwargs, _, doc_id, task, split = request.args[:6]
        return self.store.key(task, self.task_dict[task][split][doc_id], context, gen_kwargs or {})

    def _probe_request(self, request: Instance) -> Any:
        from PIL import Image

        from surgery.probes import ProbeRequest

        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args[:6]
        gen_kwargs = dict(gen_kwargs or {})
        until = greedy_until(gen_kwargs, task)
        doc = self.task_dict[task][split][doc_id]
        visuals = [v for v in (doc_to_visual(doc) or []) if v is not None]
        if any(not isinstance(v, Image.Image) for v in visuals):
            raise FrankensteinError(f"task {task}: the frankenstein model takes images only (no video or audio)")
        source = [contract.source_visual(doc)] if self.probe_config.probe == "visual_swap" else None
        reference = contract.reference_answer(doc) if self.probe_config.scoring == "logprob" else None
        return ProbeRequest(
            text=context.replace("<image>", "").strip(),
            images=[v.convert("RGB") for v in visuals],
            source_images=source,
            max_new_tokens=int(gen_kwargs["max_new_tokens"]) if gen_kwargs.get("max_new_tokens") else None,
            until=[u for u in until if u and u != "\n\n"],
            reference_answer=reference,
            system_prompt=self._system_prompt(doc),
        )

    def _system_prompt(self, doc: Any) -> str | None:
        """`system_prompt=` if given; the prompt style's for reasoning tasks; else the usual default."""
        if self.system_prompt is not None:
            return self.system_prompt or None
        if contract.uses_prompt_style(doc):
            return self.prompt_style.system_prompt
        return DEFAULT_SYSTEM_PROMPT
