"""Entry point for lmms-eval's model registry (group `lmms_eval.models` in pyproject.toml).

lmms-eval loads every entry point of that group when `lmms_eval.models` is first imported, which
happens before it builds its TaskManager. Loading this one imports the package
`frankenstein_tasks.models` first (Python imports a module's package before the module), and the
package's `__init__` installs the lmms-eval hooks a plugin needs: lmms-eval's TaskManager indexes
our `frank_*` task folder (`_task_discovery`), so `lmms_eval --tasks frank_vision_counting ...` works
right after `pip install`, with no `--include_path` and no `LMMS_EVAL_PLUGINS`; the end-of-run table
prints per-layer curves compactly (`_console_table`); and bad input (a model arg, a checkpoint, task
data) ends an `lmms_eval` run with one line and exit status 2 (`_bad_input`). The
`LMMS_EVAL_PLUGINS=frankenstein_tasks` route imports the same package, so the hooks are installed in
that one place for both routes.

The payload is a function (lmms-eval accepts one) that names the `frankenstein` model without
importing it: the model class, and lmms-eval's model base class with it, load only when a run asks
for the model.
"""

from __future__ import annotations

from typing import Any

MODEL_CLASS = "frankenstein_tasks.models.frankenstein.Frankenstein"


def manifest() -> Any:
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="frankenstein", simple_class_path=MODEL_CLASS)
