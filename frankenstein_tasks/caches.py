"""The cache root: the one folder under which the project keeps what it computes once and reuses.

`$FRANKENSTEIN_CACHE`, else `$XDG_CACHE_HOME/frankenstein`, else `~/.cache/frankenstein`, with one
subfolder per kind of entry, each owned by the module that fills it:

- `vision_pairs/`: default pair sets of the vision probes (`frankenstein_tasks.vision.pairs`)
- `organism/`: the model organism, expanded from the shipped file or trained (`frankenstein_tasks.organism`)
- `llm/`: image descriptions and judge verdicts from an LLM endpoint (`frankenstein_tasks.llm_endpoint`)

Entries are written whole under a temporary name, then renamed (`surgery.atomic`). What each entry is
keyed on: the README, "Caches and what they are keyed on". Per-run caches (stored answers, local
dataset copies) live in the run's own folder, not here.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$FRANKENSTEIN_CACHE, else $XDG_CACHE_HOME/frankenstein, else ~/.cache/frankenstein."""
    if os.environ.get("FRANKENSTEIN_CACHE"):
        return Path(os.environ["FRANKENSTEIN_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "frankenstein"
