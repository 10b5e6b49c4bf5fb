"""The trained model organism for tests: the small "test" setting, trained once and cached.

The first session on a machine trains it (a few minutes on CPU) into $FRANKENSTEIN_CACHE/organism
(default ~/.cache/frankenstein); later sessions reuse the cache, so the fixture is instant. A test
module gets the fixture with `pytest_plugins = ("organism_fixture",)`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SETTING = "test"


@pytest.fixture(scope="session")
def organism() -> dict[str, Path]:
    """{"base", "in", "rl"} checkpoint folders of the trained organism (test setting, seed 0)."""
    from frankenstein_tasks.organism.pipeline import organism_trio

    return organism_trio(SETTING, progress=False)
