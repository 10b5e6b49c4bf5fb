"""The trained model organism for tests: the small "test" setting the package ships, expanded once.

The package ships the trained test organism (`frankenstein_tasks/organism/shipped/test.safetensors`);
the first session on a machine expands it (seconds) into $FRANKENSTEIN_CACHE/organism (default
~/.cache/frankenstein), later sessions reuse that folder. Nothing is trained (only if the shipped file
were stale for the code's settings would it train, a few minutes on CPU). A test module gets the
fixture with `pytest_plugins = ("organism_fixture",)`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SETTING = "test"


@pytest.fixture(scope="session")
def organism() -> dict[str, Path]:
    """{"base", "in", "rl"} checkpoint folders of the shipped trained organism (test setting, seed 0)."""
    from frankenstein_tasks.organism.pipeline import organism_trio

    return organism_trio(SETTING, progress=False)
