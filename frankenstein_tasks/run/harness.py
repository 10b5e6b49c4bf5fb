"""How `frankenstein run` drives lmms-eval: its Python API in this process, results saved as its CLI saves them.

`evaluate(tasks, model_args, out, ...)` calls `lmms_eval.evaluator.simple_evaluate` with the
`frankenstein` model and our task folder, then writes the results JSON and samples logs through
lmms-eval's own `EvaluationTracker`, so a run folder holds exactly what `lmms_eval --output_path`
would write (and `frankenstein curves`, `frankenstein report` read either). Settings the tasks read
from the environment (subset, pair folder, datasets cache) are set for the call only.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from frankenstein_tasks.hub_cache import OFFLINE_ENV as _DATASETS_OFFLINE_ENV
from surgery.errors import FrankensteinError

# What keeps huggingface_hub, datasets and transformers off the hub; set before they are imported.
OFFLINE_ENV = {**_DATASETS_OFFLINE_ENV, "TRANSFORMERS_OFFLINE": "1"}


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables inside the block; restore them after."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def model_args_string(args: Mapping[str, Any]) -> str:
    """lmms-eval's `key=value,...` form; values must not contain commas."""
    parts = []
    for key, value in args.items():
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if "," in text:
            raise FrankensteinError(f"model arg {key}={text!r} contains a comma, which lmms-eval cannot pass")
        parts.append(f"{key}={text}")
    return ",".join(parts)


def evaluate(
    tasks: list[str],
    model_args: Mapping[str, Any],
    out: Path,
    *,
    gen_kwargs: str | None = None,
    env: Mapping[str, str | None] = {},
) -> dict[str, Any]:
    """Run `tasks` with the frankenstein model; write lmms-eval's results and samples under `out`."""
    from lmms_eval import evaluator
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.tasks import TaskManager

    from frankenstein_tasks.models._task_discovery import TASKS_DIR

    from lmms_eval.utils import get_datetime_str

    args = model_args_string(model_args)
    tracker = EvaluationTracker(output_path=str(out))
    stamp = get_datetime_str()
    with environment(env):
        results = evaluator.simple_evaluate(
            model="frankenstein",
            model_args=args,
            tasks=tasks,
            gen_kwargs=gen_kwargs,
            log_samples=True,
            evaluation_tracker=tracker,
            task_manager=TaskManager("WARNING", include_path=TASKS_DIR),
            bootstrap_iters=1000,
            datetime_str=stamp,
        )
    if results is None:
        raise FrankensteinError(f"lmms-eval returned no results for {', '.join(tasks)}")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=stamp)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    _free_memory()
    return results


def _free_memory() -> None:
    """The model object is gone once simple_evaluate returns; give its memory back before the next stage."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
