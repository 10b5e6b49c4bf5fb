"""The report of one or more Frankenstein runs: one self-contained HTML file, a Markdown summary, and the
figures with the CSV of every number they draw, read only from the run folders' result files.

`write_report([RUN, ...], OUT)` reads each run folder (`runs`: run.json and the stages' result files,
the contract `frankenstein run` writes), builds the sections of `SECTIONS` in order (a table, so a new
analysis is one entry), and writes into OUT, all at once when complete:

    report.html            everything, images inlined (opens from disk, offline, no script)
    report.md              the key numbers as tables, figures referenced relatively
    figures/NAME.png       each figure, next to NAME.csv holding the numbers it draws

Several run folders (recipes) overlay in the same figures, one colour per run. A stage that did not
run is a "not run" line in its section, never an error; a file that exists but cannot be read is.

Modules, in the order the data flows:

  runs          a run folder: run.json validated, stage status, lmms-eval outputs (newest results file)
  shapes        curve / estimate / transitions values of a results file, typed
  drawing       colours, line styles, layout groups, figure + CSV saved together
  probe_curves  per-layer curves gathered over runs and roles, drawn as a metrics x tasks grid
  overview, weights, vision, reasoning, transfer, attention   one section builder each
  leaderboard   lm-eval scores of IN, RL and the splices, a part of the transfer section
  document      sections of figures, tables and notes; the Markdown and HTML renderers
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.report import attention, overview, reasoning, transfer, vision, weights
from analysis.report.document import Section, render_html, render_markdown
from analysis.report.runs import RunFolder, open_runs
from surgery.atomic import atomic_dir, write_text
from surgery.errors import FrankensteinError

SectionBuilder = Callable[[Sequence[RunFolder], Path], Section]

# Section key -> builder (run folders, figures folder) -> Section. Order is the report's order.
SECTIONS: dict[str, SectionBuilder] = {
    "overview": overview.build,
    "weights": weights.build,
    "vision": vision.build,
    "reasoning": reasoning.build,
    "transfer": transfer.build_metrics,
    "transitions": transfer.build_transitions,
    "attention": attention.build,
}
HTML_FILE, MARKDOWN_FILE, FIGURES = "report.html", "report.md", "figures"


@dataclass(frozen=True)
class ReportFiles:
    folder: Path
    html: Path
    markdown: Path
    figures: list[Path]  # PNGs
    data: list[Path]  # CSVs


def write_report(run_dirs: Sequence[str | Path], out: str | Path, *, progress: bool = True) -> ReportFiles:
    """Read the run folders and write the report folder `out` (replacing an earlier report there)."""
    from tqdm.auto import tqdm

    runs = open_runs(list(run_dirs))
    out = Path(out)
    _check_replaceable(out)
    with atomic_dir(out, overwrite=True) as tmp:
        folder = tmp / FIGURES
        folder.mkdir()
        sections = []
        bar = tqdm(SECTIONS.items(), desc="report", unit="section", disable=not progress, leave=False)
        for key, build in bar:
            bar.set_postfix_str(key)
            sections.append(build(runs, folder))
        title = "Frankenstein report: " + ", ".join(r.label for r in runs)
        preamble = (
            f"Read from the result files of {len(runs)} run folder(s): {', '.join(str(r.path) for r in runs)}. "
            "Each figure says what it shows; the numbers it draws are in the CSV named under it."
        )
        write_text(tmp / MARKDOWN_FILE, render_markdown(title, preamble, sections, tmp))
        write_text(tmp / HTML_FILE, render_html(title, preamble, sections, tmp))
    return ReportFiles(
        out, out / HTML_FILE, out / MARKDOWN_FILE, sorted((out / FIGURES).glob("*.png")), sorted((out / FIGURES).glob("*.csv"))
    )


def _check_replaceable(out: Path) -> None:
    """OUT may be new, empty, or an earlier report; anything else is not ours to replace."""
    if out.exists() and not out.is_dir():
        raise FrankensteinError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKDOWN_FILE).is_file():
        raise FrankensteinError(f"{out} exists and is not a frankenstein report (no {MARKDOWN_FILE}); choose another --out")


__all__ = ["SECTIONS", "ReportFiles", "write_report"]
