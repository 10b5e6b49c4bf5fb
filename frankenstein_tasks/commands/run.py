"""frankenstein run CONFIG.yaml: the whole analysis of a recipe, resumable, with its report."""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from frankenstein_tasks.run.config import example_names
    from frankenstein_tasks.run.stages import stages_help

    stages = stages_help()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = (
        "Run the stages a config names, in order, then write the report (HTML + Markdown + CSVs) into\n"
        "OUT/report. Results go to the config's out: folder (run.json records each stage). Started again,\n"
        "a run skips finished stages and, inside a stage, finished answers, as long as everything that\n"
        "decides them is the same (settings, the weights in the model folders, the local data); a killed\n"
        "run never leaves a result that looks complete. With processes: N in the config, every lmms-eval and\n"
        "lm-eval stage runs in N ranks sharing the items (one GPU each, or CPU processes with device: cpu).\n"
        "Stages:\n" + stages +
        "\n\nThe examples run the paper's settings (protocol: paper): the authors' prompts, style rule, budgets,\n"
        "formats, describer and judge, and their released pair set (not shipped: data.vision_pairs names your\n"
        "copy). docs/METHOD.md section 6 lists what still differs from their code."
        f"\n\nStart from an example: frankenstein run --print-config NAME > my.yaml  ({', '.join(example_names())})"
    )
    p.add_argument("config", nargs="?", help="the run config (YAML)")
    p.add_argument("--print-config", metavar="NAME", help="print an example config and exit")
    p.add_argument("--force", nargs="+", default=[], metavar="STAGE", help="rerun these stages even if finished")
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")


def run(args: argparse.Namespace) -> int:
    from frankenstein_tasks.run.config import example_text, load_config
    from surgery.errors import FrankensteinError

    if args.print_config:
        sys.stdout.write(example_text(args.print_config))
        return 0
    if not args.config:
        raise FrankensteinError("give a config file (or --print-config NAME for an example)")
    config = load_config(args.config)
    if config.offline:  # before datasets / huggingface_hub read their settings at import
        from frankenstein_tasks.run.harness import OFFLINE_ENV

        os.environ.update(OFFLINE_ENV)
    from frankenstein_tasks.run.runner import run as run_stages

    out = run_stages(config, force=args.force, report=not args.no_report)
    print(f"run finished: {out} (run.json{'' if args.no_report else ', report/report.html'})")
    return 0
