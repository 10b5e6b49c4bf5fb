"""The engine knows no harness: every `surgery` module imports with lmms_eval and frankenstein_tasks blocked."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import surgery

BLOCKER = r'''
import importlib, sys

class Blocked:
    """A meta-path finder that refuses the harness packages."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lmms_eval", "frankenstein_tasks", "lm_eval"):
            raise ImportError(f"surgery must not import {name}")
        return None

sys.meta_path.insert(0, Blocked())
for name in sys.argv[1:]:
    importlib.import_module(name)
print("ok", len(sys.argv) - 1)
'''


def surgery_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(surgery.__path__, "surgery."))


def test_every_surgery_module_imports_without_the_harness():
    modules = surgery_modules()
    assert "surgery.probes" in modules and "surgery.stack" in modules  # the walk found the engine
    done = subprocess.run([sys.executable, "-c", BLOCKER, *modules], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"ok {len(modules)}"


def test_the_blocker_really_blocks():
    """The check above would pass vacuously if blocking did nothing: a harness module must fail under it."""
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, "frankenstein_tasks.contract"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0 and "must not import frankenstein_tasks" in done.stderr
