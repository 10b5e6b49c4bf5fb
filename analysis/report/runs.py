"""A run folder as the report sees it: its manifest (`run.json`), its stages, and the result files inside.

`frankenstein run` writes one folder per recipe (the layout is the contract below); the report reads
nothing else, so it can be regenerated from the folder alone, on any machine, without the models.

    RUN/run.json                   recipe, models, cuts, layout (Layout.describe()), stages and their status
                                   (`analysis.schema.RunManifest`, which the runner validates before writing)
    RUN/delta/delta.json           analysis.delta.write_report output
    RUN/<stage>/<role or label>/   an lmms-eval --output_path: <model>/<timestamp>_results.json (+ samples)
    RUN/leaderboard/<label>/       an lm-eval --output_path: <model>/results_<timestamp>.json (+ samples)

A stage that is absent, or whose status is not "done", is "not run" for the report, never an error.
A file that exists but cannot be read is bad input: one line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pydantic import ValidationError

from analysis.delta.schema import ROLES as ROLE_ORDER  # roles a probe stage may hold, in reading order
from analysis.lmms_runs import LM_EVAL_RESULTS, Run, newest_run, read_json
from analysis.plots import LayerAxis
from analysis.schema import STAGE_NAMES, RunManifest, StageRecord
from surgery.errors import FrankensteinError

__all__ = ["RUN_FILE", "STAGES", "RunFolder", "RunManifest", "StageRecord", "open_runs", "read_run"]

RUN_FILE = "run.json"
STAGES = STAGE_NAMES  # the order `frankenstein run` runs them in, declared once in analysis.schema


@dataclass(eq=False)  # a run is itself: compared by identity
class RunFolder:
    path: Path
    manifest: RunManifest
    label: str  # what legends call this run: the recipe, made unique across the report
    color: str = "C0"
    _cache: dict[tuple[str, str], Run | None] = field(default_factory=dict, repr=False)

    @property
    def recipe(self) -> str:
        return self.manifest.recipe

    @cached_property
    def axis(self) -> LayerAxis:
        """The recipe's models' layer axis, from the layout stored in run.json (blocks from its cuts)."""
        try:
            return LayerAxis.from_description(self.manifest.layout)
        except FrankensteinError as e:
            raise FrankensteinError(f"{self.path / RUN_FILE}: {e}") from None

    def stage_missing(self, stage: str) -> str | None:
        """Why `stage` has nothing to show ("not run", "failed"), or None when it is done."""
        record = self.manifest.stages.get(stage)
        if record is None or record.status == "not run":
            return "not run"
        if record.status != "done":
            return f"not run (stage {record.status})"
        return None

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def members(self, stage: str, order: tuple[str, ...] = ROLE_ORDER) -> list[str]:
        """Sub-folders of a done stage (roles or variant labels): those of `order` first, then the rest sorted."""
        if self.stage_missing(stage) is not None or not self.stage_dir(stage).is_dir():
            return []
        found = {p.name for p in self.stage_dir(stage).iterdir() if p.is_dir() and not p.name.startswith(".")}
        return [m for m in order if m in found] + sorted(found - set(order))

    def lmms(self, stage: str, member: str) -> Run | None:
        """The newest lmms-eval results under RUN/stage/member, or None when the stage or file is absent."""
        key = (stage, member)
        if key not in self._cache:
            self._cache[key] = None if self.stage_missing(stage) else newest_run(self.stage_dir(stage) / member)
        return self._cache[key]

    def lm_eval(self, stage: str, member: str) -> Run | None:
        """The newest lm-eval results under RUN/stage/member, or None when the stage or file is absent."""
        if self.stage_missing(stage):
            return None
        return newest_run(self.stage_dir(stage) / member, LM_EVAL_RESULTS)


def read_run(path: str | Path) -> RunManifest:
    """run.json of a run folder, validated; a one-line error when the folder is not a run folder."""
    path = Path(path)
    if not path.exists():
        raise FrankensteinError(f"{path} is not a frankenstein run folder: it does not exist")
    if not path.is_dir():
        raise FrankensteinError(f"{path} is not a frankenstein run folder: not a folder")
    manifest = path / RUN_FILE
    if not manifest.is_file():
        raise FrankensteinError(f"{path} is not a frankenstein run folder: no {RUN_FILE}")
    data = read_json(manifest)
    try:
        return RunManifest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise FrankensteinError(f"{manifest}: {where}: {first['msg']} ({e.error_count()} problem(s))") from None


def open_runs(paths: list[str | Path]) -> list[RunFolder]:
    """Every run folder, validated, labelled by recipe (a folder name added where recipes repeat), one colour each."""
    if not paths:
        raise FrankensteinError("no run folder given")
    manifests = [(Path(p), read_run(p)) for p in paths]
    recipes = [m.recipe for _, m in manifests]
    runs = []
    for i, (path, manifest) in enumerate(manifests):
        label = manifest.recipe if recipes.count(manifest.recipe) == 1 else f"{manifest.recipe} ({path.name})"
        runs.append(RunFolder(path, manifest, label, color=f"C{i % 10}"))
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise FrankensteinError(f"run folders {', '.join(map(str, paths))} repeat a recipe and a folder name; rename one")
    for run in runs:
        _ = run.axis  # a bad layout is an error now, not halfway through the figures
    return runs

