"""`frankenstein demo`: every landed stage of the pipeline, on embedded tiny models.

The demo is a list of stages (`STAGES`); each stage does real work on the tiny trio and returns a
one-line summary of what it found. A stage is listed only once its feature exists, and the demo
reports exactly the stages it ran: a failure stops the demo with a non-zero exit.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from surgery.atomic import write_json


@dataclass
class DemoContext:
    out: Path
    device: str = "cpu"
    models: dict[str, Path] = field(default_factory=dict)  # role -> checkpoint folder
    notes: dict[str, Any] = field(default_factory=dict)  # what stages pass to later stages


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[DemoContext], str]


def _stage_tiny(ctx: DemoContext) -> str:
    from surgery.tiny import TinySpec, make_tiny

    spec = TinySpec(layers=8, vision_depth=2, seed=0, plant=("mid", "late"))
    ctx.models = make_tiny(ctx.out / "models", spec, overwrite=True)
    ctx.notes["tiny_spec"] = spec
    return f"Base/IN/RL trio in {ctx.out / 'models'} ({spec.layers} layers, RL deltas planted in mid, late)"


def _stage_layout(ctx: DemoContext) -> str:
    from surgery.arch import layout_of_checkpoint

    layout = layout_of_checkpoint(str(ctx.models["rl"]))
    ctx.notes["layout"] = layout.describe()
    sizes = "/".join(str(s) for s in layout.partition().sizes)
    return (
        f"{layout.model_type}: {layout.num_layers} decoder layers (blocks {sizes}), "
        f"{layout.num_vision_blocks} vision blocks, unified index {layout.unified_range.start}..{layout.unified_range.stop - 1}"
    )


def _stage_delta(ctx: DemoContext) -> str:
    from analysis.delta import analyze_deltas

    m = ctx.models
    report = analyze_deltas(m["base"], m["in"], m["rl"], ctx.out / "delta", device=ctx.device, overwrite=True, progress=False)
    blocks = report.summary("block")
    top, *rest = report.block_ranking["rl"]
    others = ", ".join(f"{b} {blocks[b].deltas['rl'].relative_norm:.3f}" for b in rest)
    return (
        f"{len(report.tensors)} matrices: largest dRL change in the {top} block (relative norm "
        f"{blocks[top].deltas['rl'].relative_norm:.3f}; {others}); plots in {ctx.out / 'delta'}"
    )


def _stage_merge(ctx: DemoContext) -> str:
    from merge_configs.generate import generate
    from merge_configs.mergekit_run import run_mergekit
    from surgery.atomic import write_text
    from surgery.splice import VARIANTS, checkpoint_differences, load_spliced

    out = ctx.out / "merge"
    generated = generate(ctx.models["in"], ctx.models["rl"], list(VARIANTS))
    for variant, text in generated.texts.items():
        write_text(out / "recipes" / f"{variant}.yaml", text)
    variant = "mid_late"
    merged = out / variant
    run_mergekit(generated.texts[variant], merged, early_model=generated.early_models[variant], overwrite=True, quiet=True)
    model, layout, _ = load_spliced(ctx.models["in"], ctx.models["rl"], variant, device=ctx.device)
    differences = checkpoint_differences(model, layout, merged)
    if differences:
        raise RuntimeError(f"mergekit {variant} differs from the in-memory splice: {differences[0]}")
    n_tensors = len(model.state_dict())
    return (
        f"6 mergekit recipes in {out / 'recipes'}; mergekit-yaml {variant} == in-memory splice "
        f"({n_tensors} tensors identical; {model.frankenstein_splice.describe()})"
    )


STAGES: list[Stage] = [
    Stage("tiny-models", "build the offline tiny Base / IN / RL trio", _stage_tiny),
    Stage("layout", "read the architecture facts through the adapter", _stage_layout),
    Stage("delta", "weight-delta energy and SVD across Base -> IN -> RL", _stage_delta),
    Stage("merge", "Frankenstein recipes: mergekit-yaml vs the in-memory splice", _stage_merge),
]


def run_demo(out: Path, *, device: str = "cpu", only: list[str] | None = None, echo: Callable[[str], None] = print) -> dict:
    """Run the stages in order; returns the summary also written to OUT/demo.json."""
    ctx = DemoContext(out=Path(out), device=device)
    ctx.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(ctx.out), "stages": []}
    for i, stage in enumerate(STAGES, 1):
        if only and stage.name not in only and stage.name not in ("tiny-models",):
            continue
        echo(f"[{i}/{len(STAGES)}] {stage.name}: {stage.description} ...")
        start = time.perf_counter()
        result = stage.run(ctx)
        seconds = time.perf_counter() - start
        echo(f"      done in {seconds:.1f}s: {result}")
        summary["stages"].append({"name": stage.name, "result": result, "seconds": round(seconds, 2)})
    write_json(ctx.out / "demo.json", json.loads(json.dumps(summary, default=str)))
    return summary
