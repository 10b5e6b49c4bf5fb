"""One result contract: what the writers produce is what the readers accept (`analysis.schema`).

The writers' own functions (the tasks' aggregations and per-sample outcome records) produce results
and samples files here, and the readers (`analysis.harness`, `analysis.report.shapes`,
`analysis.outcomes`, the transfer table) read them back to the same numbers; a value claiming a shape
but malformed is one line naming file, task and metric; the stage list is declared once.
`check_run_folder` validates a real run folder's files with the schema models and the readers; the
real runs of `test_run.py` and `test_demo.py` call it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.schema import STAGE_NAMES, IntervalEstimate, LayerCurve, OutcomeRecord, RunManifest, TransitionCounts


def check_run_folder(folder: Path) -> dict[str, int]:
    """Validate every shaped value of a run folder with the schema models and the readers; count them by shape."""
    from analysis.harness import curves_of
    from analysis.lmms_runs import Run
    from analysis.outcomes import pair_conditions
    from analysis.report import shapes

    manifest = RunManifest.model_validate(json.loads((folder / "run.json").read_text()))
    assert set(manifest.stages) <= set(STAGE_NAMES)
    counts = {"curves": 0, "estimates": 0, "transitions": 0, "records": 0}
    for path in sorted(folder.rglob("*_results.json")):
        run = Run.read(path)
        for task, metrics in run.results.items():
            for key, value in metrics.items():
                for name, model in (("curves", LayerCurve), ("estimates", IntervalEstimate), ("transitions", TransitionCounts)):
                    if model.claims(value):
                        model.model_validate(value)
                        counts[name] += 1
        assert len(curves_of(run)) == sum(LayerCurve.claims(v) for m in run.results.values() for v in m.values())
        shapes.estimates(run), shapes.transitions(run)  # the report's readers accept them too
        for task in run.tasks():
            if not run.has_samples(task):
                continue
            by_metric: dict[str, list] = {}
            for sample in run.samples(task):
                for key, value in sample.items():
                    if OutcomeRecord.claims(value):
                        OutcomeRecord.model_validate(value)
                        by_metric.setdefault(key, []).append(value)
                        counts["records"] += 1
            for records in by_metric.values():
                pair_conditions(records)
    return counts


def _write_run(folder: Path, results: dict, samples: dict[str, list[dict]]) -> Path:
    """An lmms-eval --output_path layout: one results file and one samples log per task."""
    folder.mkdir(parents=True)
    path = folder / "20260101_000000_results.json"
    tasks = [t for t in results if t != "frank_transfer"]
    path.write_text(json.dumps({"results": results, "group_subtasks": {"frank_transfer": tasks, **{t: [] for t in tasks}},
                                "config": {"model_args": "pretrained=/x"}}))
    for task, lines in samples.items():
        (folder / f"20260101_000000_samples_{task}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_what_the_writers_produce_the_readers_accept(tmp_path):
    from analysis.harness import read_curves
    from analysis.lmms_runs import Run
    from analysis.outcomes import item_indicators
    from analysis.report import shapes
    from frankenstein_tasks import transfer
    from frankenstein_tasks.contract import aggregate_curve, pool_across_tasks

    # Curves: two tasks' per-sample values, aggregated and pooled by the task code.
    gsm = aggregate_curve([{"0": 1.0, "1": 0.0}, {"0": 1.0, "1": 1.0}, {"0": 0.0}])
    math500 = aggregate_curve([{"0": 0.5, "1": 0.25}])
    pooled = pool_across_tasks([gsm, math500], [3, 1])
    # Outcome records as `score` writes them for three items under A and B, then the aggregations.
    docs = [{"item_id": str(i), "condition": c, "gold": gold, "problem": "?"}
            for i, gold in enumerate(("1", "2", "3")) for c in ("A", "B")]
    replies = ["\\boxed{1}", "\\boxed{0}", "\\boxed{2}", "\\boxed{2}", "no idea", "\\boxed{3}"]
    records = [transfer.score("frank_general_vqa", d, [r])["m_vis"] for d, r in zip(docs, replies)]
    results = {
        "frank_gsm8k": {"accuracy_by_layer,none": gsm},
        "frank_math500": {"accuracy_by_layer,none": math500},
        "frank_reasoning": {"accuracy_by_layer,none": pooled},
        "frank_general_vqa": {"m_vis,none": transfer.aggregate_m_vis(records), "accuracy_b,none": transfer.aggregate_accuracy_b(records),
                              "transitions,none": transfer.aggregate_transitions(records)},
    }
    path = _write_run(tmp_path / "run", results, {"frank_general_vqa": [{"doc_id": k, "m_vis": r} for k, r in enumerate(records)]})

    curves = {(c.task, c.metric): c for c in read_curves(path)}
    for task, written in (("frank_gsm8k", gsm), ("frank_math500", math500), ("frank_reasoning", pooled)):
        c = curves[(task, "accuracy_by_layer")]
        assert (c.layers, c.value, c.stderr, c.n) == (written["layers"], written["value"], written["stderr"], written["n"])
    run = Run.read(path)
    read = {(e.task, e.metric): e for e in shapes.estimates(run)}
    # By hand: item 0 right with A, wrong with B (counts for M_vis); item 1 right under both; item 2 wrong with A.
    assert read[("frank_general_vqa", "m_vis")].estimate.value == pytest.approx(1 / 3) and read[("frank_general_vqa", "m_vis")].n == 3
    assert read[("frank_general_vqa", "accuracy_b")].estimate.value == pytest.approx(2 / 3)
    (t,) = shapes.transitions(run)
    assert (t.n, t.cells) == (3, {"TT": 1, "TF": 1, "FT": 1, "FF": 0})
    assert t.stats["net_gain"].value == 0.0
    assert item_indicators([s["m_vis"] for s in run.samples("frank_general_vqa")], "m_vis") == {"0": True, "1": False, "2": False}
    assert check_run_folder_results_only(tmp_path / "run") == {"curves": 3, "estimates": 2, "transitions": 1, "records": 6}


def check_run_folder_results_only(folder: Path) -> dict[str, int]:
    """`check_run_folder` for an lmms-eval output folder without run.json."""
    (folder / "run.json").write_text(json.dumps({"recipe": "x", "models": {}, "layout": {}, "stages": {}}))
    return check_run_folder(folder)


@pytest.mark.parametrize("value, problem", [
    ({"layers": [0, 1], "value": [0.5], "stderr": [0.1, 0.1], "n": 2}, "layers, value and stderr differ in length (2, 1, 2)"),
    ({"layers": [1, 0], "value": [0.5, 0.5], "stderr": [0.1, 0.1], "n": 2}, "layers must be distinct decoder layers in ascending order"),
    ({"layers": [0], "value": [0.5], "stderr": [0.1]}, "n = {'layers': [0], 'value': [0.5], 'stderr': [0.1]}: Field required"),
    ({"layers": [0], "value": ["high"], "stderr": [0.1], "n": 1}, "value.0 = 'high': Input should be a valid number"),
])
def test_a_malformed_curve_is_one_line_naming_file_task_and_metric(tmp_path, value, problem):
    from analysis.harness import read_curves
    from surgery.errors import FrankensteinError

    path = _write_run(tmp_path / "run", {"frank_gsm8k": {"accuracy_by_layer,none": value}}, {})
    with pytest.raises(FrankensteinError) as caught:
        read_curves(path)
    assert str(caught.value).startswith(f"{path}: frank_gsm8k accuracy_by_layer is not a per-layer curve ({problem}")


def test_a_malformed_outcome_record_is_one_line_naming_its_source():
    from analysis.outcomes import pair_conditions
    from surgery.errors import FrankensteinError

    good = {"item": "1", "condition": "A", "correct": True, "answer": "1", "graded_by": "rule"}
    with pytest.raises(FrankensteinError, match=r"^log.jsonl: not an outcome record \(condition = 'C': "):
        pair_conditions([good, {**good, "condition": "C"}], "log.jsonl")
    with pytest.raises(FrankensteinError, match=r"graded_by = 'guess'"):
        pair_conditions([{**good, "graded_by": "guess"}], "log.jsonl")


def test_the_stage_list_is_declared_once():
    from analysis.report.runs import STAGES as REPORT_STAGES
    from frankenstein_tasks.run.config import RunConfig
    from frankenstein_tasks.run.stages import STAGES
    from report_fixtures import ALL_STAGES

    assert tuple(STAGES) == STAGE_NAMES and REPORT_STAGES is STAGE_NAMES and ALL_STAGES is STAGE_NAMES
    default = RunConfig.model_validate({"recipe": "x", "models": {"base": "b", "in": "i", "rl": "r"}})
    # Every stage but those off by default (the leaderboard needs lm-eval task data), in the declared order.
    assert tuple(default.stages) == tuple(n for n in STAGE_NAMES if n != "leaderboard")
