"""Bad input ends an lmms-eval run with one line and exit status 2, as it does everywhere else in the project.

Anything a user can get wrong in a run with the `frankenstein` model or a `frank_*` task (a model arg,
an unloadable checkpoint, NaN weights, task data without the fields the task reads) raises
`FrankensteinError` with a one-line message. lmms-eval 0.7.3's command line buries that line:
`__main__.cli_evaluate` runs each evaluation inside `except Exception`, which prints a traceback and
"Error during evaluation: ..." and carries on, and the process exits 0, so a pipeline records success.
Its task layer also retries `ConfigurableTask.download` (which calls `process_docs`) and
`process_results` on any exception, five times two seconds apart, and then raises a `RetryError`
whose text does not hold the message.

The way out that the catch-all does not swallow is `SystemExit`: it derives from `BaseException`, not
`Exception`, so it passes `except Exception` and ends the process with its code. `install()` wraps,
once per process:

* `lmms_eval.evaluator.simple_evaluate`, which the command line looks up on the module at call time
  (wrapped once that module has finished importing, at the latest when a TaskManager is built): under the `lmms_eval` / `lmms-eval` / `python -m lmms_eval` command line (`running_lmms_eval_cli`),
  a `FrankensteinError` from anywhere in the run ends the process with
  `frankenstein: error: <message>` on stderr and exit status 2, like the `frankenstein` CLI. Python
  callers of lmms-eval's API (`lmms_eval.simple_evaluate`, `frankenstein run`, which reports it per
  stage) get the `FrankensteinError` itself.
* `ConfigurableTask.download` and `ConfigurableTask.process_results`: a `FrankensteinError` is not
  retried (the data will not change in two seconds) and propagates as itself.

Any other exception keeps lmms-eval's own handling. Installed, with the other lmms-eval hooks, when the
package `frankenstein_tasks.models` is imported (`models/__init__.py`), which both the model's entry
point (`registration.py`) and the plugin route do, and which lmms-eval's command line does when it
imports its model registry, before it evaluates anything.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

from surgery.errors import FrankensteinError

EXIT_STATUS = 2
# Methods of lmms-eval's ConfigurableTask that it retries on any exception.
RETRIED_METHODS = ("download", "process_results")


def install() -> None:
    try:
        from lmms_eval.api.task import ConfigurableTask
        from lmms_eval.tasks import TaskManager
    except ImportError:  # lmms-eval not installed: nothing to wrap
        return
    for name in RETRIED_METHODS:
        method = getattr(ConfigurableTask, name)
        if not getattr(method, "_frankenstein_errors", False):
            setattr(ConfigurableTask, name, _without_retry(method))
    wrap_simple_evaluate()
    # lmms-eval's command line imports its model registry, and so installs these hooks, while
    # `lmms_eval.evaluator` is itself still being imported (it has no `simple_evaluate` yet). The
    # command line builds its TaskManager after every import and before it evaluates: wrap then.
    if not getattr(TaskManager.__init__, "_frankenstein_errors", False):
        original_init = TaskManager.__init__

        @functools.wraps(original_init)
        def init(self, *args: Any, **kwargs: Any) -> None:
            wrap_simple_evaluate()
            original_init(self, *args, **kwargs)

        init._frankenstein_errors = True
        TaskManager.__init__ = init


def wrap_simple_evaluate() -> None:
    """Wrap `lmms_eval.evaluator.simple_evaluate` once, if that module has finished importing."""
    evaluator = sys.modules.get("lmms_eval.evaluator")
    simple_evaluate = getattr(evaluator, "simple_evaluate", None)
    if simple_evaluate is not None and not getattr(simple_evaluate, "_frankenstein_errors", False):
        evaluator.simple_evaluate = _exit_on_bad_input(simple_evaluate)


def _without_retry(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` (a tenacity-retried function) with FrankensteinError raised at once, as itself."""
    from tenacity import retry_if_not_exception_type

    wrapped = method.retry_with(retry=retry_if_not_exception_type(FrankensteinError)) if hasattr(method, "retry_with") else method

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    call._frankenstein_errors = True
    return call


def _exit_on_bad_input(simple_evaluate: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(simple_evaluate)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return simple_evaluate(*args, **kwargs)
        except FrankensteinError as e:
            if running_lmms_eval_cli():
                exit_with_one_line(e)
            raise

    call._frankenstein_errors = True
    return call


def exit_with_one_line(error: FrankensteinError) -> None:
    """End the process as the `frankenstein` CLI does: one line on stderr, exit status 2. SystemExit is
    not an Exception, so lmms-eval's `except Exception` lets it through."""
    sys.stdout.flush()
    print(f"frankenstein: error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STATUS) from None


def running_lmms_eval_cli() -> bool:
    """True inside `lmms_eval ...` / `python -m lmms_eval ...`, False for Python callers of its API."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name in ("lmms_eval.__main__", "lmms_eval"):
        return True
    return str(getattr(main, "__file__", "") or "").endswith(("/lmms_eval", "/lmms-eval"))
