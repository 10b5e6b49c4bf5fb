"""Models that lmms-eval imports when `LMMS_EVAL_PLUGINS=frankenstein_tasks` is set.

lmms-eval reads `AVAILABLE_MODELS` (model name -> class name in `frankenstein_tasks.models.<name>`).
"""

AVAILABLE_MODELS: dict[str, str] = {"frankenstein": "Frankenstein"}
