"""Fake run folders for the report tests: the files `frankenstein run` writes, with chosen numbers.

`make_run(root, ...)` writes run.json, delta/delta.json and lmms-eval output folders (results JSON in
the exact shapes the frank_* tasks produce, built with the same `analysis.schema` models, plus a
samples log) and lm-eval ones (the leaderboard stage) for the stages asked for, and returns
a `FakeRun` holding every number it wrote, so tests compare the report's CSVs with the sources.
Numbers come from a seeded generator, rounded so that they survive JSON and CSV unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.delta.schema import AuthorsLayer, AuthorsLayerStats, DeltaReport, GroupStats, GroupSummary
from analysis.schema import (
    STAGE_NAMES,
    IntervalEstimate,
    LayerCurve,
    OutcomeRecord,
    RunManifest,
    TransitionCounts,
)
from surgery.arch import Layout, facts_for

ALL_STAGES = STAGE_NAMES
VISION_TASKS = ("frank_vision_counting", "frank_vision_ocr", "frank_vision_grounding", "frank_vision_recognition")
REASONING_TASKS = ("frank_gsm8k", "frank_math500")
TRANSFER_LABELS = ("in", "rl", "early", "mid", "late", "early_mid", "mid_late", "early_late")
TRANSFER_TASKS = {  # task -> estimate metrics it reports; two-condition tasks also report transitions
    "frank_general_vqa": ("m_vis", "accuracy_a", "accuracy_b"),
    "frank_math_vqa": ("m_v2r", "accuracy_a", "accuracy_b"),
    "frank_math500_rea": ("m_rea", "accuracy_a"),
}
TWO_CONDITION = ("frank_general_vqa", "frank_math_vqa")
NEW_STAMP, OLD_STAMP = "20260301_120000", "20260101_090000"


@dataclass
class FakeRun:
    path: Path
    recipe: str
    layers: int
    vision_blocks: int
    # unified index -> delta ("in"/"rl") -> {energy, relative_norm, mean_stable_rank, mean_effective_rank}
    delta: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    # unified index -> delta -> the authors' aggregates (AuthorsLayerStats fields)
    authors: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    # stage -> role -> task -> metric -> {"layers", "value", "stderr", "n"} (curves) or {"value", "stderr", "n"} (scalars)
    curves: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    # label -> task -> metric -> {"value", "low", "high", "n"}; and label -> task -> transitions dict
    estimates: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    transitions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # attention stage: role -> task -> item id -> per-layer mass, as its samples log holds them
    # (None: the samples log holds no per-item curves, so the report must fall back to unpaired intervals)
    attention_items: dict[str, dict[str, dict[str, list[float]]]] | None = None
    # leaderboard stage (lm-eval results): label -> task -> metric -> (value, stderr)
    leaderboard: dict[str, dict[str, dict[str, tuple[float, float]]]] = field(default_factory=dict)


def layout_description(layers: int, vision_blocks: int, cuts: tuple[int, int] | None) -> dict[str, Any]:
    return Layout(facts_for("qwen2_5_vl"), layers, vision_blocks, "hf4").describe(cuts)


def make_run(
    root: Path,
    *,
    recipe: str = "OpenMMReasoner",
    layers: int = 8,
    vision_blocks: int = 2,
    cuts: tuple[int, int] | None = (2, 5),
    stages: tuple[str, ...] = ALL_STAGES,
    status: dict[str, str] | None = None,
    seed: int = 0,
    old_results: bool = True,
    attention_items: bool = True,
) -> FakeRun:
    """A run folder under `root` with the given stages done (others "not run"; `status` overrides).

    With `attention_items` the attention stage's samples logs hold per-item curves (RL's lacks IN's
    last two items, so a paired interval is over fewer items than either curve), and its curves are
    those items' means; without, its logs hold no curves, as a results file copied without them.
    """
    rng = np.random.RandomState(seed)
    root.mkdir(parents=True, exist_ok=True)
    fake = FakeRun(root, recipe, layers, vision_blocks)
    describe = layout_description(layers, vision_blocks, cuts)
    writers = {
        "delta": lambda: _write_delta(fake, describe, rng),
        "vision_swap": lambda: _write_curves(fake, "vision_swap", ("rl", "in"), VISION_TASKS, ("change_rate", "source_adoption_rate"), "accuracy", rng, old_results),
        "reasoning": lambda: _write_curves(fake, "reasoning", ("in", "rl"), REASONING_TASKS, ("accuracy_by_layer", "accuracy_drop"), "accuracy", rng, old_results),
        "reasoning_logprob": lambda: _write_curves(fake, "reasoning_logprob", ("in", "rl"), REASONING_TASKS, ("answer_logprob_drop", "answer_logprob_per_token_drop"), "answer_logprob", rng, old_results),
        "attention": lambda: (_write_attention if attention_items else _write_curves)(fake, "attention", ("in", "rl"), ("frank_attention_shift",), ("visual_attention",), None, rng, old_results),
        "transfer": lambda: _write_transfer(fake, rng),
        "leaderboard": lambda: _write_leaderboard(fake, rng),
    }
    for stage in stages:
        if stage in writers:
            writers[stage]()
    states = {s: ("done" if s in stages else "not run") for s in ALL_STAGES} | (status or {})
    manifest = RunManifest(
        recipe=recipe,
        models={"base": "Qwen/Qwen2.5-VL-7B-Instruct", "in": f"{recipe}/ColdStart", "rl": f"{recipe}/RL"},
        cuts=cuts,
        layout=describe,
        stages={s: {"status": st, "seconds": 12.5 if st == "done" else None, "outputs": [s] if st == "done" else []} for s, st in states.items()},
    )
    (root / "run.json").write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
    return fake


def _r(x: float) -> float:
    return float(round(float(x), 4))


def _write_delta(fake: FakeRun, describe: dict[str, Any], rng: np.random.RandomState) -> None:
    layout = Layout(facts_for("qwen2_5_vl"), fake.layers, fake.vision_blocks, "hf4")
    summaries = []
    for u in layout.unified_range:
        stats = {}
        for d in ("in", "rl"):
            values = {
                "energy": _r(rng.uniform(0.01, 5.0)),
                "relative_norm": _r(rng.uniform(0.001, 0.05)),
                "mean_stable_rank": _r(rng.uniform(1, 20)),
                "mean_effective_rank": _r(rng.uniform(5, 60)),
            }
            fake.delta.setdefault(u, {})[d] = values
            stats[d] = GroupStats(reference_energy=100.0, energy_share=0.01, energy_per_param=1e-6, max_spectral_norm=1.0, **values)
        summaries.append(GroupSummary(key=u, n_tensors=6, numel=1000, deltas=stats))

    def group(keys: tuple[str, ...]) -> list[GroupSummary]:
        return [
            GroupSummary(key=k, n_tensors=10, numel=5000, deltas={d: GroupStats(energy=1.0, reference_energy=100.0, relative_norm=0.1, energy_share=_r(rng.uniform(0, 1)), energy_per_param=1e-4) for d in ("in", "rl")})
            for k in keys
        ]

    authors_rng = np.random.RandomState(7)  # its own stream: the project's fake numbers stay as they were
    authors = []
    for u in layout.unified_range:
        for d in ("in", "rl"):
            fake.authors.setdefault(u, {})[d] = {
                "fro_norm_mean": _r(authors_rng.uniform(0.01, 1)), "fro_norm_sum": _r(authors_rng.uniform(1, 10)),
                "relative_norm_mean": _r(authors_rng.uniform(0.001, 0.05)), "spectral_norm_mean": _r(authors_rng.uniform(0.01, 1)),
                "log_volume_mean": _r(authors_rng.uniform(-300, -100)),
            }
        authors.append(AuthorsLayer(key=u, section="llm" if u > 0 else "projector" if u == 0 else "vision", n_tensors=7,
                                    n_matrices=7, deltas={d: AuthorsLayerStats(**v) for d, v in fake.authors[u].items()}))
    report = DeltaReport(
        authors_per_layer=authors,
        meta={"tool": "frankenstein delta", "layout": describe, "representative_layers": {}, "models": {r: {"source": f"{fake.recipe}-{r}"} for r in ("base", "in", "rl")}},
        tensors=[],
        skipped=[],
        mismatched=[],
        summaries={"unified_layer": summaries, "section": group(("vision", "projector", "llm")), "block": group(("early", "mid", "late"))},
        block_ranking={"in": ["early", "mid", "late"], "rl": ["late", "mid", "early"]},
    )
    (fake.path / "delta").mkdir(parents=True, exist_ok=True)
    (fake.path / "delta" / "delta.json").write_text(json.dumps(report.to_json_dict(), indent=2))


def _curve(layers: int, rng: np.random.RandomState, n: int) -> dict[str, Any]:
    return LayerCurve(
        layers=list(range(layers)),
        value=[_r(v) for v in rng.uniform(0, 1, layers)],
        stderr=[_r(v) for v in rng.uniform(0.005, 0.05, layers)],
        n=n,
    ).model_dump()


def _write_curves(
    fake: FakeRun,
    stage: str,
    roles: tuple[str, ...],
    tasks: tuple[str, ...],
    metrics: tuple[str, ...],
    scalar: str | None,
    rng: np.random.RandomState,
    old_results: bool,
) -> None:
    for role in roles:
        results, written = {}, {}
        for task in tasks:
            n = int(rng.randint(20, 60))
            row: dict[str, Any] = {"alias": task}
            written[task] = {}
            for metric in metrics:
                curve = _curve(fake.layers, rng, n)
                row[f"{metric},none"] = curve
                row[f"{metric}_stderr,none"] = "N/A"
                written[task][metric] = curve
            if scalar:
                value, stderr = _r(rng.uniform(0, 1)), _r(rng.uniform(0.01, 0.05))
                row[f"{scalar},none"], row[f"{scalar}_stderr,none"] = value, stderr
                written[task][scalar] = {"value": value, "stderr": stderr, "n": n}
            row["skipped,none"] = 0
            results[task] = row
        fake.curves.setdefault(stage, {})[role] = written
        out = fake.path / stage / role
        _write_lmms(out, results, tasks, NEW_STAMP)
        if old_results:  # an earlier attempt with other numbers: the report must read the newest
            stale = {t: {k: (_curve(fake.layers, rng, 1) if isinstance(v, dict) else v) for k, v in r.items()} for t, r in results.items()}
            _write_lmms(out, stale, tasks, OLD_STAMP)


def _write_attention(fake: FakeRun, stage: str, roles: tuple[str, ...], tasks: tuple[str, ...], metrics: tuple[str, ...], scalar: None, rng: np.random.RandomState, old_results: bool) -> None:
    """Attention curves as the means of per-item curves that the samples logs hold (see `make_run`)."""
    (metric,) = metrics
    fake.attention_items = {}
    n = {task: int(rng.randint(20, 40)) for task in tasks}
    for role in roles:
        results, written, samples = {}, {}, {}
        fake.attention_items[role] = {}
        for task in tasks:
            items = [f"item-{k}" for k in range(n[task] - (2 if role == "rl" else 0))]
            values = {item: [_r(v) for v in rng.uniform(0, 1, fake.layers)] for item in items}
            table = np.array(list(values.values()))
            curve = LayerCurve(layers=list(range(fake.layers)), value=table.mean(axis=0).tolist(),
                               stderr=(table.std(axis=0, ddof=1) / np.sqrt(len(items))).tolist(), n=len(items)).model_dump()
            results[task] = {"alias": task, f"{metric},none": curve, f"{metric}_stderr,none": "N/A", "skipped,none": 0}
            written[task] = {metric: curve}
            fake.attention_items[role][task] = values
            samples[task] = [
                {"doc_id": k, metric: {str(layer): v for layer, v in enumerate(vals)},
                 "accuracy_a": OutcomeRecord(item=item, condition="A", correct=True, answer="1", graded_by="rule").model_dump()}
                for k, (item, vals) in enumerate(values.items())
            ]
        fake.curves.setdefault(stage, {})[role] = written
        _write_lmms(fake.path / stage / role, results, tasks, NEW_STAMP, samples=samples)
        if old_results:  # an earlier attempt without per-item curves: the report must pair the newest logs
            stale = {t: {k: (_curve(fake.layers, rng, 1) if isinstance(v, dict) else v) for k, v in r.items()} for t, r in results.items()}
            _write_lmms(fake.path / stage / role, stale, tasks, OLD_STAMP)


def _estimate(rng: np.random.RandomState, n: int) -> dict[str, Any]:
    value = _r(rng.uniform(0.1, 0.9))
    return IntervalEstimate(value=value, low=_r(value - rng.uniform(0.02, 0.1)), high=_r(value + rng.uniform(0.02, 0.1)), n=n).model_dump()


def _write_transfer(fake: FakeRun, rng: np.random.RandomState) -> None:
    for label in TRANSFER_LABELS:
        results: dict[str, Any] = {"frank_transfer": {"alias": "frank_transfer"}}  # the group row
        fake.estimates[label], fake.transitions[label] = {}, {}
        for task, metrics in TRANSFER_TASKS.items():
            n = 100
            row: dict[str, Any] = {"alias": task}
            fake.estimates[label][task] = {}
            for metric in metrics:
                est = _estimate(rng, n)
                row[f"{metric},none"] = est
                row[f"{metric}_stderr,none"] = "N/A"
                fake.estimates[label][task][metric] = est
            if task in TWO_CONDITION:
                cuts = np.sort(rng.randint(0, n + 1, 3))
                tt, tf, ft, ff = int(cuts[0]), int(cuts[1] - cuts[0]), int(cuts[2] - cuts[1]), int(n - cuts[2])
                trans = TransitionCounts(
                    n=n, TT=tt, TF=tf, FT=ft, FF=ff, side_effect_rate=_estimate(rng, n), lift_rate=_estimate(rng, n),
                    net_gain=IntervalEstimate(value=float(ft - tf), low=float(ft - tf - 5), high=float(ft - tf + 5), n=n),
                ).model_dump()
                row["transitions,none"] = trans
                fake.transitions[label][task] = trans
            results[task] = row
        _write_lmms(fake.path / "transfer" / label, results, tuple(TRANSFER_TASKS), NEW_STAMP, group="frank_transfer")


LEADERBOARD = {  # lm-eval task -> metrics; mmlu is a group with two subtasks
    "arc_easy": ("acc", "acc_norm"), "mmlu": ("acc",), "mmlu_anatomy": ("acc",), "mmlu_virology": ("acc",),
}


def _write_leaderboard(fake: FakeRun, rng: np.random.RandomState) -> None:
    """lm-eval --output_path folders: leaderboard/<label>/<model>/results_<date>.json (lm-eval's names and shapes)."""
    for label in TRANSFER_LABELS:
        results: dict[str, Any] = {}
        fake.leaderboard[label] = {}
        for task, metrics in LEADERBOARD.items():
            row: dict[str, Any] = {"alias": task if not task.startswith("mmlu_") else f" - {task}"}
            fake.leaderboard[label][task] = {}
            for metric in metrics:
                value, stderr = _r(rng.uniform(0.2, 0.9)), _r(rng.uniform(0.005, 0.05))
                row[f"{metric},none"], row[f"{metric}_stderr,none"] = value, stderr
                fake.leaderboard[label][task][metric] = (value, stderr)
            results[task] = row
        data = {"results": results, "group_subtasks": {"mmlu": ["mmlu_anatomy", "mmlu_virology"], "arc_easy": []},
                "sample_len": 40, "configs": {}}
        folder = fake.path / "leaderboard" / label / "frankenstein_model"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results_2026-03-01T12-00-00.000000.json").write_text(json.dumps(data, indent=2))


def _write_lmms(
    out: Path, results: dict[str, Any], tasks: tuple[str, ...], stamp: str, group: str | None = None, samples: dict[str, list[dict]] | None = None
) -> None:
    """An lmms-eval --output_path folder: <model>/<stamp>_results.json and one samples log per task."""
    folder = out / "frankenstein"
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "results": results,
        "group_subtasks": ({group: list(tasks)} if group else {}) | {t: [] for t in tasks},
        "configs": {t: {"task": t} for t in tasks},
        "versions": {t: 1.0 for t in tasks},
        "n-shot": {t: 0 for t in tasks},
        "higher_is_better": {t: {} for t in tasks},
        "n-samples": {t: {"original": 100, "effective": (results[t].get("n") or 100)} for t in tasks},
        "config": {"model": "frankenstein", "model_args": "pretrained=/models/rl,probe=visual_swap", "batch_size": "1"},
        "git_hash": None,
        "date": stamp,
    }
    for t in tasks:  # the effective sample count lmms-eval logs: take it from the curves' n
        ns = [v["n"] for v in results[t].values() if isinstance(v, dict) and "n" in v]
        data["n-samples"][t]["effective"] = ns[0] if ns else 100
    (folder / f"{stamp}_results.json").write_text(json.dumps(data, indent=2))
    for t in tasks:
        lines = (samples or {}).get(t) or [{"doc_id": 0, "target": "3", "filtered_resps": ["3"], "doc_hash": "x"}]
        (folder / f"{stamp}_samples_{t}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
