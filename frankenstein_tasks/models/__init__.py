"""The harness side of the engine: the `frankenstein` lmms-eval model and how lmms-eval finds it.

`pip install` registers the model and the `frank_*` tasks through the entry point in
`registration.py`. The older `LMMS_EVAL_PLUGINS=frankenstein_tasks` route still works: lmms-eval
then reads `AVAILABLE_MODELS` here (model name -> class name in `frankenstein_tasks.models.<name>`).
"""

AVAILABLE_MODELS: dict[str, str] = {"frankenstein": "Frankenstein"}

# The plugin route needs the same set-up as the entry point (task folder, console table, data errors).
from frankenstein_tasks.models import _task_errors  # noqa: E402
from frankenstein_tasks.models._console_table import install_curve_table  # noqa: E402
from frankenstein_tasks.models._task_discovery import index_frankenstein_tasks  # noqa: E402

index_frankenstein_tasks()
install_curve_table()
_task_errors.install()
