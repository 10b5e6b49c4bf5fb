"""Let `LMMS_EVAL_PLUGINS=frankenstein_tasks` alone find the frank_* tasks in lmms-eval 0.7.3.

lmms-eval 0.7.3 builds its TaskManager (`__main__.cli_evaluate_single`) *before* it appends the
plugin's task folder to `include_path`, so without `--include_path` every `--tasks frank_...` is
"not found". `frankenstein_tasks.models` is imported earlier (when `lmms_eval.models` builds its model
registry), so importing this module wraps `TaskManager.initialize_tasks` to index
`frankenstein_tasks/tasks` as well. `--include_path` keeps working as before, and a later lmms-eval
that fixes the order indexes the folder only once.
"""

from __future__ import annotations

import functools
import os

TASKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tasks")


def index_frankenstein_tasks() -> None:
    try:
        from lmms_eval.tasks import TaskManager
    except ImportError:  # lmms-eval not installed: nothing to register with
        return
    if getattr(TaskManager.initialize_tasks, "_frankenstein_tasks", False):
        return
    original = TaskManager.initialize_tasks

    @functools.wraps(original)
    def initialize_tasks(self, include_path=None, include_defaults=True):
        paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
        if not any(os.path.realpath(p) == os.path.realpath(TASKS_DIR) for p in paths):
            paths.append(TASKS_DIR)
        return original(self, include_path=paths, include_defaults=include_defaults)

    initialize_tasks._frankenstein_tasks = True
    TaskManager.initialize_tasks = initialize_tasks


index_frankenstein_tasks()
