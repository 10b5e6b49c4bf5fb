"""Model surgery for the Frankenstein analysis.

- `surgery.arch`: the architecture adapter (where layers, vision blocks, projector live; blocks;
  unified layer index). Every other module asks it.
- `surgery.sources` / `surgery.loading`: checkpoint folders and hub ids, safe loading.
- `surgery.tiny`: offline tiny Base / IN / RL trios for tests and the demo.
"""

from surgery.errors import FrankensteinError

__all__ = ["FrankensteinError"]
