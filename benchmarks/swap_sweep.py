"""Visual-token swap sweep: batched fast path vs the naive loop, in one run, on the same inputs.

Naive: per pair and per layer, one `model.generate` (batch 1) with the swap hooked into attention.
Fast: `surgery.swap.swap_sweep` (shared chunk-1 and source prefill, all variants of several pairs
decoded as one batch). Both produce the answers of every pair at every layer; the script checks
they agree token for token and prints the speed ratio.

    python benchmarks/swap_sweep.py                       # CPU: 28-layer tiny Qwen2.5-VL
    python benchmarks/swap_sweep.py --family qwen3_vl     # or internvl: the same on that family
    python benchmarks/swap_sweep.py --shape 7b --device cuda --pairs 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import QUESTIONS, add_family, build_model, dots, report, timed  # noqa: E402

from surgery.probes import eos_token_ids  # noqa: E402
from surgery.prompts import encode_prompt  # noqa: E402
from surgery.reference import swap_generate_naive  # noqa: E402
from surgery.stack import DecoderStack  # noqa: E402
from surgery.swap import SwapPair, swap_sweep  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=["tiny", "7b"], default="tiny")
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=12)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--max-batch-rows", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    add_family(p)
    args = p.parse_args()

    torch.manual_seed(0)
    model, layout, processor = build_model(args.shape, args.layers, args.device, args.dtype, args.family)
    pairs = []
    for i in range(args.pairs):
        q = QUESTIONS[i % len(QUESTIONS)]
        target = encode_prompt(processor, model, layout, q, [dots(1 + i % 5, "red", args.image_size)])
        source = encode_prompt(processor, model, layout, q, [dots(1 + (i + 2) % 5, "blue", args.image_size)])
        pairs.append(SwapPair(target, source))
    eos = eos_token_ids(model, getattr(processor, "tokenizer", processor))
    layers = list(range(layout.num_layers))
    stack = DecoderStack(model, layout)

    swap_sweep(stack, pairs[:1], layers[:2], max_new_tokens=2, eos_token_ids=eos)  # warm-up
    with timed() as fast_t:
        fast = swap_sweep(stack, pairs, layers, max_new_tokens=args.new_tokens, eos_token_ids=eos,
                          max_batch_rows=args.max_batch_rows)
    with timed() as naive_t:
        naive = [swap_generate_naive(model, layout, pair, layers, max_new_tokens=args.new_tokens, eos_token_ids=eos)
                 for pair in pairs]

    header = (f"shape {args.shape}, {layout.num_layers} layers, {args.pairs} pairs, "
              f"{pairs[0].target.num_visual} visual tokens, {args.new_tokens} new tokens")
    return report(fast, naive, layers, fast_t["seconds"], naive_t["seconds"], model, header,
                  "generate per pair x layer, batch 1", "shared prefix, batched variants")


if __name__ == "__main__":
    sys.exit(main())
