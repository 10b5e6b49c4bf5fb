"""Report section 0: what was run, on which models, with which blocks, and which stages finished."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from analysis.report.document import Note, Section, Table
from analysis.report.runs import STAGES, RunFolder
from surgery.arch import BLOCK_NAMES


def build(runs: Sequence[RunFolder], folder: Path) -> Section:
    section = Section("overview", "Runs and stages")
    models = Table(
        ["run", "folder", "Base", "IN", "RL", "decoder layers", "vision blocks", "blocks early / mid / late", "protocol"],
        [_model_row(r) for r in runs],
        caption="The models of each run, the decoder blocks every figure shades, and the protocol it ran: \"paper\" is the "
        "authors' (their prompts, budgets, formats; docs/METHOD.md section 6), \"project\" the project's own tasks.",
    )
    # The report's own stage order, then any stage a newer `frankenstein run` recorded that it does not know.
    named = [*STAGES, *sorted({s for r in runs for s in r.manifest.stages} - set(STAGES))]
    stages = Table(
        ["stage", *(r.label for r in runs)],
        [[stage, *(_stage_cell(r, stage) for r in runs)] for stage in named],
        caption="Stage status from run.json; a stage that is not done shows as \"not run\" in its section.",
    )
    return section.add(
        Note("Each run folder is one recipe; in every figure a run keeps one colour, named by its recipe in the legends."),
        models,
        stages,
    )


def _model_row(run: RunFolder) -> list[str]:
    layout, blocks = run.axis.layout, run.axis.blocks
    spans = " / ".join(f"{a}–{b - 1}" for a, b in (blocks[k] for k in BLOCK_NAMES))
    m = run.manifest.models
    protocol = ((run.manifest.model_extra or {}).get("config") or {}).get("protocol", "project")
    return [run.label, str(run.path), m.get("base", "–"), m.get("in", "–"), m.get("rl", "–"), str(layout.num_layers),
            str(layout.num_vision_blocks), spans, protocol]


def _stage_cell(run: RunFolder, stage: str) -> str:
    missing = run.stage_missing(stage)
    if missing:
        return missing
    seconds = run.manifest.stages[stage].seconds
    return "done" if seconds is None else f"done ({seconds:.0f} s)"
