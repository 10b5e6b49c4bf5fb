"""What `frankenstein run` keeps off its console: the warnings its own choices cause, and nothing else.

A run reads its datasets from the local copies it made (`hub_cache`, offline) and gives each stage's
budget to lmms-eval as `gen_kwargs`. Both are the project's choices, not news for the person reading
the console, yet each makes a library warn for every model of every stage:

    datasets   Using the latest cached version of the dataset since <repo> couldn't be found on the
               Hugging Face Hub (offline mode is enabled).
               Found the latest cached dataset configuration '<config>' at <folder> (last modified on ...).
    lmms-eval  generation_kwargs specified through cli, these settings will be used over set parameters
               in yaml tasks.

`silenced()` drops exactly these messages while one harness call runs (`harness.evaluate`,
`harness.lm_eval_evaluate`). Every other warning, the stage lines and the progress bars pass as
before, and nothing changes outside `frankenstein run` (a plain `lmms_eval` run prints what it always
printed).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterator

# logger name -> the starts of the messages it logs that the run caused itself.
DATASETS_MESSAGES: dict[str, tuple[str, ...]] = {
    "datasets.load": ("Using the latest cached version of the dataset since ",),
    "datasets.packaged_modules.cache.cache": ("Found the latest cached dataset configuration ",),
}
LMMS_EVAL_MESSAGES: tuple[str, ...] = ("generation_kwargs specified through cli",)


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


class _LoguruWithout:
    """lmms-eval's loguru logger, less the warnings that start with `starts`; everything else is forwarded,
    with the caller's frame (depth=1) so the log line still names lmms-eval's code."""

    def __init__(self, logger: Any, starts: tuple[str, ...]) -> None:
        self._logger, self._starts = logger, starts

    def warning(self, message: Any, *args: Any, **kwargs: Any) -> None:
        if not (isinstance(message, str) and message.startswith(self._starts)):
            self._logger.opt(depth=1).warning(message, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Inside the block, the messages listed above are not printed; all others are."""
    filters = [(logging.getLogger(name), _DropMessages(starts)) for name, starts in DATASETS_MESSAGES.items()]
    for logger, drop in filters:
        logger.addFilter(drop)
    evaluator = sys.modules.get("lmms_eval.evaluator")
    original = getattr(evaluator, "eval_logger", None)
    if original is not None:
        evaluator.eval_logger = _LoguruWithout(original, LMMS_EVAL_MESSAGES)
    try:
        yield
    finally:
        if original is not None:
            evaluator.eval_logger = original
        for logger, drop in filters:
            logger.removeFilter(drop)
