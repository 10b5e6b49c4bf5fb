"""How `frankenstein run` drives the harnesses: their Python APIs in this process, results saved as their CLIs save them.

`evaluate(tasks, model_args, out, ...)` calls `lmms_eval.evaluator.simple_evaluate` with the
`frankenstein` model and our task folder, then writes the results JSON and samples logs through
lmms-eval's own `EvaluationTracker`, so a run folder holds exactly what `lmms_eval --output_path`
would write (and `frankenstein curves`, `frankenstein report` read either). `lm_eval_evaluate` does
the same with lm-eval and the `frankenstein` lm-eval model (what `lm_eval --output_path` writes).
Settings the tasks read from the environment (subset, pair folder, datasets cache) are set for the
call only.
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


def lm_eval_evaluate(
    tasks: list[str],
    model_args: Mapping[str, Any],
    out: Path,
    *,
    num_fewshot: int | None = None,
    limit: int | None = None,
    apply_chat_template: bool = False,
    env: Mapping[str, str | None] = {},
) -> dict[str, Any]:
    """Run lm-eval `tasks` with the frankenstein lm-eval model; write lm-eval's results and samples under `out`."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    import frankenstein_tasks.models.lm_eval_model  # noqa: F401  (registers the model name `frankenstein`)

    tracker = EvaluationTracker(output_path=str(out))
    with environment(env):
        manager = check_lm_eval_tasks(tasks)
        results = lm_eval.simple_evaluate(
            model="frankenstein",
            model_args=model_args_string(model_args),
            tasks=list(tasks),
            num_fewshot=num_fewshot,
            limit=limit,
            log_samples=True,
            evaluation_tracker=tracker,
            apply_chat_template=apply_chat_template,
            task_manager=manager,
        )
    if results is None:
        raise FrankensteinError(f"lm-eval returned no results for {', '.join(tasks)}")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    _free_memory()
    return results


def check_lm_eval_tasks(tasks: list[str]) -> Any:
    """lm-eval's TaskManager, once every name in `tasks` is a task, group or tag it knows; else one line."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise FrankensteinError(f"lm-eval knows no task or group {', '.join(map(repr, unknown))} (`lm-eval ls tasks` lists them)")
    return manager


def _free_memory() -> None:
    """The model object is gone once simple_evaluate returns; give its memory back before the next stage."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
