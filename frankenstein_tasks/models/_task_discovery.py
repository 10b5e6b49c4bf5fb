"""Make lmms-eval's TaskManager index the `frank_*` tasks without `--include_path`.

lmms-eval 0.7.3 has no entry point for task folders, and it builds its TaskManager
(`__main__.cli_evaluate_single`) *before* it appends a `LMMS_EVAL_PLUGINS` task folder to
`include_path`. What it does load first is its model registry, which imports our model entry point
(`registration.py`; or `frankenstein_tasks.models` on the plugin route). Both import the package
`frankenstein_tasks.models`, whose `__init__` calls `index_frankenstein_tasks()`; that wraps
`TaskManager.initialize_tasks` so that every TaskManager also indexes `frankenstein_tasks/tasks`.
`--include_path` keeps working, and a folder given twice is indexed once.
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
