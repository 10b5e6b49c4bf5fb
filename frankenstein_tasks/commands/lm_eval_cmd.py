"""frankenstein lm-eval ARGS...: lm-eval's own CLI, with the `frankenstein` model registered.

lm-eval 0.4.x discovers models only from its own table, so this command imports our model (which
registers the name `frankenstein` and adds per-layer scoring of zero-ablation sweeps) and then runs
lm-eval's CLI on the remaining arguments, unchanged.
"""

from __future__ import annotations

import argparse
import sys

USAGE = """\
Run lm-eval (its own CLI, all its options) with the `frankenstein` model available, e.g.

  frankenstein lm-eval run --model frankenstein \\
      --model_args pretrained=Qwen/Qwen2.5-7B-Instruct,probe=zero_ablation,layers=all \\
      --tasks gsm8k,arc_easy,wikitext --output_path out/
  frankenstein lm-eval run --model frankenstein \\
      --model_args in=IN,rl=RL,splice=mid_late --tasks leaderboard --output_path out/

Every lm-eval task runs: generation (greedy), multiple choice and perplexity (log-likelihoods as
lm-eval's own hf model computes them; max_length=N sets the window). With probe=zero_ablation the
model sweeps every decoder layer in one batched run; lm-eval scores the unablated responses as usual,
and the results JSON gains a "frankenstein" section with each task's metrics per ablated layer
(lm-eval's own filters and metrics) and every layer's answers or log-likelihoods. in=,rl=,splice=
(,cuts=) score a Frankenstein splice without writing it. Data parallel: torchrun --nproc_per_node N
--no-python frankenstein lm-eval run ... Model args are those of the lmms-eval `frankenstein` model
(layers=, max_batch_rows=, device=, dtype=, ablate=, ...).
Everything after `lm-eval` goes to lm-eval unchanged: `frankenstein lm-eval --help` shows lm-eval's help.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command-module interface only: the CLI hands `frankenstein lm-eval ...` to `run` unparsed
    (PASS_THROUGH in cli.py), so this parser is built only when an option precedes `lm-eval` (as in
    `frankenstein -h lm-eval`, which prints the main help). `frankenstein lm-eval --help` prints USAGE
    and then lm-eval's own help, from `run`."""
    p.description = USAGE


def run(args: argparse.Namespace) -> int:
    import frankenstein_tasks.models.lm_eval_model  # noqa: F401  (registers the model, per-layer scoring)
    from lm_eval.__main__ import cli_evaluate

    if not args.passed_args or {"-h", "--help"} & set(args.passed_args):
        print(USAGE)
    sys.argv = ["lm-eval", *args.passed_args]
    try:
        cli_evaluate()
    except SystemExit as done:  # lm-eval's CLI ends with sys.exit on --help and on bad arguments
        return int(done.code or 0)
    return 0
