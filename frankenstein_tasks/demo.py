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


def _stage_vision_swap(ctx: DemoContext) -> str:
    """The researcher's path: generated pairs, lmms-eval CLI, frankenstein model, per-layer curves."""
    import os
    import shutil
    import subprocess
    import sys

    from analysis.harness import read_curves, write_curves
    from analysis.plots import LayerAxis
    from frankenstein_tasks.vision.pairs import TASKS, write_pair_sets
    from surgery.arch import layout_of_checkpoint

    out = ctx.out / "vision_swap"
    pairs = write_pair_sets(TASKS, out / "pairs", n=3, seed=0, size=112, overwrite=True, progress=False)
    tasks_dir = Path(__file__).parent / "tasks"
    shutil.rmtree(out / "lmms_eval", ignore_errors=True)  # a previous demo's results would be read as this one's
    args = [
        sys.executable, "-m", "lmms_eval", "--model", "frankenstein",
        "--model_args", f"pretrained={ctx.models['rl']},device={ctx.device},probe=visual_swap,layers=all,max_new_tokens=8",
        "--tasks", "frank_vision", "--include_path", str(tasks_dir), "--output_path", str(out / "lmms_eval"), "--log_samples",
    ]
    env = {**os.environ, "FRANKENSTEIN_VISION_DATA": str(next(iter(pairs.values())).parent)}
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    results = list((out / "lmms_eval").rglob("*_results.json"))
    if done.returncode != 0 or not results:  # lmms-eval 0.7.3 exits 0 on failures: look for the file
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError("lmms_eval swap run failed: " + " | ".join(tail))
    axis = LayerAxis.from_layout(layout_of_checkpoint(str(ctx.models["rl"])))
    written = write_curves(results[0], out, axis)
    change = [c for c in read_curves(results[0]) if c.metric == "change_rate"]
    mean = [sum(c.value[i] for c in change) / len(change) for i in range(len(change[0].layers))]
    return (
        f"lmms_eval frank_vision, probe=visual_swap on RL: change-rate curves over {len(mean)} layers for "
        f"{len(change)} tasks (mean {' '.join(f'{v:.2f}' for v in mean)}); {written['change_rate']}"
    )


def _probe_runner(ctx: DemoContext, role: str, probe: str):
    from surgery.loading import load_model, load_processor
    from surgery.probes import ProbeConfig, ProbeRunner

    model, layout = load_model(str(ctx.models[role]), dtype="float32", device=ctx.device)
    return ProbeRunner(model, layout, load_processor(str(ctx.models[role])), ProbeConfig(probe=probe, default_max_new_tokens=8))


def _stage_attention(ctx: DemoContext) -> str:
    """METHOD.md 5: attention of generated tokens on the image, per layer, IN vs RL."""
    from analysis.plots import LayerAxis, plot_layer_curves, pyplot, save_figure
    from frankenstein_tasks.vision.pairs import draw_pair
    from surgery.probes import ProbeRequest

    requests = []
    for i in range(4):
        pair = draw_pair("counting", i, seed=0, size=112)
        requests.append(ProbeRequest(text=pair.prompt, images=[pair.target]))
    curves = {}
    for role in ("in", "rl"):
        runner = _probe_runner(ctx, role, "attention")
        results = runner.run(requests)
        layers = results[0].layers
        curves[role.upper()] = [sum(r.values[j] for r in results) / len(results) for j in range(len(layers))]
    axis = LayerAxis.from_layout(runner.layout).decoder_only()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    plot_layer_curves(ax, axis, [axis.decoder_layer(layer) for layer in layers], curves, ylabel="attention mass on image",
                      title="attention of generated tokens on visual tokens")
    path = save_figure(fig, ctx.out / "attention" / "attention_in_vs_rl.png")
    shift = [r - i for r, i in zip(curves["RL"], curves["IN"])]
    top = max(range(len(shift)), key=lambda j: abs(shift[j]))
    return (
        f"mean visual attention IN {sum(curves['IN']) / len(layers):.3f} vs RL {sum(curves['RL']) / len(layers):.3f}; "
        f"largest RL-IN shift {shift[top]:+.3f} at layer {layers[top]}; {path}"
    )


def _stage_ablation(ctx: DemoContext) -> str:
    """METHOD.md 1b on the engine: how often zero-ablating each layer changes the answer."""
    from frankenstein_tasks.contract import ProbeResult, changed_by_layer
    from surgery.probes import ProbeRequest

    instruction = 'Please solve the problem step by step and put your answer in one "\\boxed{}".\n\n'
    problems = ["What is 17 + 25?", "A box holds 6 eggs. How many eggs are in 7 boxes?", "Solve for x: 2x + 3 = 11."]
    runner = _probe_runner(ctx, "rl", "zero_ablation")
    outputs = runner.run([ProbeRequest(text=instruction + p) for p in problems])
    results = [changed_by_layer(ProbeResult.from_output(o)) for o in outputs]
    layers = outputs[0].layers
    changed = [sum(r[layer] for r in results) / len(results) for layer in layers]
    return "zero ablation on RL, share of answers changed per layer: " + " ".join(
        f"L{layer}={c:.2f}" for layer, c in zip(layers, changed)
    )


STAGES: list[Stage] = [
    Stage("tiny-models", "build the offline tiny Base / IN / RL trio", _stage_tiny),
    Stage("layout", "read the architecture facts through the adapter", _stage_layout),
    Stage("delta", "weight-delta energy and SVD across Base -> IN -> RL", _stage_delta),
    Stage("merge", "Frankenstein recipes: mergekit-yaml vs the in-memory splice", _stage_merge),
    Stage("vision-swap", "visual-token swap per layer on frank_vision, through lmms_eval", _stage_vision_swap),
    Stage("attention", "attention of generated tokens on the image per layer, IN vs RL", _stage_attention),
    Stage("ablation", "zero ablation per layer, batched over items x layers", _stage_ablation),
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
