"""The organism's probe figures: every known answer of the method, measured on one trained trio.

`probe_report(trio, out)` runs the probes on held-out items and writes `out/probes.json` and PNG
figures (visual-token swap on counting, zero ablation on word problems, RL gain and splices, the
RL reward curve, the weight deltas per layer). docs/organism.md quotes its numbers; the demo can
show the figures.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from .measure import ablation_curve, splice_scores, swap_curves
from .pipeline import organism_info

FRESH_PAIR_SEED = 424242  # a pair-generator seed no organism split uses


def probe_report(trio: dict[str, Path], out: str | os.PathLike, *, n: int = 100, progress: bool = True) -> dict[str, Any]:
    """Measure every probe on the trio (n items each) and write probes.json and the figures to `out`."""
    import tempfile

    from analysis.delta import analyze_deltas
    from frankenstein_tasks.vision.pairs import write_pairs
    from surgery.atomic import write_json

    from .evalsets import eval_items

    out = Path(out)
    info = organism_info(trio)
    size, seed = info["settings"]["image_size"], info["settings"]["seed"]
    work = Path(tempfile.mkdtemp(prefix="organism-probes-"))  # the fresh pairs and the delta report
    pairs = write_pairs("counting", work / "fresh_counting_pairs", n=n, seed=FRESH_PAIR_SEED, size=size, progress=False)
    sets = eval_items(n, seed, size)
    report: dict[str, Any] = {"accuracy": info["accuracy"], "seconds": info["seconds"]}
    report["swap"] = {role: swap_curves(trio[role], pairs) for role in ("base", "in", "rl")}
    report["ablation"] = {role: ablation_curve(trio[role], sets["gsm8k"]) for role in ("base", "in", "rl")}
    report["splice"] = splice_scores(trio["in"], trio["rl"], sets["math_vqa"])
    deltas = analyze_deltas(trio["base"], trio["in"], trio["rl"], work / "delta", metrics="energy",
                            plots=False, progress=progress)
    shutil.rmtree(work, ignore_errors=True)
    layers = deltas.summary("unified_layer")
    report["delta"] = {
        "block_ranking": deltas.block_ranking,
        "relative_norm_by_unified_layer": {
            d: {str(k): layers[k].deltas[d].relative_norm for k in sorted(layers)} for d in ("in", "rl")
        },
        "relative_norm_by_block": {b: s.deltas["rl"].relative_norm for b, s in deltas.summary("block").items()},
    }
    report["rl_rewards"] = info["training"]["rl"]["rewards"]
    write_json(out / "probes.json", report)
    _figures(report, out)
    return report


def _figures(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"base": "tab:blue", "in": "tab:orange", "rl": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for role, color in colors.items():
        sw = report["swap"][role]
        axes[0].plot(sw["layers"], sw["change_rate"], "-o", color=color, label=f"{role.upper()} change rate")
        axes[0].plot(sw["layers"], sw["source_adoption"], ":x", color=color,
                     label=f"{role.upper()} source adoption (source acc. {sw['source_accuracy']:.0%})")
    axes[0].set(xlabel="swap from decoder layer L", ylabel="rate", title="Visual-token swap, counting", ylim=(-0.05, 1.05))
    axes[0].legend(fontsize=7)
    for role, color in colors.items():
        ab = report["ablation"][role]
        axes[1].plot(ab["layers"], ab["accuracy"], "-o", color=color, label=f"{role.upper()} (baseline {ab['baseline_accuracy']:.0%})")
    axes[1].set(xlabel="zero-ablated decoder layer", ylabel="accuracy", title="Zero ablation, word problems", ylim=(-0.05, 1.05))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "probes.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(report["splice"])
    axes[0].bar(names, [report["splice"][k] for k in names], color=["grey", "black"] + ["tab:blue"] * (len(names) - 2))
    axes[0].set(ylabel="accuracy", title="Count-then-compute: IN, RL and RL blocks spliced into IN", ylim=(0, 1))
    axes[0].tick_params(axis="x", rotation=45)
    rewards = report["rl_rewards"]
    window = max(1, len(rewards) // 20)
    smooth = [sum(rewards[max(0, i - window + 1) : i + 1]) / len(rewards[max(0, i - window + 1) : i + 1]) for i in range(len(rewards))]
    axes[1].plot(rewards, alpha=0.3, label="per step")
    axes[1].plot(smooth, label=f"mean of {window}")
    axes[1].set(xlabel="RL step", ylabel="mean reward", title="RL training reward", ylim=(0, 1))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "rl.png", dpi=120)
    plt.close(fig)
