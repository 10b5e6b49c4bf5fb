"""Model surgery for the Frankenstein analysis.

- `surgery.arch`: the architecture adapter (where layers, vision blocks, projector live; blocks;
  unified layer index). Every other module asks it.
- `surgery.sources` / `surgery.loading`: checkpoint folders and hub ids, safe loading.
- `surgery.stack`, `surgery.swap`, `surgery.ablation`, `surgery.attention`, `surgery.probes`: the engine
  and its probes; `surgery.reference`: the plain-definition paths they are tested against.
- `surgery.splice`, `surgery.freeze`: Frankenstein splices and block freezing.
- `surgery.tiny`: offline tiny Base / IN / RL trios for tests (`surgery.tiny_families`: each family's
  tiny config and processor); `surgery.organism_train`: the training
  loops of the model organism (its data and pipeline live in `frankenstein_tasks.organism`).
"""

from surgery.errors import FrankensteinError

__all__ = ["FrankensteinError"]
