"""frankenstein make-tiny OUT: the offline tiny Base / IN / RL trio."""

from __future__ import annotations

import argparse

from surgery.errors import FrankensteinError
from surgery.tiny import PLANT_FACTOR, TINY_ARCHS, TinySpec, make_tiny, parse_plant

HELP = "write an offline tiny Base / IN / RL Qwen2.5-VL trio with planted RL deltas"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Write three sibling checkpoints OUT/base, OUT/in, OUT/rl (bf16 safetensors, config, processor "
        "with a real Qwen tokenizer and chat template) that load without any hub access. "
        f"IN = Base + small deltas; RL = IN + deltas, {PLANT_FACTOR:g}x larger in the decoder blocks named by "
        "--plant, so the weight analysis has a known answer. Same seed, identical tensors."
    )
    p.add_argument("out", help="output folder (gets base/, in/, rl/ and tiny.json)")
    p.add_argument("--layers", type=int, default=8, help="decoder layers (default 8)")
    p.add_argument("--vision-depth", type=int, default=2, help="vision blocks (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--plant", default="", metavar="BLOCKS", help="comma-separated blocks with large RL deltas, e.g. mid,late")
    p.add_argument("--cuts", type=int, nargs=2, metavar=("C1", "C2"), help="block cuts for --plant (default: thirds)")
    p.add_argument("--arch", choices=TINY_ARCHS, default="qwen2_5_vl", help="model type (default qwen2_5_vl)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        spec = TinySpec(
            arch=args.arch,
            layers=args.layers,
            vision_depth=args.vision_depth,
            seed=args.seed,
            plant=parse_plant(args.plant),
            cuts=tuple(args.cuts) if args.cuts else None,
        )
    except ValidationError as e:
        err = e.errors()[0]
        option = "--" + str(err["loc"][0]).replace("_", "-")
        raise FrankensteinError(f"{option}: {err['msg'].lower()}") from None
    paths = make_tiny(args.out, spec, overwrite=args.overwrite)
    total = sum(f.stat().st_size for p in paths.values() for f in p.iterdir())
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({total / 2**20:.0f} MiB)")
    if spec.plant:
        print(f"planted RL deltas x{spec.plant_factor:g} in blocks: {', '.join(spec.plant)}")
    return 0
