"""The frank_transfer task code in-process: docs from local hub-schema data, prompts, images, per-sample
records and the task-level aggregation against values computed by hand; descriptions and the judge
through a local chat-completions server; one-line errors for wrong data.

The lmms_eval CLI runs of the same tasks are in test_transfer_lmms.py.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from chat_server import Reply
from transfer_data import MATHVISTA_ITEMS, cache_transfer_data, items_of

from analysis.outcomes import item_indicators, pair_conditions
from analysis.transitions import transition_stats
from frankenstein_tasks import contract, llm_endpoint
from frankenstein_tasks.tasks.frank_transfer import utils
from surgery.errors import FrankensteinError

pytest_plugins = ("chat_server",)
KEY = f"sk-transfer-test-{uuid.uuid4().hex}"
T, F = True, False
CLEAN_ENV = ("FRANKENSTEIN_DESCRIPTIONS", "FRANKENSTEIN_LLM_API_KEY", "OPENAI_API_KEY", "FRANKENSTEIN_LLM_BASE_URL",
             "OPENAI_BASE_URL", "FRANKENSTEIN_JUDGE", "FRANKENSTEIN_SUBSET", "FRANKENSTEIN_SUBSET_FRANK_GENERAL_VQA")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The MathVista testmini and MATH-500 test splits, loaded offline from the local cache entries."""
    import datasets

    cache = cache_transfer_data(tmp_path_factory.mktemp("hf_datasets"))
    return {
        "mathvista": datasets.load_dataset("AI4Math/MathVista", cache_dir=str(cache))["testmini"],
        "math500": datasets.load_dataset("HuggingFaceH4/MATH-500", cache_dir=str(cache))["test"],
    }


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FRANKENSTEIN_CACHE", str(tmp_path / "cache"))
    llm_endpoint.default_endpoint.cache_clear()
    yield
    llm_endpoint.default_endpoint.cache_clear()


def _describing(n, body, headers):
    parts = body["messages"][0]["content"]
    if isinstance(parts, str):  # a judge prompt
        return Reply(text="Correct" if "Model output:\nB" in parts else "Incorrect")
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    return Reply(text=f"description #{len(url)}")


def _use_server(monkeypatch, server):
    monkeypatch.setenv("FRANKENSTEIN_LLM_BASE_URL", server.url)
    monkeypatch.setenv("FRANKENSTEIN_LLM_API_KEY", KEY)
    monkeypatch.setenv("FRANKENSTEIN_LLM_BACKOFF", "0")
    llm_endpoint.default_endpoint.cache_clear()


# ---------------------------------------------------------------------------------------------- docs


def test_general_vqa_docs_keep_the_category_and_expand_each_item_into_a_and_b(data):
    docs = utils.process_docs_general_vqa(data["mathvista"])
    general = items_of("general-vqa")
    assert docs["item_id"] == [pid for pid in general for _ in "AB"]
    assert docs["condition"] == ["A", "B"] * len(general)
    assert docs["description"] == [""] * 2 * len(general)  # general_vqa's B has no description
    pids = [row[0] for row in MATHVISTA_ITEMS]
    assert docs["source_index"] == [pids.index(p) for p in general for _ in "AB"]
    assert docs["image"][:2] == ["images/1.jpg", "images/1.jpg (shown as a black image of its size)"]
    assert all(docs[contract.PROMPT_STYLE_KEY])


def test_subset_is_drawn_over_the_category_items_the_papers_way(data, monkeypatch):
    general = items_of("general-vqa")
    monkeypatch.setenv("FRANKENSTEIN_SUBSET_FRANK_GENERAL_VQA", "2:7")
    docs = utils.process_docs_general_vqa(data["mathvista"])
    chosen = sorted(np.random.RandomState(7).choice(np.arange(len(general)), size=2, replace=False))
    assert docs["item_id"] == [general[j] for j in chosen for _ in "AB"]
    # the paper variant is fixed to 100 items, seed 123: all three items here, whatever the variable says
    paper = utils.process_docs_general_vqa_paper(data["mathvista"])
    assert paper["item_id"] == [pid for pid in general for _ in "AB"]


def test_images_black_of_the_same_size_for_b_and_the_real_one_for_a(data):
    docs = utils.process_docs_general_vqa(data["mathvista"])
    sizes = {pid: size for pid, _, _, _, _, size, _ in MATHVISTA_ITEMS}
    colours = {pid: colour for pid, *_, colour in MATHVISTA_ITEMS}
    for doc in docs:
        (image,) = utils.doc_to_visual(doc)
        assert image.size == sizes[doc["item_id"]] and image.mode == "RGB"
        expected = colours[doc["item_id"]] if doc["condition"] == "A" else (0, 0, 0)
        assert [colour for _, colour in image.getcolors()] == [expected]


def test_math_vqa_b_shows_the_description_from_the_file_and_a_does_not(data, monkeypatch, tmp_path):
    table = {pid: f"A picture numbered {pid}." for pid in items_of("math-targeted-vqa")}
    (tmp_path / "d.json").write_text(json.dumps(table))
    monkeypatch.setenv("FRANKENSTEIN_DESCRIPTIONS", str(tmp_path / "d.json"))
    docs = utils.process_docs_math_vqa(data["mathvista"])
    assert docs["item_id"] == [pid for pid in items_of("math-targeted-vqa") for _ in "AB"]
    queries = {row["pid"]: row["query"] for row in data["mathvista"]}
    for doc in docs:
        text = utils.doc_to_text(doc, {"prompt_style": "base"})
        # MathVista's own query; under B after the description of the image.
        description = f"Description of the image:\n{table[doc['item_id']]}\n\n"
        assert text == (description if doc["condition"] == "B" else "") + queries[doc["item_id"]]
    four = next(d for d in docs if d["item_id"] == "4" and d["condition"] == "A")  # multiple choice lists options
    assert "Choices:\n(A) 1.5\n(B) 2.5\n(C) 3.5\n(D) 4.5" in utils.doc_to_text(four)


def test_math500_docs_one_condition_named_by_unique_id(data):
    docs = utils.process_docs_math500_rea(data["math500"])
    assert docs["item_id"] == [row["unique_id"] for row in data["math500"]]
    assert docs["condition"] == ["A"] * len(docs)
    assert utils.doc_to_visual(docs[0]) == []
    assert utils.doc_to_text(docs[0]).endswith("\n\nWhat is $2+3$?")
    assert utils.doc_to_target(docs[1]) == "\\frac{3}{4}"


def test_attention_shift_docs_are_the_math_vqa_items_with_their_images(data):
    docs = utils.process_docs_attention_shift(data["mathvista"])
    assert docs["item_id"] == items_of("math-targeted-vqa") and docs["condition"] == ["A", "A"]


# ------------------------------------------------------------------------------------------ errors


def test_missing_fields_and_wrong_datasets_are_one_line_errors(data):
    with pytest.raises(FrankensteinError, match=r"frank_general_vqa: the AI4Math/MathVista data has no 'choices' field .*right dataset") as caught:
        utils.process_docs_general_vqa(data["mathvista"].remove_columns("choices"))
    assert "\n" not in str(caught.value)
    with pytest.raises(FrankensteinError, match="frank_math_vqa: the AI4Math/MathVista data has no 'pid', 'question'"):
        utils.process_docs_math_vqa(data["math500"])  # MATH-500 where MathVista belongs
    with pytest.raises(FrankensteinError, match="frank_math500_rea: the HuggingFaceH4/MATH-500 data has no 'problem'"):
        utils.process_docs_math500_rea(data["mathvista"])
    only_general = data["mathvista"].select([0, 2, 4])
    with pytest.raises(FrankensteinError, match="frank_math_vqa: .* no item of category 'math-targeted-vqa'"):
        utils.process_docs_math_vqa(only_general)


def test_without_descriptions_only_math_vqa_fails_with_one_line(data):
    utils.process_docs_general_vqa(data["mathvista"])  # no key, no file: fine
    utils.process_docs_attention_shift(data["mathvista"])
    with pytest.raises(FrankensteinError) as caught:
        utils.process_docs_math_vqa(data["mathvista"])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("frank_math_vqa (descriptions for condition B):")
    assert "no API key is set" in message and "FRANKENSTEIN_DESCRIPTIONS=FILE" in message


def test_descriptions_through_the_endpoint_are_cached_and_the_key_is_never_written(data, chat_server, monkeypatch, tmp_path):
    server = chat_server(_describing)
    _use_server(monkeypatch, server)
    first = utils.process_docs_math_vqa(data["mathvista"])
    assert server.count == len(items_of("math-targeted-vqa"))  # one request per item, not per condition
    described = {d["item_id"]: d["description"] for d in first if d["condition"] == "B"}
    assert all(text.startswith("description #") for text in described.values())
    llm_endpoint.default_endpoint.cache_clear()  # a new process: only the disk cache remains
    again = utils.process_docs_math_vqa(data["mathvista"])
    assert server.count == len(items_of("math-targeted-vqa"))  # zero requests the second time
    assert again["description"] == first["description"]
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files and all(KEY not in p.read_text() for p in files)
    assert all(KEY not in json.dumps(h) for h in [dict(b) for b, _ in server.requests])


# ------------------------------------------------------------------------------------- per sample


def _doc(data, task, pid, condition):
    docs = {"frank_general_vqa": utils.process_docs_general_vqa, "frank_attention_shift": utils.process_docs_attention_shift}[task](data["mathvista"])
    return next(d for d in docs if d["item_id"] == pid and d["condition"] == condition)


def test_records_grade_the_reply_by_the_shared_rule(data):
    doc = _doc(data, "frank_general_vqa", "1", "B")  # multiple choice, gold "green" = option B
    right = utils.process_results_general_vqa(doc, ["I think it is \\boxed{B}"])
    assert set(right) == {"m_vis", "accuracy_a", "accuracy_b", "transitions"}
    assert right["m_vis"] == {"item": "1", "condition": "B", "correct": True, "answer": "B", "graded_by": "rule"}
    assert utils.process_results_general_vqa(doc, ["\\boxed{red}"])["m_vis"]["correct"] is False
    math = utils.process_results_math500_rea({"item_id": "x", "condition": "A", "gold": "\\frac{3}{4}", "problem": "?"}, ["so \\boxed{0.75}"])
    assert set(math) == {"m_rea", "accuracy_a"} and math["m_rea"]["correct"] is True


def test_attention_probe_reply_gives_the_curve_and_a_graded_baseline(data):
    doc = _doc(data, "frank_attention_shift", "4", "A")  # gold "2.5" = option B
    reply = contract.encode(contract.ProbeResult(probe="attention", baseline="The answer is B.", layers=[0, 1, 2], values=[0.5, 0.25, 0.125]))
    out = utils.process_results_attention_shift(doc, [reply])
    assert out["visual_attention"] == {"0": 0.5, "1": 0.25, "2": 0.125}
    assert out["accuracy_a"]["correct"] is True and out["accuracy_a"]["item"] == "4"
    plain = utils.process_results_attention_shift(doc, ["\\boxed{A}"])
    assert set(plain) == {"accuracy_a"} and plain["accuracy_a"]["correct"] is False
    # the transfer tasks grade a probe's baseline too, but only frank_attention_shift reports the curve
    other = utils.process_results_general_vqa(_doc(data, "frank_general_vqa", "1", "A"), [reply])
    assert set(other) == {"m_vis", "accuracy_a", "accuracy_b", "transitions"} and other["m_vis"]["correct"] is True


def test_judge_is_opt_in_and_cached(data, chat_server, monkeypatch):
    server = chat_server(_describing)
    _use_server(monkeypatch, server)
    doc = _doc(data, "frank_general_vqa", "3", "A")  # free form, gold "2"
    assert utils.process_results_general_vqa(doc, ["B"])["m_vis"]["graded_by"] == "rule"
    assert server.count == 0
    monkeypatch.setenv("FRANKENSTEIN_JUDGE", "1")
    judged = utils.process_results_general_vqa(doc, ["B"])["m_vis"]
    assert judged["graded_by"] == "judge" and judged["correct"] is True  # the server's verdict, not the rule's
    assert server.count == 1
    llm_endpoint.default_endpoint.cache_clear()
    assert utils.process_results_general_vqa(doc, ["B"])["m_vis"]["correct"] is True
    assert server.count == 1  # cached


# ------------------------------------------------------------------------------------ aggregation


def _records(outcomes: dict[str, tuple[bool, ...]], order: str = "AB") -> list[dict]:
    """Records for item -> (right under A[, right under B]), conditions emitted in `order`."""
    out = []
    for item, values in outcomes.items():
        by_condition = dict(zip("AB", values))
        out += [{"item": item, "condition": c, "correct": by_condition[c], "answer": None, "graded_by": "rule"}
                for c in order if c in by_condition]
    return out


# By hand: i1 TT, i2 TF, i3 FT, i4 FF, i5 TF, i6 TT, i8 TT (TT 3, TF 2, FT 1, FF 1); i7 has no B (left out).
SEVEN = {"i1": (T, T), "i2": (T, F), "i3": (F, T), "i4": (F, F), "i5": (T, F), "i6": (T, T), "i8": (T, T)}


def test_two_condition_aggregation_by_hand():
    records = _records(SEVEN, order="BA") + _records({"i7": (T,)})
    assert utils.aggregate_transitions(records) | {"net_gain": None, "side_effect_rate": None, "lift_rate": None} == {
        "n": 7, "TT": 3, "TF": 2, "FT": 1, "FF": 1, "net_gain": None, "side_effect_rate": None, "lift_rate": None}
    expected = {
        "m_vis": 2 / 7,  # TF / n
        "m_v2r": 3 / 7,  # TT / n
        "accuracy_a": 5 / 7,  # (TT + TF) / n
        "accuracy_b": 4 / 7,  # (TT + FT) / n
    }
    for metric, value in expected.items():
        got = getattr(utils, f"aggregate_{metric}")(records)
        assert got["value"] == pytest.approx(value, abs=1e-6) and got["n"] == 7
        assert got["low"] <= got["value"] <= got["high"]
    t = utils.aggregate_transitions(records)
    assert t["net_gain"]["value"] == -1  # FT - TF
    assert t["side_effect_rate"]["value"] == pytest.approx(0.4)  # TF / (TT + TF) = 2 / 5
    assert t["lift_rate"]["value"] == pytest.approx(0.5)  # FT / (FF + FT) = 1 / 2
    # the intervals are the paired bootstrap's on the same items
    reference = transition_stats([v[0] for v in SEVEN.values()], [v[1] for v in SEVEN.values()])
    assert utils.aggregate_m_vis(records) == {**reference.right_before_only.as_dict(), "n": 7}


def test_single_condition_aggregation_by_hand():
    records = _records({"a": (T,), "b": (F,), "c": (T,)})
    m_rea = utils.aggregate_m_rea(records)
    assert m_rea["value"] == pytest.approx(2 / 3, abs=1e-6) and m_rea["n"] == 3
    assert utils.aggregate_accuracy_a(records) == m_rea


def test_empty_and_all_equal_tables():
    empty = utils.aggregate_transitions([])
    assert (empty["n"], empty["TT"], empty["TF"], empty["FT"], empty["FF"]) == (0, 0, 0, 0, 0)
    assert empty["side_effect_rate"] == {"value": None, "low": None, "high": None, "n": 0}
    assert utils.aggregate_m_vis([]) == {"value": None, "low": None, "high": None, "n": 0}
    assert utils.aggregate_m_rea([]) == {"value": None, "low": None, "high": None, "n": 0}
    all_right = _records({f"i{k}": (T, T) for k in range(4)})
    assert utils.aggregate_m_vis(all_right) == {"value": 0.0, "low": 0.0, "high": 0.0, "n": 4}
    assert utils.aggregate_m_v2r(all_right) == {"value": 1.0, "low": 1.0, "high": 1.0, "n": 4}
    t = utils.aggregate_transitions(all_right)
    assert t["side_effect_rate"]["value"] == 0.0 and t["lift_rate"]["value"] is None  # nothing was wrong under A
    all_wrong = utils.aggregate_transitions(_records({f"i{k}": (F, F) for k in range(3)}))
    assert all_wrong["FF"] == 3 and all_wrong["side_effect_rate"]["value"] is None and all_wrong["lift_rate"]["value"] == 0.0


def test_a_duplicated_outcome_is_an_error_and_indicators_follow_the_metric():
    with pytest.raises(FrankensteinError, match="item 'x' has two outcomes under condition A"):
        pair_conditions(_records({"x": (T,)}) * 2)
    records = _records(SEVEN)
    assert item_indicators(records, "m_vis") == {"i1": F, "i2": T, "i3": F, "i4": F, "i5": T, "i6": F, "i8": F}
    assert item_indicators(records, "m_v2r") == {"i1": T, "i2": F, "i3": F, "i4": F, "i5": F, "i6": T, "i8": T}
    assert item_indicators(_records({"a": (T,), "b": (F,)}), "m_rea") == {"a": T, "b": F}


# ---------------------------------------------------------------------------------------- console


def test_console_shows_estimates_and_transitions_compactly():
    from frankenstein_tasks.models._console_table import summarize_curves

    est = {"value": 0.42, "low": 0.33, "high": 0.51, "n": 100}
    assert contract.is_estimate(est) and not contract.is_curve(est)
    assert contract.estimate_summary(est) == "0.42 [0.33, 0.51] (n=100)"
    assert contract.estimate_summary({"value": None, "low": None, "high": None, "n": 0}) == "n/a (n=0)"
    assert contract.estimate_summary({"value": 0.5, "low": None, "high": None, "n": 1}) == "0.50 (n=1)"
    trans = {"n": 100, "TT": 40, "TF": 3, "FT": 9, "FF": 48, "net_gain": {"value": 6.0, "low": 1.0, "high": 11.0, "n": 100}}
    assert contract.transitions_summary(trans) == "TT 40 TF 3 FT 9 FF 48, net +6"
    shown, curves = summarize_curves({"results": {"t": {"m_vis,none": est, "transitions,none": trans, "alias": "t"}}}, "results")
    assert shown["results"]["t"] == {"m_vis,none": "0.42 [0.33, 0.51] (n=100)",
                                     "transitions,none": "TT 40 TF 3 FT 9 FF 48, net +6", "alias": "t"}
    assert curves == {}
