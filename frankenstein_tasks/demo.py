"""`frankenstein demo`: `frankenstein run` on a built-in config, on the model organism, offline.

The demo takes the model organism (a tiny Qwen2.5-VL Base -> IN -> RL trio trained on CPU to count,
recognise and compute; trained on the first call, then cached: `frankenstein_tasks/organism/`),
writes its held-out evaluation items in the hub datasets' schemas, writes the run config for them to
OUT/demo.yaml (the same file `frankenstein run` takes, so it can be edited and rerun) and runs every
stage on it, ending with the report in OUT/report/. Nothing is downloaded.

`--models TRIO` runs the same on any Base / IN / RL trio folder instead of the organism, e.g. a tiny
Qwen3-VL or InternVL one from `frankenstein make-tiny --arch`: every stage of the analysis on that
family, offline (random weights answer nonsense, but every stage runs and the report is written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from surgery.atomic import write_text

# Items per set: enough for curves with visible structure, small enough for a few minutes on 2 CPU cores.
DEMO_ITEMS = 40
DEMO_SEED = 0
# The organism answers in a few tokens ("There are 5 stars. 5 + 3 = 8. \boxed{8}").
DEMO_NEW_TOKENS = 40


def demo_config(out: Path, models: dict[str, Path], data: dict[str, Path], *, device: str, stages: list[str] | None,
                recipe: str = "Organism") -> dict[str, Any]:
    """The demo's run config, as the YAML mapping written to OUT/demo.yaml."""
    from frankenstein_tasks.run.stages import default_stages

    budget = {"max_new_tokens": DEMO_NEW_TOKENS}
    return {
        "recipe": recipe,
        "models": {role: str(path) for role, path in models.items()},
        "out": str(out),
        "stages": stages or default_stages(),
        "offline": True,
        "device": device,
        "max_batch_rows": 64,
        "vision_swap": {"tasks": ["counting", "recognition"], "roles": ["rl"], "max_new_tokens": 8},
        "reasoning": {"subset": "all", "roles": ["rl"], **budget},
        "reasoning_logprob": {"subset": "all", "roles": ["rl"]},
        "transfer": {"subset": "all", "descriptions": str(data["descriptions"]), **budget},
        "attention": {"subset": "all", "roles": ["in", "rl"], **budget},
        "data": {"gsm8k": str(data["gsm8k"] / "test.jsonl"), "math500": str(data["math500"] / "test.jsonl"),
                 "mathvista": str(data["mathvista"] / "testmini.parquet"), "vision_pairs": str(data["pairs"])},
    }


def run_demo(out: Path, *, device: str = "cpu", organism: str = "default", stages: list[str] | None = None,
             say: Callable[[str], None] = print, trio: Path | None = None, items: int = DEMO_ITEMS) -> Path:
    """Train (or reuse) the organism, or take the trio folder `trio` (base/, in/, rl/), write the data and
    config under OUT, run the stages; returns OUT."""
    from frankenstein_tasks.organism.evalsets import write_eval_sets
    from frankenstein_tasks.organism.pipeline import ROLES, copy_trio, organism_trio
    from frankenstein_tasks.run.config import load_config
    from frankenstein_tasks.run.runner import run
    from surgery import sources

    out = Path(out).resolve()
    if trio is None:
        say(f"model organism ({organism} setting; trained once, then cached) ...")
        source, recipe = organism_trio(organism), "Organism"
    else:
        source = {role: Path(trio) / role for role in ROLES}
        for folder in source.values():
            sources.check_checkpoint(folder)  # a missing role is one line, before any work
        recipe = f"{Path(trio).name} ({sources.read_config(source['in']).get('model_type')})"
    models = copy_trio(source, out / "models", overwrite=True)
    data = write_eval_sets(out / "data", n=items, seed=DEMO_SEED, overwrite=True)
    config_file = out / "demo.yaml"
    config = demo_config(out, models, data, device=device, stages=stages, recipe=recipe)
    write_text(config_file, "# frankenstein demo: rerun with `frankenstein run demo.yaml`\n" + yaml.safe_dump(config, sort_keys=False))
    say(f"config: {config_file}")
    return run(load_config(config_file), say=say)
