"""frankenstein make-tiny OUT: the offline tiny Base / IN / RL trio (planted deltas, or --trained)."""

from __future__ import annotations

import argparse

from frankenstein_tasks.commands._options import add_cuts, cuts_of
from surgery.errors import FrankensteinError
from surgery.tiny import PLANT_FACTOR, TINY_ARCHS, TinySpec, make_tiny, parse_plant
from surgery.tiny_families import FAMILIES

# Options of the planted trio; the trained organism's architecture comes from its --setting.
PLANTED_OPTIONS = ("layers", "vision_depth", "plant", "cuts", "arch")


PARAGRAPHS = (
    "Write three sibling checkpoints OUT/base, OUT/in, OUT/rl (bf16 safetensors, config, processor with a real "
    "Qwen tokenizer and chat template) that load without any hub access; --arch picks the family (Qwen2.5-VL, "
    "Qwen2-VL, Qwen3-VL with its DeepStack mergers, InternVL with InternViT tiles).",
    f"Default (planted): random weights; IN = Base + small deltas; RL = IN + deltas, {PLANT_FACTOR:g}x larger in the "
    "decoder blocks named by --plant, so the weight analysis has a known answer. Writes OUT/tiny.json.",
    "--trained: the model organism, trained on CPU from scratch with real, checkable behaviour. Base learns to count "
    "shapes and to tell whether a shape is present (pair-generator images, 112 px) and to solve one- and two-step "
    "word problems with a worked step and \\boxed{}; IN is Base fine-tuned on count-then-compute questions ('How "
    "many red stars are in the image, plus 3?') from a sloppy teacher that adds on most minus questions; RL is IN "
    "trained by policy gradient with reward = right boxed answer. Always trained from scratch (not the organism the "
    "package ships, which `frankenstein demo` and the tests use), once per --setting and --seed, and cached under $FRANKENSTEIN_CACHE/organism (default "
    "~/.cache/frankenstein); later calls copy the cache. Writes OUT/organism.json (settings, held-out accuracies, "
    "wall times) and OUT/eval (held-out sets in the GSM8K, MATH-500 and MathVista schemas, and frank_vision pair "
    "folders). Setting 'default' trains within 15 minutes on 2 CPU cores (about 6 measured), 'test' in about 3. "
    "See docs/organism.md.",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    import textwrap

    p.description = "\n\n".join(textwrap.fill(text, 100) for text in PARAGRAPHS)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("out", help="output folder (gets base/, in/, rl/ and tiny.json or organism.json)")
    p.add_argument("--trained", action="store_true", help="the trained model organism instead of planted deltas")
    p.add_argument("--setting", default=None, metavar="NAME", help="with --trained: default or test (default: default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--layers", type=int, default=None, help="decoder layers (default 8; planted trio only)")
    p.add_argument("--vision-depth", type=int, default=None, help="vision blocks (default 2, Qwen3-VL 3; planted trio only)")
    p.add_argument("--plant", default=None, metavar="BLOCKS", help="comma-separated blocks with large RL deltas, e.g. mid,late")
    add_cuts(p, "for --plant")
    p.add_argument("--arch", choices=TINY_ARCHS, default=None,
                   help="model family (default qwen2_5_vl; qwen2_vl, qwen3_vl, internvl; planted trio only)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    if args.trained:
        return _run_trained(args)
    if args.setting is not None:
        raise FrankensteinError("--setting applies to --trained only")
    return _run_planted(args)


def _run_planted(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    given = {k: getattr(args, k) for k in PLANTED_OPTIONS if getattr(args, k) is not None}
    if "vision_depth" not in given:  # the family's own minimum (Qwen3-VL's DeepStack reads three blocks)
        given["vision_depth"] = FAMILIES[given.get("arch", TinySpec().arch)].vision_depth
    try:
        spec = TinySpec(
            seed=args.seed,
            **{k: v for k, v in given.items() if k not in ("plant", "cuts")},
            plant=parse_plant(args.plant),
            cuts=cuts_of(args),
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


def _run_trained(args: argparse.Namespace) -> int:
    from frankenstein_tasks.organism.pipeline import copy_trio, organism_info, organism_trio, settings_for

    wrong = [k for k in PLANTED_OPTIONS if getattr(args, k) is not None]
    if wrong:
        names = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise FrankensteinError(f"{names} do(es) not apply to --trained: the organism's architecture comes from --setting")
    from surgery.atomic import check_new_folder

    setting = args.setting or "default"
    settings_for(setting, seed=args.seed)  # a bad setting fails before any work
    check_new_folder(args.out, overwrite=args.overwrite)  # and so does OUT, before minutes of training
    cached = organism_trio(setting, seed=args.seed, shipped=False)  # retrained from scratch (then cached), never the shipped one
    paths = copy_trio(cached, args.out, overwrite=args.overwrite)
    info = organism_info(paths)
    print(f"wrote {', '.join(str(p) for p in paths.values())} (organism '{setting}', seed {args.seed}; cached in {cached['base'].parent})")
    for role, accuracy in info["accuracy"].items():
        print(f"  {role:>4}: " + ", ".join(f"{name} {value:.0%}" for name, value in accuracy.items()))
    return 0
