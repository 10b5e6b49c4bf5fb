"""Entry point for lmms-eval's model registry (group `lmms_eval.models` in pyproject.toml).

lmms-eval loads every entry point of that group when `lmms_eval.models` is first imported, which
happens before it builds its TaskManager. So this one entry point does both jobs a plugin needs:
it names the `frankenstein` model (without importing it: the class loads only when a run asks for
it), lets lmms-eval's TaskManager index our `frank_*` task folder (`_task_discovery`), so
`lmms_eval --tasks frank_vision_counting ...` works right after `pip install`, with no
`--include_path` and no `LMMS_EVAL_PLUGINS`, makes the end-of-run table print per-layer curves
compactly (`_console_table`), and ends a run on bad task data with one line (`_task_errors`).

The payload is a function (lmms-eval accepts one) so that importing this module imports nothing
of lmms-eval: the registry may be half-built when it loads us.
"""

from __future__ import annotations

from typing import Any

MODEL_CLASS = "frankenstein_tasks.models.frankenstein.Frankenstein"


def manifest() -> Any:
    from lmms_eval.models.registry_v2 import ModelManifest

    from frankenstein_tasks.models import _task_errors
    from frankenstein_tasks.models._console_table import install_curve_table
    from frankenstein_tasks.models._task_discovery import index_frankenstein_tasks

    index_frankenstein_tasks()
    install_curve_table()
    _task_errors.install()
    return ModelManifest(model_id="frankenstein", simple_class_path=MODEL_CLASS)
