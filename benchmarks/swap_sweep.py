"""Visual-token swap sweep: batched fast path vs the naive loop, in one run, on the same inputs.

Naive: per pair and per layer, one `model.generate` (batch 1) with the swap hooked into attention.
Fast: `surgery.swap.swap_sweep` (shared chunk-1 and source prefill, all variants of several pairs
decoded as one batch). Both produce the answers of every pair at every layer; the script checks
they agree token for token and prints the speed ratio.

    python benchmarks/swap_sweep.py                       # CPU: 28-layer tiny model
    python benchmarks/swap_sweep.py --shape 7b --device cuda --pairs 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import QUESTIONS, build_model, dots, hardware, timed  # noqa: E402

from surgery.prompts import encode_prompt  # noqa: E402
from surgery.stack import DecoderStack  # noqa: E402
from surgery.swap import SwapPair, swap_generate_naive, swap_sweep  # noqa: E402


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
    args = p.parse_args()

    torch.manual_seed(0)
    model, layout, processor = build_model(args.shape, args.layers, args.device, args.dtype)
    device = str(next(model.parameters()).device)
    pairs = []
    for i in range(args.pairs):
        q = QUESTIONS[i % len(QUESTIONS)]
        target = encode_prompt(processor, model, layout, q, [dots(1 + i % 5, "red", args.image_size)])
        source = encode_prompt(processor, model, layout, q, [dots(1 + (i + 2) % 5, "blue", args.image_size)])
        pairs.append(SwapPair(target, source))
    eos = [151645, 151643]
    layers = list(range(layout.num_layers))
    stack = DecoderStack(model, layout)

    swap_sweep(stack, pairs[:1], layers[:2], max_new_tokens=2, eos_token_ids=eos)  # warm-up
    with timed() as fast_t:
        fast = swap_sweep(stack, pairs, layers, max_new_tokens=args.new_tokens, eos_token_ids=eos,
                          max_batch_rows=args.max_batch_rows)
    with timed() as naive_t:
        naive = [swap_generate_naive(model, layout, pair, layers, max_new_tokens=args.new_tokens, eos_token_ids=eos)
                 for pair in pairs]

    total = same = 0
    for f, n in zip(fast, naive):
        for layer in layers:
            total += 1
            same += f.by_layer[layer] == n.by_layer[layer]
        total += 1
        same += f.baseline == n.baseline
    ratio = naive_t["seconds"] / fast_t["seconds"]
    print(f"device: {device} ({hardware(device)}), dtype {next(model.parameters()).dtype}, shape {args.shape}, "
          f"{layout.num_layers} layers, {args.pairs} pairs, {pairs[0].target.num_visual} visual tokens, "
          f"{args.new_tokens} new tokens")
    print(f"naive loop  (generate per pair x layer, batch 1): {naive_t['seconds']:8.2f} s")
    print(f"fast sweep  (shared prefix, batched variants):    {fast_t['seconds']:8.2f} s")
    print(f"agreement: {same}/{total} answers token-identical")
    print(f"speedup: {ratio:.1f}x")
    exact = next(model.parameters()).dtype == torch.float32
    return 0 if (same == total or not exact) else 1


if __name__ == "__main__":
    sys.exit(main())
