"""The shapes of what a Frankenstein run writes and the analysis reads, declared once.

Writers build these models and dump them; readers validate with the same models, so a shape cannot
drift between the two sides (`tests/test_schema.py` validates a real run's files with them):

    LayerCurve        a per-layer metric of a probe task, under `results[task]["<metric>,none"]`:
                      `{"layers", "value", "stderr", "n"}` (written by `frankenstein_tasks.contract`,
                      read by `analysis.harness`, the report and the console table)
    IntervalEstimate  a statistic with its 95 % interval, `{"value", "low", "high", "n"}`, null value
                      or bounds when undefined (the transfer tasks' M_vis, M_v2r, M_rea, accuracies)
    TransitionCounts  `{"n", "TT", "TF", "FT", "FF", "net_gain", "side_effect_rate", "lift_rate"}`,
                      the three statistics being IntervalEstimates (METHOD.md 3)
    OutcomeRecord     one item under one condition, the per-sample value of every transfer metric and
                      so a line of the samples log (written by `frankenstein_tasks.transfer.score`, read
                      by `analysis.outcomes` and `analysis.attention_shift`)
    STAGE_NAMES       the stages of `frankenstein run`, in the order they run and the report reads them
    StageRecord, RunManifest   `run.json` of a run folder (written by `frankenstein_tasks.run.runner`,
                      read by `analysis.report.runs`)

Why here: the writers are task code (`frankenstein_tasks`), the readers analysis code, and the import
direction between them is fixed: `frankenstein_tasks` imports `analysis` (transitions, outcomes), never
the reverse, and both import the engine `surgery`. The engine knows nothing of result files, so the one
declaration belongs to the lower of the two sides that do: `analysis`, in a module that imports only
pydantic (no harness, no plotting), so task code may import it at no cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# ---------------------------------------------------------------------------------------------
# Results JSON values
# ---------------------------------------------------------------------------------------------


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayerCurve(_Shape):
    """A per-layer metric: per decoder layer (ascending) its value over `n` items and a standard error.

    A value or standard error may be NaN (JSON `NaN`) where it is undefined, e.g. a layer every
    resample left without items."""

    layers: list[int]
    value: list[float]
    stderr: list[float]
    n: int = Field(ge=0)

    @model_validator(mode="after")
    def _aligned(self) -> LayerCurve:
        if not len(self.layers) == len(self.value) == len(self.stderr):
            raise ValueError(f"layers, value and stderr differ in length ({len(self.layers)}, {len(self.value)}, {len(self.stderr)})")
        if any(b <= a for a, b in zip(self.layers, self.layers[1:])) or any(layer < 0 for layer in self.layers):
            raise ValueError(f"layers must be distinct decoder layers in ascending order, got {self.layers}")
        return self

    @staticmethod
    def claims(value: Any) -> bool:
        """Whether a results value is meant as a curve (then it must validate as one)."""
        return isinstance(value, Mapping) and "layers" in value

    def at(self, layer: int) -> tuple[float, float]:
        """(value, stderr) at `layer`."""
        j = self.layers.index(layer)
        return self.value[j], self.stderr[j]


class IntervalEstimate(_Shape):
    """A statistic over `n` items with its interval; None (JSON null) where it is undefined (0/0, no items)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = Field(ge=0)

    @staticmethod
    def claims(value: Any) -> bool:
        return isinstance(value, Mapping) and {"value", "low", "high"} <= set(value) and "layers" not in value


CELLS = ("TT", "TF", "FT", "FF")
TRANSITION_STATISTICS = ("net_gain", "side_effect_rate", "lift_rate")


class TransitionCounts(_Shape):
    """Counts of the four (before, after) cells over `n` items, and the statistics read off them."""

    n: int = Field(ge=0)
    TT: int = Field(ge=0)
    TF: int = Field(ge=0)
    FT: int = Field(ge=0)
    FF: int = Field(ge=0)
    net_gain: IntervalEstimate
    side_effect_rate: IntervalEstimate
    lift_rate: IntervalEstimate

    @model_validator(mode="after")
    def _counts_add_up(self) -> TransitionCounts:
        if self.n != self.TT + self.TF + self.FT + self.FF:
            raise ValueError(f"n={self.n} but TT+TF+FT+FF={self.TT + self.TF + self.FT + self.FF}")
        return self

    @staticmethod
    def claims(value: Any) -> bool:
        return isinstance(value, Mapping) and set(CELLS) <= set(value)

    def cells(self) -> dict[str, int]:
        return {c: getattr(self, c) for c in CELLS}


# ---------------------------------------------------------------------------------------------
# Samples log values
# ---------------------------------------------------------------------------------------------

REAL, BLACK = "A", "B"  # the conditions: A real image (or the question only), B black image [+ description]


class OutcomeRecord(_Shape):
    """One item under one condition: was the answer right, what was read from it, and who graded it."""

    item: str
    condition: Literal["A", "B"]
    correct: bool
    answer: str | None = None  # the answer extracted from the reply (None: nothing extracted, or a judge)
    graded_by: Literal["rule", "judge"] = "rule"

    @staticmethod
    def claims(value: Any) -> bool:
        return isinstance(value, Mapping) and {"item", "condition", "correct"} <= set(value)


# ---------------------------------------------------------------------------------------------
# Run folders
# ---------------------------------------------------------------------------------------------

STAGE_NAMES = ("delta", "merges", "vision_swap", "reasoning", "reasoning_logprob", "transfer", "leaderboard", "attention")


class StageRecord(BaseModel):
    """One stage in run.json. Fields the report does not use (settings, weights, error) are kept, not checked."""

    model_config = ConfigDict(extra="allow")

    status: str  # "done", "failed", "not run"; anything but "done" shows as not run, with the status
    seconds: float | None = None
    outputs: list[str] = []


class RunManifest(BaseModel):
    """run.json: what ran, on which models, with which layout and stages; other fields kept, not checked."""

    model_config = ConfigDict(extra="allow")

    recipe: str
    models: dict[str, str]
    cuts: tuple[int, int] | None = None
    layout: dict[str, Any]
    stages: dict[str, StageRecord] = {}


def first_error(error: ValidationError) -> str:
    """The first problem of a validation error in a few words, for a one-line message: `TT = 'many': ...`."""
    err = error.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    return f"{field} = {err['input']!r}: {message}" if field else message
