"""Plots over the unified layer index (matplotlib, Agg backend), reusable by every analysis.

The building blocks are `LayerAxis` (what the x axis of a whole-model plot spans: vision blocks,
projector, decoder layers, and the early / mid / late cuts), `shade_sections` (the vision /
projector / LLM ranges shaded, block cuts marked) and `plot_layer_curves` (one line per series over
unified layers). The weight-delta figures below are built from them; per-layer curves of probe
results can use them the same way. Figures are saved atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from surgery.arch import Layout, Part, layout_from_description
from surgery.errors import FrankensteinError

SECTION_COLORS = {"vision": "#dbe9f6", "projector": "#fde4c8", "llm": "#e3f1df"}
SERIES_COLORS = {"dIN": "#1f77b4", "dRL": "#d62728"}


@dataclass(frozen=True)
class LayerAxis:
    """The x axis of a whole-model plot: a model's `Layout` (which owns the unified layer index) and block cuts.

    Positions come from `Layout.unified_index`; this class only turns them into plot extents.
    """

    layout: Layout
    cuts: tuple[int, int] | None = None  # None: thirds
    decoder_layers_only: bool = False

    @classmethod
    def from_layout(cls, layout: Layout, cuts: Sequence[int] | None = None) -> "LayerAxis":
        return cls(layout, (int(cuts[0]), int(cuts[1])) if cuts else None)

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> "LayerAxis":
        """From `Layout.describe(cuts)` as stored in result files: the layout, and the cuts its blocks show."""
        layout = layout_from_description(described)
        try:
            blocks = {name: (int(v[0]), int(v[1])) for name, v in described["blocks"].items()}
            cuts = (blocks["mid"][0], blocks["late"][0])  # early [0, c1), mid [c1, c2), late [c2, n)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise FrankensteinError(f"layout description has no valid blocks ({type(e).__name__} {e})") from None
        axis = cls(layout, cuts)
        if axis.blocks != blocks:
            raise FrankensteinError(f"layout description's blocks {blocks} are not a partition of {layout.num_layers} layers")
        return axis

    def decoder_only(self) -> "LayerAxis":
        """The same axis restricted to the decoder layers (for curves that live there only, e.g. probes)."""
        return replace(self, decoder_layers_only=True)

    def decoder_layer(self, i: int) -> int:
        """Unified index of decoder layer i."""
        return self.layout.unified_index(Part.DECODER_LAYER, i)  # type: ignore[return-value]

    @property
    def decoder_layer_positions(self) -> list[int]:
        """Unified index of every decoder layer, in layer order."""
        return [self.decoder_layer(i) for i in range(self.layout.num_layers)]

    @property
    def blocks(self) -> dict[str, tuple[int, int]]:
        """Block -> decoder layers [start, stop)."""
        return {k: (r.start, r.stop) for k, r in self.layout.partition(self.cuts).ranges.items()}

    @property
    def sections(self) -> dict[str, tuple[float, float]]:
        """Unified-index extent of each section shown (half-integer edges around its first and last member)."""
        layout = self.layout
        members: dict[str, tuple[int, int]] = {}
        if layout.has_vision and not self.decoder_layers_only:
            members["vision"] = (
                layout.unified_index(Part.VISION_BLOCK, 0),
                layout.unified_index(Part.VISION_BLOCK, layout.num_vision_blocks - 1),
            )  # type: ignore[assignment]
            projector = layout.unified_index(Part.PROJECTOR)
            members["projector"] = (projector, projector)  # type: ignore[assignment]
        members["llm"] = (self.decoder_layer(0), self.decoder_layer(layout.num_layers - 1))
        return {name: (lo - 0.5, hi + 0.5) for name, (lo, hi) in members.items()}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shade_sections(ax: Any, axis: LayerAxis, *, blocks: bool = True) -> None:
    """Shade the vision / projector / LLM ranges; dotted lines and names for the decoder blocks."""
    for name, (lo, hi) in axis.sections.items():
        ax.axvspan(lo, hi, color=SECTION_COLORS[name], alpha=0.6, lw=0, zorder=0)
        ax.text(
            (lo + hi) / 2,
            1.0,
            name.upper() if name == "llm" else name,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.35",
        )
    if blocks:
        for name, (start, stop) in axis.blocks.items():
            first, last = axis.decoder_layer(start), axis.decoder_layer(stop - 1)
            if start > 0:
                ax.axvline(first - 0.5, color="0.5", ls=":", lw=1, zorder=1)
            ax.text(
                (first + last) / 2,
                0.02,
                name,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                color="0.4",
            )
    lo = min(v[0] for v in axis.sections.values())
    hi = max(v[1] for v in axis.sections.values())
    ax.set_xlim(lo, hi)


def plot_layer_curves(
    ax: Any,
    axis: LayerAxis,
    x: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str,
    log: bool = False,
    title: str | None = None,
) -> None:
    """One line per series over unified layer indices `x`, on the shaded section background."""
    shade_sections(ax, axis)
    for i, (label, values) in enumerate(series.items()):
        pts = [(xi, v) for xi, v in zip(x, values) if v is not None and (not log or v > 0)]
        if not pts:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.4, label=label, color=SERIES_COLORS.get(label, f"C{i}"), zorder=3)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_xlabel("unified layer index (vision block j - V, projector 0, decoder layer i + 1)")
    if title:
        ax.set_title(title, fontsize=10, pad=14)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save as PNG atomically and close the figure."""
    from surgery.atomic import atomic_path

    plt = pyplot()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Weight-delta figures
# ---------------------------------------------------------------------------------------------


def delta_energy_figure(
    axis: LayerAxis,
    x: Sequence[int],
    energy: Mapping[str, Sequence[float]],
    relative: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Energy ||delta||_F^2 and relative norm per unified layer, dIN vs dRL."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    plot_layer_curves(
        axes[0],
        axis,
        x,
        energy,
        ylabel="energy  ||Δ||²_F (sum over the layer)",
        log=True,
        title=title or "Weight-delta energy per layer",
    )
    plot_layer_curves(axes[1], axis, x, relative, ylabel="relative norm  ||Δ||_F / ||W||_F", log=True)
    axes[0].set_xlabel("")
    fig.tight_layout()
    return save_figure(fig, path)


def delta_rank_figure(
    axis: LayerAxis,
    x: Sequence[int],
    stable: Mapping[str, Sequence[float | None]],
    effective: Mapping[str, Sequence[float | None]],
    path: str | Path,
) -> Path:
    """Mean stable rank and mean effective rank of the layer's matrices, dIN vs dRL."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    plot_layer_curves(
        axes[0],
        axis,
        x,
        stable,
        ylabel="stable rank  ||Δ||²_F / σ1²  (mean)",
        title="Rank of the weight deltas per layer",
    )
    plot_layer_curves(axes[1], axis, x, effective, ylabel="effective rank  exp H(σ/Σσ)  (mean)")
    axes[0].set_xlabel("")
    fig.tight_layout()
    return save_figure(fig, path)


def delta_spectra_figure(
    panels: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path, layer_names: Mapping[str, str]
) -> Path:
    """Normalised spectra σ_i/σ_1 against i/rank, one column per representative layer, rows dIN / dRL.

    `panels[column][matrix label][delta]` is a 1-D array of singular values (descending).
    """
    plt = pyplot()
    columns = list(panels)
    fig, axes = plt.subplots(2, len(columns), figsize=(4.2 * len(columns), 7), squeeze=False, sharey=True)
    for col, key in enumerate(columns):
        for row, delta in enumerate(("in", "rl")):
            ax = axes[row][col]
            for i, (label, sig) in enumerate(sorted(panels[key].items())):
                s = [float(v) for v in sig[delta] if float(v) > 0]
                if not s:
                    continue
                n = len(sig[delta])
                ax.plot([(j + 1) / n for j in range(len(s))], [v / s[0] for v in s], lw=1.2, label=label, color=f"C{i}")
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.set_title(f"d{delta.upper()}  {layer_names.get(key, key)}", fontsize=10)
            if row == 1:
                ax.set_xlabel("i / min(m, n)")
            if col == 0:
                ax.set_ylabel("σ_i / σ_1")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.suptitle("Normalised singular-value spectra of representative layers", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    return save_figure(fig, path)
