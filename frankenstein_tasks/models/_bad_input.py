"""Bad task data ends an lmms-eval run with one line, as bad input does everywhere else in the project.

A `frank_*` task checks its data where lmms-eval hands it over, in `process_docs`, and raises
`FrankensteinError` with a line naming the problem (a wrong dataset, a missing field, no
descriptions). lmms-eval 0.7.3 buries that line: `ConfigurableTask.download` (which calls
`process_docs`) retries any exception five times two seconds apart under tenacity, then raises a
`RetryError` whose text does not hold the message, and the CLI prints a traceback followed by
"Error during evaluation: RetryError[...]" and exits 0.

`install()` wraps `ConfigurableTask.download` once per process so that

* a `FrankensteinError` is not retried (the data will not change in two seconds) and propagates as
  itself, so Python callers (`lmms_eval.simple_evaluate`, `frankenstein run`) can catch it;
* under the `lmms_eval` command line it ends the process with `frankenstein: error: <message>` on
  stderr and exit status 2, like the `frankenstein` CLI.

Any other exception keeps lmms-eval's own handling. Installed, with the other lmms-eval hooks, when
the package `frankenstein_tasks.models` is imported (`models/__init__.py`), which both the model's
entry point (`registration.py`) and the plugin route do.
"""

from __future__ import annotations

import functools
import sys

from surgery.errors import FrankensteinError

EXIT_STATUS = 2


def install() -> None:
    try:
        from lmms_eval.api.task import ConfigurableTask
    except ImportError:  # lmms-eval not installed: nothing to wrap
        return
    if getattr(ConfigurableTask.download, "_frankenstein_errors", False):
        return
    from tenacity import retry_if_not_exception_type

    original = ConfigurableTask.download
    no_retry = original.retry_with(retry=retry_if_not_exception_type(FrankensteinError)) if hasattr(original, "retry_with") else original

    @functools.wraps(original)
    def download(self, *args, **kwargs):
        try:
            return no_retry(self, *args, **kwargs)
        except FrankensteinError as e:
            if running_lmms_eval_cli():
                print(f"frankenstein: error: {e}", file=sys.stderr, flush=True)
                raise SystemExit(EXIT_STATUS) from None
            raise

    download._frankenstein_errors = True
    ConfigurableTask.download = download


def running_lmms_eval_cli() -> bool:
    """True inside `lmms_eval ...` / `python -m lmms_eval ...`, False for Python callers of its API."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name in ("lmms_eval.__main__", "lmms_eval"):
        return True
    return str(getattr(main, "__file__", "") or "").endswith(("/lmms_eval", "/lmms-eval"))
