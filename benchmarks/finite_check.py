"""The NaN/Inf check on loaded weights (`surgery.finite`): its cost against the obvious way and against the load.

Takes the tensors of Qwen2.5-VL-7B decoder layers (hidden 3584, intermediate 18944, 28 / 4 heads;
bf16, random) and times, over the same tensors:

  sum    `surgery.finite.nonfinite_count`: a tensor's plain sum, counted element-wise only when non-finite
  mask   `torch.isfinite(t).all()` per tensor (the obvious way: a mask as large as the tensor)
  read   reading the same tensors back from a safetensors file into memory (`safe_open(...).get_tensor`,
         copied; the file in the page cache): a floor for what loading them costs

It checks that the two checks give the same verdict on every clean tensor and on copies with one NaN and
one Inf planted, prints the times and the ratios mask / sum and sum / read (exit status 1 if they disagree).

    python benchmarks/finite_check.py                 # 2 decoder layers (~0.9 GB bf16), CPU
    python benchmarks/finite_check.py --layers 4 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS = 3584, 18944, 28, 4


def layer_shapes(layers: int) -> dict[str, tuple[int, ...]]:
    head_dim, shapes = HIDDEN // HEADS, {}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN), p + "self_attn.k_proj.weight": (KV_HEADS * head_dim, HIDDEN),
            p + "self_attn.v_proj.weight": (KV_HEADS * head_dim, HIDDEN), p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            p + "mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN), p + "mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
            p + "mlp.down_proj.weight": (HIDDEN, INTERMEDIATE), p + "input_layernorm.weight": (HIDDEN,),
        })
    return shapes


def best_of(repeats: int, fn) -> float:
    import torch

    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from benchmarks._common import hardware
    from surgery.finite import nonfinite_count
    from surgery.loading import resolve_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of 7B shapes (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported (default 3)")
    args = parser.parse_args()
    device = resolve_device(args.device)

    generator = torch.Generator().manual_seed(0)
    tensors = {name: (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
               for name, shape in layer_shapes(args.layers).items()}
    gigabytes = sum(t.numel() * t.element_size() for t in tensors.values()) / 1e9
    with tempfile.TemporaryDirectory(prefix="finite_check_") as tmp:
        path = str(Path(tmp) / "model.safetensors")
        save_file(tensors, path)
        on_device = {name: t.to(device) for name, t in tensors.items()}

        def read() -> None:
            with safe_open(path, framework="pt") as handle:
                for name in handle.keys():
                    # A copy, as a load makes one (safetensors maps the file: get_tensor alone reads nothing).
                    handle.get_tensor(name).to(device, copy=True)

        read()  # into the page cache
        times = {
            "sum": best_of(args.repeats, lambda: [nonfinite_count(t) for t in on_device.values()]),
            "mask": best_of(args.repeats, lambda: [bool(torch.isfinite(t).all()) for t in on_device.values()]),
            "read": best_of(args.repeats, read),
        }

    # Same verdicts: clean tensors, and copies with one NaN and one Inf planted.
    disagree = [name for name, t in on_device.items() if (nonfinite_count(t) == 0) != bool(torch.isfinite(t).all())]
    for bad in (float("nan"), float("inf"), float("-inf")):
        for name, t in list(on_device.items())[:3]:
            planted = t.clone()
            planted.view(-1)[planted.numel() // 2] = bad
            if nonfinite_count(planted) != 1 or bool(torch.isfinite(planted).all()):
                disagree.append(f"{name} with {bad}")

    print(f"{len(tensors)} tensors of {args.layers} Qwen2.5-VL-7B decoder layers, {gigabytes:.2f} GB bf16, on {device} "
          f"({hardware(device)}); best of {args.repeats}")
    for mode, seconds in times.items():
        print(f"  {mode:<5} {seconds:8.3f} s  ({gigabytes / seconds:6.1f} GB/s)")
    print(f"mask / sum: {times['mask'] / times['sum']:.1f}x    sum / read: {times['sum'] / times['read']:.1%} of reading the weights")
    print("verdicts agree" if not disagree else f"verdicts DISAGREE on {disagree}")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
