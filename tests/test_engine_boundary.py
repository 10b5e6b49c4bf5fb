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


# What each layer must never import, anywhere in its source: the import-time check above sees only the
# imports that run when a module loads, not those inside functions (run only when the function is).
FORBIDDEN = {"surgery": ("lmms_eval", "lm_eval", "frankenstein_tasks"), "analysis": ("frankenstein_tasks",)}


def forbidden_imports(source: str, forbidden: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, module) of every import of a forbidden package in `source`: `import`, `from ... import`
    and `importlib.import_module` / `__import__` with a literal name, at any depth (functions, classes,
    conditionals)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                names = [node.args[0].value]
        found += [(node.lineno, name) for name in names if name.split(".")[0] in forbidden]
    return sorted(found)


def test_no_engine_or_analysis_source_imports_what_it_must_not():
    from pathlib import Path

    root = Path(surgery.__file__).parent.parent
    offenders = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((root / package).rglob("*.py"))
        assert len(files) > 5, package  # the walk found the package
        for path in files:
            offenders += [f"{path.relative_to(root)}:{line} imports {name}"
                          for line, name in forbidden_imports(path.read_text(), forbidden)]
    assert offenders == []


def test_the_source_check_sees_imports_inside_functions():
    """Guard against a vacuous check: nested, aliased and dynamic imports are all found, other packages are not."""
    source = (
        "import os\n"
        "def f():\n"
        "    from frankenstein_tasks.contract import decode\n"
        "class C:\n"
        "    def g(self):\n"
        "        if True:\n"
        "            import lmms_eval.utils as u\n"
        "def h():\n"
        "    import importlib\n"
        "    return importlib.import_module('lm_eval.api')\n"
        "from .sibling import x\n"
        "import lm_evaluation_harness_other\n"
    )
    assert forbidden_imports(source, FORBIDDEN["surgery"]) == [(3, "frankenstein_tasks.contract"), (7, "lmms_eval.utils"), (10, "lm_eval.api")]
