"""Models that lmms-eval imports when `LMMS_EVAL_PLUGINS=frankenstein_tasks` is set.

lmms-eval reads `AVAILABLE_MODELS` (model name -> class name in `frankenstein_tasks.models.<name>`).
"""

AVAILABLE_MODELS: dict[str, str] = {"frankenstein": "Frankenstein"}

# lmms-eval imports this module (via LMMS_EVAL_PLUGINS) before it builds its TaskManager: make our task folder visible to it.
from frankenstein_tasks.models import _task_discovery  # noqa: E402,F401
