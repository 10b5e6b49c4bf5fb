"""The tested set: the package versions in `requirements.lock`, and how the running environment compares.

The lock (next to `pyproject.toml`, written by `uv pip compile`, see the README's "Installing and the
lock") pins every transitive package at the version the tests last passed on. A fresh machine that
installs from it gets exactly that set; one that installs from `pyproject.toml`'s ranges gets today's
releases, and a release made after the last landing can break it (filelock 4.3.0 broke lmms-eval
0.7.3 that way). `frankenstein doctor` prints this module's comparison, and `frankenstein run` points
at it when a stage fails with an unexpected library error.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

LOCK_NAME = "requirements.lock"

# The packages whose versions decide whether a run works; `frankenstein doctor` always lists them.
STACK = (
    "torch", "torchvision", "transformers", "tokenizers", "lmms-eval", "lm-eval", "mergekit", "accelerate",
    "datasets", "huggingface-hub", "filelock", "safetensors", "math-verify", "numpy", "pydantic", "openai",
)


@dataclass(frozen=True)
class PackageState:
    name: str  # canonical name
    installed: str | None  # version in this environment, None when absent
    locked: str | None  # version in the lock for this platform, None when the lock does not pin it

    @property
    def status(self) -> str:
        if self.locked is None:
            return "not in lock"
        if self.installed is None:
            return "missing"
        return "ok" if self.installed == self.locked else "differs"


def lock_path() -> Path | None:
    """The lock of the source tree this package runs from (an editable or cloned install), if any."""
    candidate = Path(__file__).resolve().parent.parent / LOCK_NAME
    return candidate if candidate.is_file() else None


def read_lock(path: Path) -> dict[str, str]:
    """Canonical name -> version of every lock entry whose environment marker holds on this machine."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement, _, marker = text.partition(";")
        name, sep, version = requirement.partition("==")
        if not sep:
            raise ValueError(f"{path}: {line!r} is not a pin (name==version)")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        pins[canonicalize_name(name.strip())] = version.strip()
    return pins


def installed_versions() -> dict[str, str]:
    return {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }


def compare(lock: dict[str, str], installed: dict[str, str], names: list[str] | None = None) -> list[PackageState]:
    """Installed against locked versions, for `names` (default: every locked package)."""
    chosen = [canonicalize_name(n) for n in names] if names is not None else sorted(lock)
    return [PackageState(n, installed.get(n), lock.get(n)) for n in chosen]


def environment_line() -> str:
    """Python, platform and the accelerator torch sees, in one line."""
    parts = [f"Python {platform.python_version()} ({sys.executable})", f"{platform.system()} {platform.machine()}"]
    try:
        import torch

        cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
        parts.append(f"CUDA devices: {cuda}" + (f" (CUDA {torch.version.cuda})" if cuda else ""))
    except ImportError:
        parts.append("torch not importable")
    return ", ".join(parts)
