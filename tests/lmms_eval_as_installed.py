"""Run `lmms_eval` as if this package were not installed (`--without-this-package`), or as installed.

    python tests/lmms_eval_as_installed.py [--without-this-package] -- LMMS_EVAL_ARGS...

The package reaches lmms-eval in one way only: its entry point in the group `lmms_eval.models`
(pyproject.toml), which lmms-eval loads when it imports its model registry, and whose import installs
the hooks (`frankenstein_tasks/models/__init__.py`). Without the package, that entry point does not
exist and none of its modules can be imported. This launcher reproduces exactly that in one venv:
before lmms-eval is imported it hides the entry points whose code lives in this package's modules
from `importlib.metadata.entry_points`, and a finder at the front of `sys.meta_path` makes importing
any of the package's top-level modules fail as for a package that is not there (the editable install's
own finder and PYTHONPATH come after it). Then it runs `python -m lmms_eval` with the given arguments.

At exit it writes, to the file named by `$LMMS_EVAL_AS_INSTALLED_REPORT`, which of the package's
modules were imported and which lmms-eval functions carried a frankenstein hook, so a test can check
that the "without" run really ran without and the "with" run really ran with.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.metadata
import json
import os
import runpy
import sys

PACKAGE_MODULES = ("frankenstein_tasks", "surgery", "analysis", "merge_configs")
# The marker attribute each hook sets on the lmms-eval function it wraps.
HOOK_MARKERS = ("_frankenstein_tasks", "_frankenstein_curves", "_frankenstein_errors", "_frankenstein")


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGE_MODULES


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if _ours(fullname):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def hide_this_package() -> None:
    sys.meta_path.insert(0, _NotInstalled())
    original = importlib.metadata.entry_points

    def entry_points(**params):
        found = original(**params)
        if isinstance(found, importlib.metadata.EntryPoints):
            return importlib.metadata.EntryPoints(ep for ep in found if not _ours(ep.module))
        return found  # a selection by keyword is filtered by the call above only when it returns EntryPoints

    importlib.metadata.entry_points = entry_points


def hooked_functions() -> list[str]:
    """`module.qualname` of every lmms-eval function that carries one of the hooks' markers."""
    found = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("lmms_eval") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            for candidate in [value, *vars(value).values()] if isinstance(value, type) else [value]:
                if callable(candidate) and any(getattr(candidate, m, False) is True for m in HOOK_MARKERS):
                    found.append(f"{name}.{attr}")
    return sorted(set(found))


def report() -> None:
    path = os.environ.get("LMMS_EVAL_AS_INSTALLED_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"package_modules": sorted(m for m in sys.modules if _ours(m)), "hooked": hooked_functions()}, f)


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--without-this-package":
        hide_this_package()
        args = args[1:]
    if args and args[0] == "--":
        args = args[1:]
    atexit.register(report)
    sys.argv = ["lmms_eval", *args]
    runpy.run_module("lmms_eval", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
