"""frankenstein layout MODEL: what the architecture adapter sees in a checkpoint."""

from __future__ import annotations

import argparse
import json

from frankenstein_tasks.commands._options import add_cuts, cuts_of
from surgery.arch import layout_of_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Read a checkpoint's config and tensor names (no weights are loaded) and print what the project "
        "will use: decoder layer and vision block counts, tensor-name scheme, the early/mid/late block "
        "partition and the unified layer index range (vision block j -> j - V, projector -> 0, layer i -> i + 1). "
        "For Qwen3-VL it also lists the DeepStack mergers: placed with the projector (unified index 0), each "
        "reading one vision block and adding its features to the visual tokens after one decoder layer."
    )
    p.add_argument("model", help="checkpoint folder or hub id")
    add_cuts(p)
    p.add_argument("--allow-pickle", action="store_true", help="accept a folder with only pickle .bin weights")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    layout = layout_of_checkpoint(args.model, allow_pickle=args.allow_pickle)
    facts = layout.describe(cuts_of(args))
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            print(f"{key:<{width}}  {_text(value)}")
    return 0


def _text(value: object) -> str:
    """A value on one line; a list of records (the DeepStack mergers) as `a=1, b=2; a=2, b=3`."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "; ".join(", ".join(f"{k}={v}" for k, v in item.items()) for item in value)
    return str(value)
