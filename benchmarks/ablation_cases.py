"""The other cases of ablation_sweep.py: `task` (one lmms_eval sweep vs one lmms_eval run per layer,
the real CLI on frank_gsm8k, whose data is cached locally in the hub schema by
`frankenstein_tasks.hub_cache`) and `logprob` (teacher-forced vs generative scoring on the engine)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from frankenstein_tasks import contract
from frankenstein_tasks.hub_cache import OFFLINE_ENV, cache_dataset

ANSWERS = ["72", "10", "5", "5"]  # gold answers of ablation_sweep.PROBLEMS (the last two made up)


def run_case(args: Any, problems: list[str]) -> int:
    work = Path(tempfile.mkdtemp(prefix="frank_bench_"))
    model = args.model or _tiny_model(work, args.layers, args.family)
    if args.data:  # GSM8K-schema rows, e.g. the model organism's held-out set (ORGANISM/eval/gsm8k/test.jsonl)
        rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()][: args.prompts]
    else:
        rows = [{"question": problems[i % len(problems)], "answer": f"...\n#### {ANSWERS[i % len(problems)]}"}
                for i in range(args.prompts)]
    if args.case != "task":
        return _logprob_case(model, rows, args)
    cache_dataset("openai/gsm8k", "main", {"test": rows, "train": rows}, cache_dir=work / "datasets")
    env = {**OFFLINE_ENV, "HF_DATASETS_CACHE": str(work / "datasets")}
    return _task_case(work, env, model, args)


def _tiny_model(work: Path, layers: int, family: str) -> str:
    from surgery.tiny import TinySpec, make_tiny
    from surgery.tiny_families import FAMILIES

    depth = max(2, FAMILIES[family].vision_depth)
    return str(make_tiny(work / "trio", TinySpec(arch=family, layers=layers, vision_depth=depth, seed=0))["in"])


def lmms_eval(env: dict, model_args: str, out: Path, new_tokens: int) -> tuple[float, list[dict]]:
    """Wall time of one `lmms_eval` run of frank_gsm8k, and its samples (doc order)."""
    import os

    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lmms_eval", "--model", "frankenstein", "--model_args", model_args,
         "--tasks", "frank_gsm8k", "--gen_kwargs", f"max_new_tokens={new_tokens}",
         "--output_path", str(out), "--log_samples"],
        env={**os.environ, **env}, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    samples = [json.loads(line) for p in out.rglob("*_samples_frank_gsm8k.jsonl") for line in p.read_text().splitlines()]
    if done.returncode != 0 or not samples:
        raise SystemExit(f"lmms_eval failed: {(done.stdout + done.stderr)[-2000:]}")
    return seconds, sorted(samples, key=lambda s: s["doc_id"])


def _task_case(work: Path, env: dict, model: str, args: Any) -> int:
    common = f"pretrained={model},device={args.device},max_batch_rows={args.max_batch_rows}"
    fast_s, fast = lmms_eval(env, common + ",probe=zero_ablation", work / "fast", args.new_tokens)
    decoded = [contract.decode(s["filtered_resps"]) for s in fast]
    layers = decoded[0].layers
    naive_s, same, total = 0.0, 0, 0
    for layer in [None, *layers]:
        extra = "" if layer is None else f",ablate={layer}"
        seconds, plain = lmms_eval(env, common + extra, work / f"naive_{layer}", args.new_tokens)
        naive_s += seconds
        for d, s in zip(decoded, plain):
            expected = d.baseline if layer is None else d.answer_by_layer()[layer]
            total += 1
            same += expected.strip() == s["filtered_resps"].strip()  # lmms-eval strips plain responses
    print(f"case task: frank_gsm8k through lmms_eval, {len(fast)} items, {len(layers)} layers, "
          f"{args.new_tokens} new tokens, model pretrained={model}")
    print(f"naive ({len(layers) + 1} lmms_eval runs, one per ablated layer + baseline): {naive_s:8.2f} s")
    print(f"fast  (1 lmms_eval run, probe=zero_ablation):                  {fast_s:8.2f} s")
    print(f"agreement: {same}/{total} answers identical")
    print(f"speedup: {naive_s / fast_s:.1f}x")
    return 0 if same == total else 1


def _logprob_case(path: str, rows: list[dict], args: Any) -> int:
    """In-process, on the engine (lmms_eval start-up would dominate a tiny model's times)."""
    import torch

    from frankenstein_tasks.grading import grade, gsm8k_gold
    from frankenstein_tasks.prompt_styles import user_text
    from surgery.ablation import ablation_logprob_sweep, ablation_sweep
    from surgery.loading import load_model, load_processor
    from surgery.probes import eos_token_ids
    from surgery.prompts import encode_prompt
    from surgery.stack import DecoderStack

    from _common import timed

    model, layout = load_model(path, dtype="float32" if args.device in ("cpu", "auto") else args.dtype, device=args.device)
    processor = load_processor(path)
    tokenizer = getattr(processor, "tokenizer", processor)
    prompts = [encode_prompt(processor, model, layout, user_text("base", r["question"]), [], system_prompt=None) for r in rows]
    golds = [gsm8k_gold(r["answer"]) for r in rows]
    references = [tokenizer.encode(g, add_special_tokens=False) for g in golds]
    layers = list(range(layout.num_layers))
    stack = DecoderStack(model, layout)
    with torch.no_grad(), timed() as gen_t:
        generated = ablation_sweep(stack, prompts, layers, max_new_tokens=args.new_tokens,
                                   eos_token_ids=eos_token_ids(model, tokenizer), max_batch_rows=args.max_batch_rows)
    with torch.no_grad(), timed() as lp_t:
        scored = ablation_logprob_sweep(stack, prompts, references, layers, max_batch_rows=args.max_batch_rows)

    def right(tokens: list[int], gold: str) -> float:
        return float(grade(tokenizer.decode(tokens, skip_special_tokens=True), gold).correct)

    acc_drop = {k: sum(right(o.baseline, g) - right(o.by_layer[k], g) for o, g in zip(generated, golds)) / len(golds) for k in layers}
    lp_drop = {k: sum(o.baseline.total - o.by_layer[k].total for o in scored) / len(scored) for k in layers}
    base_acc = sum(right(o.baseline, g) for o, g in zip(generated, golds)) / len(golds)
    rho = _spearman([acc_drop[k] for k in layers], [lp_drop[k] for k in layers])
    top = sorted(layers, key=lambda k: -lp_drop[k])[:3]
    print(f"case logprob: {len(rows)} GSM8K-schema items, {len(layers)} layers, generative budget {args.new_tokens} tokens, "
          f"model {path} (unablated accuracy {base_acc:.2f})")
    print(f"generative sweep: {gen_t['seconds']:8.2f} s   teacher-forced (scoring=logprob): {lp_t['seconds']:8.2f} s   "
          f"ratio {gen_t['seconds'] / lp_t['seconds']:.1f}x")
    print(f"layer ranking agreement (Spearman, accuracy drop vs log-likelihood drop): {rho:.2f}")
    print(f"layers the log-likelihood drop ranks highest: {top}; accuracy drop there: {[round(acc_drop[k], 2) for k in top]}")
    return 0


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return float("nan") if value != value else float(value)
