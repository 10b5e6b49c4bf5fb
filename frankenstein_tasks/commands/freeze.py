"""frankenstein freeze-params MODEL --block mid: the parameters to freeze for a necessity run."""

from __future__ import annotations

import argparse
import sys

from frankenstein_tasks.commands._options import add_cuts, cuts_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Print the parameters of the decoder layers in one block (early [0,C1), mid [C1,C2), late [C2,n); "
        "thirds by default) of a model, for RL runs with that block frozen (METHOD.md section 4). Names are "
        "those of model.named_parameters() in transformers 5 (--scheme module, default) or the tensor names on "
        "disk (--scheme checkpoint). Only the config is read: the model is built on the meta device. In Python, "
        "surgery.freeze.freeze_block(model, 'mid') sets requires_grad=False on the same parameters."
    )
    p.add_argument("model", help="checkpoint folder or hub id")
    p.add_argument("--block", required=True, help="early, mid or late")
    add_cuts(p)
    p.add_argument("--format", choices=("list", "regex"), default="list", help="one name per line (default) or one regex")
    p.add_argument("--scheme", choices=("module", "checkpoint"), default="module", help="parameter names (default) or on-disk tensor names")


def run(args: argparse.Namespace) -> int:
    from surgery.arch import check_block, layout_of_model
    from surgery.freeze import block_layers, block_parameter_names, block_regex, meta_model

    check_block(args.block)  # before the (slow) model build
    model = meta_model(args.model)
    layout = layout_of_model(model)
    names = block_parameter_names(model, args.block, cuts=cuts_of(args), scheme=args.scheme)
    layers = block_layers(layout, args.block, cuts_of(args))
    if args.format == "regex":
        print(block_regex(layout, args.block, cuts=cuts_of(args), scheme=args.scheme))
    else:
        print("\n".join(names))
    print(
        f"{len(names)} parameters in decoder layers {layers.start}-{layers.stop - 1} ({args.block}) of {args.model}",
        file=sys.stderr,
    )
    return 0
