"""Zero-ablation sweeps: fast vs naive, in one run, on the same inputs; three cases.

--case engine (default): per prompt and per layer, one `model.generate` (batch 1) with a hook that
    makes the layer return its input, vs `surgery.ablation.ablation_sweep` (items x layers decoded
    as one batch with per-row layer masks, the prefill shared up to each ablated layer, finished
    rows leaving the batch). Checks both give the same tokens and prints the speed ratio.
--case task: the researcher's path through the harness. Fast: ONE `lmms_eval` run of frank_gsm8k
    with `--model frankenstein,probe=zero_ablation`. Naive: one `lmms_eval` run per ablated layer
    (`ablate=k`, the plain model with that layer zero-ablated) plus one unablated run. Checks every
    item's answer per layer is the same and prints the ratio.
--case logprob: teacher-forced scoring (`scoring=logprob`: the reference answer's log-likelihood per
    ablated layer, no generation) vs the generative sweep on the same items: time ratio and how well
    the two rank layers (Spearman correlation of per-layer accuracy drop and log-likelihood drop).
    On a random model the generative drop is noise; pass --model with a trained checkpoint (e.g. the
    model organism, `frankenstein make-tiny OUT --trained`).

    python benchmarks/ablation_sweep.py                   # CPU: 28-layer tiny Qwen2.5-VL
    python benchmarks/ablation_sweep.py --family qwen3_vl # or internvl: the same on that family
    python benchmarks/ablation_sweep.py --shape 7b --device cuda --prompts 8 --new-tokens 128
    python benchmarks/ablation_sweep.py --case task --layers 8
    python benchmarks/ablation_sweep.py --case logprob --model ORGANISM/rl --data ORGANISM/eval/gsm8k/test.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import add_family, build_model, report, timed  # noqa: E402

from surgery.ablation import ablation_sweep  # noqa: E402
from surgery.probes import eos_token_ids  # noqa: E402
from surgery.prompts import encode_prompt  # noqa: E402
from surgery.reference import ablation_generate_naive  # noqa: E402
from surgery.stack import DecoderStack  # noqa: E402

PROBLEMS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "What is the sum of all positive integers less than 100 that are squares of perfect squares?",
    "If 3x + 7 = 22, what is x?",
]
INSTRUCTION = 'Please solve the problem step by step and put your answer in one "\\boxed{}".\n\n'


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=["engine", "task", "logprob"], default="engine")
    p.add_argument("--model", help="checkpoint folder for --case task / logprob (default: a fresh tiny model)")
    p.add_argument("--data", help="GSM8K-schema JSONL for --case task / logprob (default: the built-in problems)")
    p.add_argument("--shape", choices=["tiny", "7b"], default="tiny")
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--max-batch-rows", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    add_family(p)
    args = p.parse_args()
    if args.case != "engine":
        from ablation_cases import run_case

        return run_case(args, PROBLEMS)

    torch.manual_seed(0)
    model, layout, processor = build_model(args.shape, args.layers, args.device, args.dtype, args.family)
    prompts = [encode_prompt(processor, model, layout, INSTRUCTION + PROBLEMS[i % len(PROBLEMS)], system_prompt=None)
               for i in range(args.prompts)]
    eos = eos_token_ids(model, getattr(processor, "tokenizer", processor))
    layers = list(range(layout.num_layers))
    stack = DecoderStack(model, layout)

    ablation_sweep(stack, prompts[:1], layers[:2], max_new_tokens=2, eos_token_ids=eos)  # warm-up
    with timed() as fast_t:
        fast = ablation_sweep(stack, prompts, layers, max_new_tokens=args.new_tokens, eos_token_ids=eos,
                              max_batch_rows=args.max_batch_rows)
    with timed() as naive_t:
        naive = [ablation_generate_naive(model, layout, prompt, layers, max_new_tokens=args.new_tokens, eos_token_ids=eos)
                 for prompt in prompts]

    header = (f"shape {args.shape}, {layout.num_layers} layers, {args.prompts} prompts "
              f"(~{prompts[0].length} tokens), {args.new_tokens} new tokens")
    return report(fast, naive, layers, fast_t["seconds"], naive_t["seconds"], model, header,
                  "generate per prompt x layer, batch 1", "items x layers batched, shared prefill")


if __name__ == "__main__":
    sys.exit(main())
