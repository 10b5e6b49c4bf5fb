"""The model organism: a tiny Qwen2.5-VL Base -> IN -> RL trio trained on CPU with known answers.

Random-weight tiny models prove that the code computes the method; the organism shows that the
method finds real functions where they are. It counts shapes, tells whether a shape is present,
solves word problems with a worked step and \\boxed{}, and (IN, RL) counts then computes; every
probe of the project gives a real signal on it (docs/organism.md).

    data.py      the generated tasks (pair-generator images, word problems), train / eval splits
    pipeline.py  settings, the three training stages, the cache (`organism_trio`)
    shipped.py   the trained organisms shipped with the package (packed), expanded on first use
    training.py  the training loops: vocabulary slice, SFT, group-baseline policy gradient
    evalsets.py  held-out sets in the GSM8K / MATH-500 / MathVista schemas and frank_vision pairs
    measure.py   accuracies and probe curves through the surgery engine
    report.py    every probe on one trio, as probes.json and figures
"""

from .evalsets import write_eval_sets
from .pipeline import SETTINGS, OrganismSettings, organism_info, organism_trio

__all__ = ["SETTINGS", "OrganismSettings", "organism_info", "organism_trio", "write_eval_sets"]
