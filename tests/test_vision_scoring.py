"""Scoring of answers per task, and of probe responses into per-layer curves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from frankenstein_tasks.contract import ProbeResult, aggregate_curve, encode
from frankenstein_tasks.vision import scoring
from frankenstein_tasks.vision.metrics import count_skipped, process_results
from frankenstein_tasks.vision.scoring import iou, is_correct, normalize, parse_box, parse_count, parse_yes_no, truth_text

COUNTING = {"target_answer": 3, "source_answer": 7}
OCR = {"target_text": "apple", "source_text": "river"}
GROUNDING = {"target_bbox_xyxy": [10, 10, 50, 50], "source_bbox_xyxy": [100, 100, 140, 140], "iou_threshold": 0.5}
RECOGNITION = {"target_answer": "yes", "source_answer": "no"}


@pytest.mark.parametrize("answer, count", [
    ("3", 3), ("There are 3 stars.", 3), ("three", 3), ("Ten", 10), ("7 stars, not 3", 7),
    ("x2 stars", None), ("3.5", None), ("none", None), ("", None), ("**4**", 4),
])  # fmt: skip
def test_parse_count(answer, count):
    assert parse_count(answer) == count


def test_parse_box_and_iou():
    assert parse_box("10,10,50,50") == (10, 10, 50, 50)
    assert parse_box('```json\n[{"bbox_2d": [12, 8, 52.5, 49], "label": "red star"}]\n```') == (12, 8, 52.5, 49)
    assert parse_box("(50, 50), (10, 10)") == (10, 10, 50, 50)  # corners put in order
    assert parse_box("x1=10, y1=20, x2=30") is None
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_scorers_per_task():
    assert is_correct("counting", "3", COUNTING) and not is_correct("counting", "7", COUNTING)
    assert is_correct("counting", "seven", COUNTING, "source")
    assert is_correct("ocr", '"Apple".', OCR) and is_correct("ocr", "APPLE", OCR)
    assert not is_correct("ocr", "apples", OCR) and not is_correct("ocr", "the word is apple", OCR)
    assert is_correct("ocr", "river", OCR, "source")
    # IoU of [12,12,52,52] with [10,10,50,50] = 38*38 / (2*1600 - 38*38) = 0.82; [30,30,70,70]: 400/2800 = 0.14
    assert is_correct("grounding", "[12, 12, 52, 52]", GROUNDING)
    assert not is_correct("grounding", "30,30,70,70", GROUNDING)
    assert is_correct("grounding", "100,100,140,140", GROUNDING, "source")
    assert not is_correct("grounding", "no box", GROUNDING)
    assert is_correct("grounding", "30,30,70,70", {**GROUNDING, "iou_threshold": 0.1})
    assert is_correct("recognition", "Yes, there is.", RECOGNITION) and not is_correct("recognition", "No.", RECOGNITION)
    assert is_correct("recognition", "no", RECOGNITION, "source")
    assert parse_yes_no("I don't know") is None and not is_correct("recognition", "maybe", RECOGNITION)
    assert set(scoring.SCORERS) == {"counting", "ocr", "grounding", "recognition"}


def test_truth_text_and_normalize():
    assert truth_text("counting", COUNTING) == "3" and truth_text("counting", COUNTING, "source") == "7"
    assert truth_text("grounding", GROUNDING) == "10,10,50,50"
    assert truth_text("ocr", OCR, "source") == "river" and truth_text("recognition", {"target_answer": "Yes"}) == "yes"
    assert normalize("  Yes.  ") == normalize("yes") == normalize("YES!") == "yes"
    assert normalize("3") != normalize("3.5")


def _doc(task, meta):
    return {"task": task, "meta": json.dumps(meta)}


def _swap(baseline, answers, **kw):
    return encode(ProbeResult(probe="visual_swap", baseline=baseline, layers=list(range(len(answers))), answers=answers, **kw))


def test_plain_answer_gives_accuracy_only():
    assert process_results(_doc("counting", COUNTING), ["3"]) == {"accuracy": 1.0}
    assert process_results(_doc("ocr", OCR), ["river"]) == {"accuracy": 0.0}
    assert process_results(_doc("recognition", RECOGNITION), [""]) == {"accuracy": 0.0}
    # a JSON-looking plain answer is still a plain answer
    assert process_results(_doc("grounding", GROUNDING), ['{"bbox_2d": [10, 10, 50, 50]}']) == {"accuracy": 1.0}


def test_swap_curves_by_hand():
    """Three counting items on a 4-layer model; target count 3, source count 7.

    layer:                 0    1    2     3      change        adopts the source's 7
    item A (baseline "3") "7"  "7"  "3."  "3"     1 1 0 0       1 1 0 0
    item B (baseline "3") "7"  "5"  "3"   "3"     1 1 0 0       1 0 0 0
    item C (baseline "4") "7"  "7"  "7"   "4"     1 1 1 0       1 1 1 0
    mean over items                               1 1 1/3 0     1 2/3 1/3 0
    accuracy (baseline right for the target): A, B.
    """
    doc = _doc("counting", COUNTING)
    per_item = [
        process_results(doc, [_swap("3", ["7", "7", "3.", "3"])]),
        process_results(doc, [_swap("3", ["7", "5", "3", "3"])]),
        process_results(doc, [_swap("4", ["7", "7", "7", "4"])]),
    ]
    assert per_item[1]["change_rate"] == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 0.0}
    assert per_item[1]["source_adoption_rate"] == {"0": 1.0, "1": 0.0, "2": 0.0, "3": 0.0}
    change = aggregate_curve(m["change_rate"] for m in per_item)
    adoption = aggregate_curve(m["source_adoption_rate"] for m in per_item)
    assert change["layers"] == adoption["layers"] == [0, 1, 2, 3] and change["n"] == 3
    assert change["value"] == pytest.approx([1, 1, 1 / 3, 0], abs=1e-6)
    assert adoption["value"] == pytest.approx([1, 2 / 3, 1 / 3, 0], abs=1e-6)
    # Standard errors by a plain loop over the documented resamples (analysis/bootstrap.py: the items in
    # their canonical order, sorted by value; 1000 draws of the 3 with replacement, numpy's Generator
    # seeded 1234, one draw shared by every layer), and near the textbook sqrt(p(1 - p) / n) of a 0/1 column.
    draws = np.random.default_rng(1234).integers(0, 3, size=(1000, 3))
    for curve, items in ((change, [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]), (adoption, [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])):
        table = sorted(items)
        means = [[sum(table[i][j] for i in rows) / 3 for j in range(4)] for rows in draws]
        expected = [float(np.std([m[j] for m in means], ddof=1)) for j in range(4)]
        assert curve["stderr"] == pytest.approx(expected, abs=1e-6)
        for j, p in enumerate(curve["value"]):
            assert curve["stderr"][j] == pytest.approx((p * (1 - p) / 3) ** 0.5, rel=0.1, abs=1e-9)
    assert change["stderr"][2] > 0 and change["stderr"][:2] == [0, 0]  # constant columns: no spread
    assert [m["accuracy"] for m in per_item] == [1.0, 1.0, 0.0]
    assert count_skipped(m["skipped"] for m in per_item) == 0


def test_swap_curves_per_task():
    grounding = process_results(_doc("grounding", GROUNDING), [_swap("10,10,50,50", ["101,99,141,139", "[11,10,50,50]"])])
    assert grounding["change_rate"] == {"0": 1.0, "1": 1.0}  # a different box text is a change, even at IoU 0.95
    assert grounding["source_adoption_rate"] == {"0": 1.0, "1": 0.0}
    assert grounding["accuracy"] == 1.0
    ocr = process_results(_doc("ocr", OCR), [_swap("Apple", ["apple.", "River", "rivers"])])
    assert ocr["change_rate"] == {"0": 0.0, "1": 1.0, "2": 1.0}
    assert ocr["source_adoption_rate"] == {"0": 0.0, "1": 1.0, "2": 0.0}
    rec = process_results(_doc("recognition", RECOGNITION), [_swap("Yes", ["yes", "No."])])
    assert rec["change_rate"] == {"0": 0.0, "1": 1.0} and rec["source_adoption_rate"] == {"0": 0.0, "1": 1.0}


def test_swap_with_source_equal_to_target_changes_nothing(tiny_trio):
    """METHOD 1a invariant, end to end: the visual_swap probe on the tiny model with the target image as its
    own source, encoded as the harness encodes it and scored: change rate 0 at every layer. In the same
    batch an item with a different source changes some answers, so the zero is not built into the path."""
    from lmms_tasks import dots

    from surgery.loading import load_model, load_processor
    from surgery.probes import ProbeConfig, ProbeRequest, ProbeRunner

    model, layout = load_model(str(tiny_trio["in"]), dtype="float32")
    config = ProbeConfig(probe="visual_swap", default_max_new_tokens=6)
    runner = ProbeRunner(model, layout, load_processor(str(tiny_trio["in"])), config)
    target = dots(2, "red")
    same, other = runner.run([ProbeRequest("How many circles?", [target], source_images=[target]),
                              ProbeRequest("How many circles?", [target], source_images=[dots(5, "blue")])])
    doc = _doc("counting", COUNTING)
    layers = [str(i) for i in range(layout.num_layers)]
    assert process_results(doc, [encode(same)])["change_rate"] == dict.fromkeys(layers, 0.0)
    changed = process_results(doc, [encode(other)])["change_rate"]
    assert list(changed) == layers and changed["0"] == 1.0


def test_probe_errors_are_counted_as_skipped():
    doc = _doc("counting", COUNTING)
    results = [
        process_results(doc, [_swap("3", ["7", "3"])]),
        process_results(doc, [encode(ProbeResult(probe="visual_swap", error="8 vs 12 visual tokens"))]),
        process_results(doc, [encode(ProbeResult(probe="attention", layers=[0, 1], values=[0.1, 0.2]))]),
    ]
    assert results[1] == {"skipped": 1.0} and results[2] == {"skipped": 1.0}
    assert count_skipped(r["skipped"] for r in results) == 2
    # lmms-eval aggregates a metric over the items that return it: the curve is over the one good item
    curve = aggregate_curve(r["change_rate"] for r in results if "change_rate" in r)
    assert curve["n"] == 1 and curve["value"] == [1.0, 0.0]


def test_zero_ablation_answers_give_change_rate_only():
    m = process_results(_doc("ocr", OCR), [encode(ProbeResult(probe="zero_ablation", baseline="apple", layers=[0, 1], answers=["apple", "pear"]))])
    assert m["change_rate"] == {"0": 0.0, "1": 1.0} and "source_adoption_rate" not in m
