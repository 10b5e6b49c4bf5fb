"""frankenstein data ...: probe data sets (`make-pairs`) and local copies of hub datasets (`cache-dataset`)."""

from __future__ import annotations

import argparse


TASK_CHOICES = ("counting", "ocr", "grounding", "recognition", "all")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from frankenstein_tasks.vision.pairs import DEFAULT_N, DEFAULT_SEED, DEFAULT_SIZE

    p.description = (
        "Make probe data sets for the frank_* tasks (make-pairs) and local copies of hub datasets where "
        "the tasks find them offline (cache-dataset)."
    )
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

    cd = sub.add_parser(
        "cache-dataset",
        help="put a local copy of a benchmark dataset where the frank_* tasks find it offline",
        description=(
            "The frank_reasoning and frank_transfer tasks load openai/gsm8k, HuggingFaceH4/MATH-500 and "
            "AI4Math/MathVista as lmms-eval's own tasks do. On a machine without the hub, give a JSONL "
            "file in the dataset's own schema (MathVista: decoded_image as an image path relative to the "
            "file): it is written into the datasets cache under the hub name, and the unchanged tasks "
            "read it with HF_DATASETS_OFFLINE=1."
        ),
    )
    cd.add_argument("dataset", choices=("gsm8k", "math500", "mathvista"), help="which benchmark the rows belong to")
    cd.add_argument("file", help="JSONL rows in that dataset's schema")
    cd.add_argument("--cache-dir", help="datasets cache folder (default: where lmms-eval looks, HF_DATASETS_CACHE)")


def run(args: argparse.Namespace) -> int:
    return SUBCOMMANDS[args.data_command](args)


def _cache_dataset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from frankenstein_tasks.hub_cache import datasets_cache_dir
    from frankenstein_tasks.run.data import HUB_DATASETS, cache_local_dataset
    from surgery.errors import FrankensteinError

    path = Path(args.file)
    if not path.is_file():
        raise FrankensteinError(f"no file at {path}")
    repo, _, splits = HUB_DATASETS[args.dataset]
    cache = Path(args.cache_dir) if args.cache_dir else datasets_cache_dir()
    entry, count = cache_local_dataset(args.dataset, path, cache)
    print(f"{count} rows of {repo} ({', '.join(splits)}) cached in {entry}")
    print(f"the tasks read it with: HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE={cache} lmms_eval --tasks ...")
    return 0


def _make_pairs(args: argparse.Namespace) -> int:
    from frankenstein_tasks.vision.pairs import TASKS, write_pair_sets

    tasks = TASKS if args.task == "all" else (args.task,)
    written = write_pair_sets(tasks, args.out, n=args.n, seed=args.seed, size=args.size, overwrite=args.overwrite)
    for task, folder in written.items():
        print(f"{task}: {args.n} pairs in {folder}")
    print(f"run the tasks on them: FRANKENSTEIN_VISION_DATA={args.out} lmms-eval --tasks frank_vision ...")
    return 0


SUBCOMMANDS = {"make-pairs": _make_pairs, "cache-dataset": _cache_dataset}
