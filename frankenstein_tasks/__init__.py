"""lmms-eval tasks (`frank_*`) and the `frankenstein` command line.

lmms-eval finds the tasks through `--include_path` or `LMMS_EVAL_PLUGINS=frankenstein_tasks`
(which imports `frankenstein_tasks.models` and adds the folder of `frankenstein_tasks.tasks`).
"""
