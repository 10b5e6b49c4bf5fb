"""frankenstein merge-config: mergekit recipes for the Frankenstein splices of an IN/RL pair."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frankenstein_tasks.commands._options import add_cuts, cuts_of
from surgery.errors import FrankensteinError


VARIANT_HELP = (
    "early, mid, late, early_mid, mid_late, early_late: the decoder blocks taken from RL "
    "(the rest from IN; everything but decoder layers from the model that supplies the early block)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Write mergekit passthrough recipes (bfloat16) that splice decoder blocks of IN and RL as in "
        "METHOD.md section 3. Run one with `mergekit-yaml RECIPE.yaml OUT`, or pass --merge OUT to run "
        "mergekit here and also copy the processor files it leaves out. The layer count is read from the "
        "checkpoints' config (hub ids need the hub or the cache) unless --layers is given. For families "
        "mergekit 0.1.5 has no architecture definition of (InternVL) there is no recipe: --merge OUT then "
        "writes the splice with the project's own writer (safetensors, tensor for tensor from IN and RL)."
    )
    src = p.add_argument_group("models (either --in and --rl, or --recipe)")
    src.add_argument("--in", dest="in_model", metavar="IN", help="IN (SFT) checkpoint folder or hub id")
    src.add_argument("--rl", dest="rl_model", metavar="RL", help="RL checkpoint folder or hub id")
    src.add_argument("--recipe", help="a seed recipe instead: openmmreasoner, revisual-r1 or mmr1")
    what = p.add_argument_group("what to write")
    what.add_argument("--variant", help=VARIANT_HELP)
    what.add_argument("--all", action="store_true", help="all six variants, as DIR/<variant>.yaml (needs -o DIR)")
    add_cuts(what)
    what.add_argument("--layers", type=int, metavar="N", help="decoder layer count (default: read from the checkpoints)")
    what.add_argument("-o", "--output", metavar="PATH", help="recipe file (one variant; default: print it) or folder (--all)")
    what.add_argument("--merge", metavar="OUT", help="also run mergekit-yaml on the recipe into OUT and add the processor files "
                      "(families mergekit does not know: write the splice into OUT with the project's own writer)")
    what.add_argument("--overwrite", action="store_true", help="replace an existing --merge OUT")


def _models(args: argparse.Namespace) -> tuple[str, str, str | None]:
    if args.recipe:
        if args.in_model or args.rl_model:
            raise FrankensteinError("give either --recipe or --in and --rl, not both")
        from merge_configs.recipes import recipe

        rec = recipe(args.recipe)
        return rec.in_model, rec.rl_model, rec.title
    if not (args.in_model and args.rl_model):
        raise FrankensteinError("both --in IN and --rl RL are needed (or --recipe NAME)")
    return args.in_model, args.rl_model, None


def _variants(args: argparse.Namespace) -> list[str]:
    from surgery.splice import VARIANTS, check_variant

    if args.all:
        if args.variant:
            raise FrankensteinError("give either --variant or --all, not both")
        if not args.output:
            raise FrankensteinError("--all writes one file per variant: give the folder with -o DIR")
        if args.merge:
            raise FrankensteinError("--merge runs one variant: use --variant instead of --all")
        return list(VARIANTS)
    if not args.variant:
        raise FrankensteinError(f"give --variant ({', '.join(VARIANTS)}) or --all")
    check_variant(args.variant)
    return [args.variant]


def _without_mergekit(in_model: str, rl_model: str) -> bool:
    """True when IN and RL are of a family mergekit 0.1.5 has no architecture definition of."""
    from merge_configs.generate import has_mergekit_architecture
    from surgery.splice import check_pair

    return not has_mergekit_architecture(check_pair(in_model, rl_model).layout.model_type)


def run(args: argparse.Namespace) -> int:
    in_model, rl_model, title = _models(args)
    variants = _variants(args)
    if args.output and not args.all and Path(args.output).is_dir():
        raise FrankensteinError(f"-o {args.output} is a folder; give a file name for one variant")
    if args.merge and Path(args.merge).exists() and not args.overwrite:
        raise FrankensteinError(f"{args.merge} already exists (pass --overwrite to replace it)")
    if args.merge and not args.output and _without_mergekit(in_model, rl_model):
        from surgery.splice import write_spliced

        write_spliced(in_model, rl_model, variants[0], args.merge, cuts=cuts_of(args), overwrite=args.overwrite)
        print(f"wrote the {variants[0]} splice into {args.merge} (the project's own writer: mergekit does not know this model type)")
        return 0
    # The options are checked first: these imports (mergekit among them) take seconds.
    from frankenstein_tasks.run.stages import check_mergeable
    from merge_configs.generate import generate
    from surgery.atomic import write_text

    generated = generate(in_model, rl_model, variants, cuts=cuts_of(args), layers=args.layers, title=title)
    if args.merge:
        check_mergeable(generated, "--merge")
    if generated.known_issue:
        print(f"frankenstein: warning: {generated.known_issue}", file=sys.stderr)

    if args.all:
        out_dir = Path(args.output)
        for variant, text in generated.texts.items():
            write_text(out_dir / f"{variant}.yaml", text)
        print(f"wrote {len(generated.texts)} recipes to {out_dir}: {', '.join(generated.texts)}")
        return 0

    (variant, text), = generated.texts.items()
    if args.output:
        write_text(args.output, text)
        print(f"wrote {args.output}")
    elif not args.merge:
        sys.stdout.write(text)
    if args.merge:
        from merge_configs.mergekit_run import run_mergekit

        added = run_mergekit(text, args.merge, early_model=generated.early_models[variant], overwrite=args.overwrite)
        note = f"; added {', '.join(added)} from the early-block model" if added else ""
        print(f"merged {variant} into {args.merge}{note}")
    return 0
