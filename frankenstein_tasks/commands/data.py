"""frankenstein data ...: probe data sets (`make-pairs`: visual-token-swapping pairs)."""

from __future__ import annotations

import argparse


TASK_CHOICES = ("counting", "ocr", "grounding", "recognition", "all")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from frankenstein_tasks.vision.pairs import DEFAULT_N, DEFAULT_SEED, DEFAULT_SIZE

    p.description = "Make probe data sets for the frank_* tasks."
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    mp = sub.add_parser(
        "make-pairs",
        help="write probe pairs for visual-token swapping, one folder per task",
        description=(
            "Draw deterministic target/source image pairs (same size, so the same number of visual "
            "tokens) that differ only in the probed function: counting (1-10 shapes, different counts), "
            "ocr (one word, different words), grounding (a named shape at two positions; answer x1,y1,x2,y2), "
            "recognition (a shape present in one image, absent in the other). Writes OUT/<task>/data.jsonl "
            "and OUT/<task>/images/ in the shared pair-folder layout; point FRANKENSTEIN_VISION_DATA=OUT "
            "at it to run the frank_vision_* tasks on it. The same --seed always gives the same pairs, "
            "and a smaller --n gives a prefix of a larger one."
        ),
    )
    mp.add_argument("--task", choices=TASK_CHOICES, default="all", help="which function (default: all four)")
    mp.add_argument("--n", type=int, default=DEFAULT_N, help=f"pairs per task (default {DEFAULT_N})")
    mp.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    mp.add_argument("--size", type=int, default=DEFAULT_SIZE,
                    help=f"image side in pixels, a multiple of 28 (default {DEFAULT_SIZE}: Qwen2.5-VL keeps it unresized)")
    mp.add_argument("--out", required=True, help="output folder (gets one subfolder per task)")
    mp.add_argument("--overwrite", action="store_true", help="replace task folders that exist")


def run(args: argparse.Namespace) -> int:
    from frankenstein_tasks.vision.pairs import TASKS, write_pair_sets

    tasks = TASKS if args.task == "all" else (args.task,)
    written = write_pair_sets(tasks, args.out, n=args.n, seed=args.seed, size=args.size, overwrite=args.overwrite)
    for task, folder in written.items():
        print(f"{task}: {args.n} pairs in {folder}")
    print(f"run the tasks on them: FRANKENSTEIN_VISION_DATA={args.out} lmms-eval --tasks frank_vision ...")
    return 0
