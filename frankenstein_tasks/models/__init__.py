"""The harness side of the engine: the `frankenstein` lmms-eval model and how lmms-eval finds it.

`pip install` registers the model and the `frank_*` tasks through the entry point in
`registration.py`. The older `LMMS_EVAL_PLUGINS=frankenstein_tasks` route still works: lmms-eval
then reads `AVAILABLE_MODELS` here (model name -> class name in `frankenstein_tasks.models.<name>`).

Importing this package installs the lmms-eval hooks (task folder, console table, bad input ending a
run with one line and exit status 2), each once per process. This is the one place they are
installed: both routes import the package (the entry point's module lives in it), and each hook does
nothing without lmms-eval installed. (Per-layer scoring of log-likelihood requests wraps lmms-eval's
`evaluate` from the model's own module, `frankenstein.py`, as `lm_eval_model.py` does for lm-eval: it
concerns runs of that model only, and the module is imported before any such run evaluates.)
"""

AVAILABLE_MODELS: dict[str, str] = {"frankenstein": "Frankenstein"}

from frankenstein_tasks.models import _bad_input  # noqa: E402
from frankenstein_tasks.models._console_table import install_curve_table  # noqa: E402
from frankenstein_tasks.models._task_discovery import index_frankenstein_tasks  # noqa: E402

index_frankenstein_tasks()
install_curve_table()
_bad_input.install()
