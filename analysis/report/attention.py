"""Report section: where generated tokens look (METHOD.md 5), the attention shift RL − IN per decoder layer.

The attention stage measures, per layer, the attention mass generated tokens put on the visual tokens,
once for IN and once for RL on the same items. The shift is RL − IN per layer. Its 95 % interval is the
paired percentile bootstrap over items of `analysis.attention_shift` (the same one `frankenstein
transfer` uses) whenever both runs' samples logs hold per-item curves; otherwise (a results file
without its samples log) it falls back to the two standard errors combined as if independent,
sqrt(se_IN² + se_RL²) · 1.96, which is wider. The CSV's `interval` column says which one each row has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.attention_shift import AttentionShift, shift_from_samples
from analysis.harness import Curve
from analysis.lmms_runs import Run
from analysis.report.document import Note, Section, Table, fmt
from analysis.report.drawing import (
    ROLE_STYLE,
    decoder_xlabel,
    draw_curve,
    figure_legend,
    group_note,
    group_suffix,
    layer_panel,
    layout_groups,
    save_with_data,
    subplots,
)
from analysis.report.probe_curves import RoleCurves, gather
from analysis.report.runs import RunFolder
from surgery.errors import FrankensteinError

STAGE = "attention"
METRIC = "visual_attention"
Z95 = 1.959963984540054  # two-sided 95 % normal quantile
CAPTION = (
    "Whether RL makes generated tokens look at the image more: top, the attention mass on visual tokens per decoder "
    "layer for IN (dashed) and RL (solid), ±1 standard error; bottom, RL − IN with a 95 % band (a paired bootstrap over "
    "the items both runs answered; the CSV's interval column says where it had to fall back to the two standard errors "
    "combined); above zero means RL attends more to the image at that layer."
)
PAIRED, UNPAIRED = "paired bootstrap", "unpaired (stderrs combined)"
HEADER = [
    "run", "recipe", "task", "layer", "unified_index", "in_value", "in_stderr", "rl_value", "rl_stderr",
    "difference", "difference_low", "difference_high", "interval", "n_in", "n_rl", "n_paired",
]


def build(runs: Sequence[RunFolder], folder: Path) -> Section:
    section = Section("attention", "Attention shift RL − IN per layer")
    sets, notes = gather(runs, STAGE, [METRIC])
    section.add(*notes)
    pairs = {}
    for run in runs:
        mine = {s.role: s for s in sets if s.run is run}
        if mine and not {"in", "rl"} <= mine.keys():
            section.add(Note(f"{run.label}: {STAGE} has only {', '.join(sorted(mine))}; the shift needs both IN and RL."))
        elif mine:
            pairs[run] = (mine["in"], mine["rl"])
    if not pairs:
        return section
    groups = layout_groups(list(pairs))
    rows_all = []
    for i, group in enumerate(groups):
        rows = [row for run in group for row in shift_rows(*pairs[run])]
        rows_all += rows
        fig = _figure(group, pairs, rows)
        section.add(save_with_data(fig, folder, "attention_shift" + group_suffix(groups, i), CAPTION + group_note(groups, group), HEADER, rows))
    return section.add(_table(rows_all))


def shift_rows(in_: RoleCurves, rl: RoleCurves) -> list[list[Any]]:
    """One row per task and decoder layer both roles measured: both curves, their difference and its interval."""
    run, rows = in_.run, []
    for (metric, task), rl_curve in sorted(rl.curves.items()):
        in_curve: Curve | None = in_.curves.get((metric, task))
        if in_curve is None:
            continue
        paired = paired_shift(in_.lmms, rl.lmms, task)
        at_paired = {layer: est for layer, est in zip(paired.layers, paired.shift)} if paired else {}
        at_in = {layer: (v, s) for layer, v, s in zip(in_curve.layers, in_curve.value, in_curve.stderr)}
        for layer, v_rl, s_rl in zip(rl_curve.layers, rl_curve.value, rl_curve.stderr):
            if layer not in at_in:
                continue
            v_in, s_in = at_in[layer]
            if layer in at_paired:
                est = at_paired[layer]
                diff, low, high, how, n_paired = est.value, est.low, est.high, PAIRED, paired.n
            else:
                diff, half = v_rl - v_in, Z95 * math.hypot(s_in, s_rl)
                low, high, how, n_paired = diff - half, diff + half, UNPAIRED, None
            rows.append([run.label, run.recipe, task, layer, run.axis.decoder_layer(layer), v_in, s_in, v_rl, s_rl, diff, low, high, how, in_curve.n, rl_curve.n, n_paired])
    return rows


def paired_shift(in_run: Run, rl_run: Run, task: str) -> AttentionShift | None:
    """The paired RL − IN shift from both runs' samples logs, or None where they do not hold per-item curves."""
    if not (in_run.has_samples(task) and rl_run.has_samples(task)):
        return None
    samples_in, samples_rl = in_run.samples(task), rl_run.samples(task)  # an unreadable log is an error
    try:
        return shift_from_samples(samples_in, samples_rl)
    except FrankensteinError:  # no item or layer with a curve in both logs: the unpaired interval stands
        return None


def _figure(group: Sequence[RunFolder], pairs: dict, rows: Sequence[Sequence[Any]]) -> Any:
    axis = group[0].axis.decoder_only()
    fig, axes = subplots(2, 1, width=10, height=3.2, sharex=True)
    top, bottom = axes[0, 0], axes[1, 0]
    layer_panel(top, axis, ylabel="attention on visual tokens")
    layer_panel(bottom, axis, ylabel="RL − IN")
    multi_task = len({r[2] for r in rows}) > 1
    for run in group:
        for s in pairs[run]:
            for (_, task), c in sorted(s.curves.items()):
                x = [axis.decoder_layer(layer) for layer in c.layers]
                label = f"{s.name}" + (f" {task}" if multi_task else "")
                draw_curve(top, x, c.value, c.stderr, color=run.color, style=ROLE_STYLE[s.role], label=label)
        for task in sorted({r[2] for r in rows if r[0] == run.label}):
            mine = [r for r in rows if r[0] == run.label and r[2] == task]
            x = [r[4] for r in mine]
            draw_curve(bottom, x, [r[9] for r in mine], None, color=run.color, label=f"{run.label} RL − IN")
            bottom.fill_between(x, [r[10] for r in mine], [r[11] for r in mine], color=run.color, alpha=0.15, lw=0, zorder=2)
    bottom.axhline(0, color="0.3", lw=0.8, zorder=2)
    decoder_xlabel(bottom)
    figure_legend(fig, [top, bottom])
    return fig


def _table(rows: Sequence[Sequence[Any]]) -> Table:
    header = ["run", "task", "mean shift (all layers)", "largest shift", "at decoder layer", "decoder layers with interval above 0", "interval"]
    out = []
    for key in dict.fromkeys((r[0], r[2]) for r in rows):
        mine = [r for r in rows if (r[0], r[2]) == key]
        top = max(mine, key=lambda r: r[9])
        above = [str(r[3]) for r in mine if r[10] > 0]
        kinds = ", ".join(dict.fromkeys(f"{r[12]}, n={r[15]}" if r[12] == PAIRED else r[12] for r in mine))
        out.append([key[0], key[1], fmt(sum(r[9] for r in mine) / len(mine)), fmt(top[9]), str(top[3]), ", ".join(above) or "none", kinds])
    return Table(header, out, caption="RL − IN attention mass on visual tokens, summarised per task.")
