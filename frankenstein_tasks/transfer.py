"""The transferability benchmarks of Frankenstein splicing (METHOD.md 3) and the attention-shift items (5).

Each benchmark asks every item under one or two *conditions* and reads its metric off the pair of
outcomes per item (`analysis.transitions`):

    task                 data                                   A (condition)      B (condition)
    frank_general_vqa    MathVista testmini, general-vqa        the real image     an all-black image, same size
    frank_math_vqa       MathVista testmini, math-targeted-vqa  the real image     black image + a text description
    frank_math500_rea    MATH-500 test                          the question       -
    frank_attention_shift  the frank_math_vqa items             the real image     -

    M_vis = right under A and wrong under B (general_vqa); M_v2r = right under both (math_vqa);
    M_rea = accuracy (math500_rea).

The data load as lmms-eval's own tasks load them (the YAML names `AI4Math/MathVista` or
`HuggingFaceH4/MATH-500`). `prepare_mathvista_docs` keeps the items of the task's category, draws
the subset over them (`FRANKENSTEIN_SUBSET[_<TASK>]`, the `*_paper` tasks: 100 items, seed 123;
METHOD.md 1b), and expands each item into one doc per condition: the original row plus

    item_id       the MathVista pid (MATH-500: unique_id), shared by the item's docs
    condition     "A" or "B"
    description   condition B of frank_math_vqa: the image's description, else ""
    source_index  the row's index in the full split
    image         (MathVista's file name) under B marked as shown black, so that the samples log's
                  `input_media` (which lmms-eval takes from it) does not claim the real image

Descriptions come from `llm_endpoint.descriptions_for`: a JSON file (`FRANKENSTEIN_DESCRIPTIONS`) or
an OpenAI-compatible endpoint, cached per item; only frank_math_vqa needs them.

Per sample (`score`), every paired metric gets the same *outcome record*, which lmms-eval also
writes into the samples log (one line per item and condition, with the model's reply)::

    {"item": "12", "condition": "A", "correct": true, "answer": "B", "graded_by": "rule"}

Grading is the shared rule (`grading.grade_mathvista`, `grading.grade`); with
`FRANKENSTEIN_JUDGE=1` the endpoint's judge decides instead (cached like descriptions). The
aggregations pair each item's A and B records (`analysis.outcomes.pair_conditions`, which the
transfer table uses on samples logs too) and hand the outcomes to `transition_stats`; items lacking
one condition (e.g. cut by `--limit`) are left out and counted in a warning. Estimates go
into the results JSON as `{"value", "low", "high", "n"}` (95% percentile-bootstrap interval over
items; null when undefined), transitions as `{"n", "TT", "TF", "FT", "FF", "net_gain",
"side_effect_rate", "lift_rate"}`; records, estimates and transitions are `analysis.schema`'s models.

The `*_paper` tasks ask the authors' way (`frankenstein_tasks.paper_protocol`): MathVista's `question`
field with "A. option" lines after their QUERY_PROMPT_PREFIX, the described condition in their
"Image Description:" / "Question:" layout (`doc_to_text_paper`); images capped at 1280x720 pixels
and the black image capped alike (`doc_to_visual_paper`); descriptions asked with their describer
prompts, and with the judge on, their judge grading the extracted answer (`score_paper`); 8192 new
tokens.

With `--model frankenstein --model_args ...,probe=attention`, frank_attention_shift also reports
`visual_attention`, the per-layer attention mass of generated tokens on visual tokens (a curve); the
probe's unmodified answer is graded as usual. `analysis.attention_shift` compares two such runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from analysis.outcomes import BLACK, REAL, pair_conditions
from analysis.schema import TRANSITION_STATISTICS, IntervalEstimate, OutcomeRecord, TransitionCounts
from analysis.transitions import Estimate, transition_stats
from frankenstein_tasks import contract
from frankenstein_tasks.grading import grade, grade_mathvista, option_lines
from frankenstein_tasks.hub_cache import quiet_datasets
from frankenstein_tasks.reasoning import doc_to_text as reasoning_doc_to_text
from frankenstein_tasks.reasoning import prepare_docs as prepare_reasoning_docs
from frankenstein_tasks.reasoning import check_fields, subset_from_env
from frankenstein_tasks.subset import SubsetSpec
from surgery.errors import FrankensteinError

MATHVISTA = "AI4Math/MathVista"
MATHVISTA_FIELDS = ("pid", "question", "decoded_image", "choices", "answer", "question_type", "metadata")
JUDGE_ENV = "FRANKENSTEIN_JUDGE"
BLACK_RGB = (0, 0, 0)


@dataclass(frozen=True)
class TransferTask:
    """One benchmark: where its items come from, its conditions, and the metrics its records feed."""

    name: str
    category: str | None  # MathVista metadata.category; None: MATH-500
    conditions: tuple[str, ...]
    described: bool  # condition B shows a description of the image
    record_metrics: tuple[str, ...]  # metrics whose per-sample value is the outcome record
    attention_curve: bool = False  # reports an attention probe's per-layer values (visual_attention)


TASKS: dict[str, TransferTask] = {
    t.name: t
    for t in (
        TransferTask("frank_general_vqa", "general-vqa", (REAL, BLACK), False, ("m_vis", "accuracy_a", "accuracy_b", "transitions")),
        TransferTask("frank_math_vqa", "math-targeted-vqa", (REAL, BLACK), True, ("m_v2r", "accuracy_a", "accuracy_b", "transitions")),
        TransferTask("frank_math500_rea", None, (REAL,), False, ("m_rea", "accuracy_a")),
        TransferTask("frank_attention_shift", "math-targeted-vqa", (REAL,), False, ("accuracy_a",), attention_curve=True),
    )
}


# ------------------------------------------------------------------------------------------ docs


def mathvista_row_problem(row: Mapping[str, Any]) -> str | None:
    """Why the MathVista tasks cannot read `row`, or None: the fields they read (`choices` may be
    null for a free-form item), a category in `metadata`, choices for a multiple-choice item.
    Local copies of the dataset are checked with it row by row when they enter (`run.data`)."""
    missing = [f for f in MATHVISTA_FIELDS if f not in row or (f != "choices" and row[f] is None)]
    if missing:
        return (f"no {', '.join(repr(f) for f in missing)} field{'s' if len(missing) > 1 else ''}; "
                f"{MATHVISTA} rows need {', '.join(MATHVISTA_FIELDS)}")
    if not isinstance(row["metadata"], Mapping) or not row["metadata"].get("category"):
        return "metadata has no 'category' (general-vqa or math-targeted-vqa)"
    if row["question_type"] == "multi_choice" and not row["choices"]:
        return "question_type is multi_choice but choices is empty"
    return None


def prepare_mathvista_docs(dataset: Any, task: str, name: str | None = None, subset: SubsetSpec | None = None,
                           *, paper: bool = False) -> Any:
    """Docs of a MathVista task: the category's items (subset), one doc per condition.

    `task` is a key of TASKS; `name` the lmms-eval task name (e.g. its `_paper` variant) for
    messages and the subset variable; `paper`: descriptions asked with the authors' describer, and
    the text sent verbatim.
    """
    spec, name = TASKS[task], name or task
    check_fields(dataset, MATHVISTA_FIELDS, name, MATHVISTA)
    in_category = [i for i, meta in enumerate(dataset["metadata"]) if (meta or {}).get("category") == spec.category]
    if not in_category:
        raise FrankensteinError(f"{name}: the {MATHVISTA} data has no item of category {spec.category!r}; is it the right dataset?")
    chosen = [in_category[j] for j in (subset or subset_from_env(name)).indices(len(in_category))]
    rows = dataset.select(chosen)
    items = [str(pid) for pid in rows["pid"]]
    _check_unique(items, name)
    descriptions = _describe(rows, items, name, paper) if spec.described else {}
    conditions = spec.conditions

    def per_doc(values):  # one entry per doc: items in order, each item's conditions together
        return [v for v in values for _ in conditions]

    columns = {
        "item_id": per_doc(items),
        "condition": list(conditions) * len(items),
        "description": [descriptions.get(item, "") if c == BLACK else "" for item in items for c in conditions],
        "source_index": per_doc(chosen),
        contract.PROMPT_STYLE_KEY: per_doc([True] * len(items)),
    }
    if paper:  # the authors' text is sent as it is
        columns[contract.VERBATIM_TEXT_KEY] = per_doc([True] * len(items))
    if "image" in dataset.column_names:  # the file name, which lmms-eval logs as the sample's input_media
        columns["image"] = [p if c == REAL else f"{p} (shown as a black image of its size)" for p in rows["image"] for c in conditions]
    with quiet_datasets():  # per-step progress bars are noise for a few hundred rows
        docs = dataset.select(per_doc(chosen))
        if "image" in columns:
            docs = docs.remove_columns("image")
        for column, values in columns.items():
            docs = docs.add_column(column, values)
    return docs


def prepare_math500_docs(dataset: Any, name: str, subset: SubsetSpec | None = None, *, paper: bool = False) -> Any:
    """Docs of frank_math500_rea: the reasoning task's docs plus item_id (unique_id) and condition A."""
    docs = prepare_reasoning_docs(dataset, "math500", name, subset, paper=paper)
    chosen = docs["source_index"] if len(docs) else []  # (the docs of an empty split have no columns)
    if "unique_id" in dataset.column_names:
        items = [str(u) for u in dataset.select(chosen)["unique_id"]]
    else:
        items = [str(i) for i in chosen]
    _check_unique(items, name)
    docs = docs.add_column("item_id", items)
    return docs.add_column("condition", [REAL] * len(items))


def _check_unique(items: list[str], name: str) -> None:
    if len(set(items)) != len(items):
        dup = next(i for i in items if items.count(i) > 1)
        raise FrankensteinError(f"{name}: item id {dup!r} occurs more than once; items must have unique ids")


def _describe(rows: Any, items: list[str], name: str, paper: bool) -> dict[str, str]:
    from frankenstein_tasks.llm_endpoint import DESCRIPTIONS_ENV, descriptions_for
    from frankenstein_tasks.paper_protocol import DESCRIBER

    images = dict(zip(items, rows["decoded_image"]))  # the original images: the authors describe those too
    try:
        return descriptions_for(images, recipe=DESCRIBER if paper else None)
    except FrankensteinError as e:
        raise FrankensteinError(f"{name} (descriptions for condition B): {e} (e.g. {DESCRIPTIONS_ENV}=FILE)") from None


# -------------------------------------------------------------------------------- prompts, images


def doc_to_visual(doc: Mapping[str, Any]) -> list:
    """Condition A: the real image; B: an all-black image of the same size; MATH-500: none."""
    from PIL import Image

    image = doc.get("decoded_image")
    if image is None:
        return []
    if doc.get("condition") == BLACK:
        return [Image.new("RGB", image.size, BLACK_RGB)]
    return [image.convert("RGB")]


def problem_text(doc: Mapping[str, Any]) -> str:
    """What a model is asked: MathVista's own `query` (its hint, question and choices, as lmms-eval's
    mathvista tasks send it), after the image's description under condition B; MATH-500: the problem."""
    if "problem" in doc:  # MATH-500
        return str(doc["problem"])
    parts = []
    if doc.get("description"):
        parts.append(f"Description of the image:\n{doc['description'].strip()}")
    parts.append(str(doc.get("query") or _question_with_choices(doc)).strip())
    return "\n\n".join(parts)


def _question_with_choices(doc: Mapping[str, Any]) -> str:
    """A query for rows without one: the question, and the options of a multiple-choice item."""
    question = str(doc["question"]).strip()
    if doc.get("question_type") == "multi_choice" and doc.get("choices"):
        options = "\n".join(option_lines(doc["choices"]))
        question += f"\nChoices:\n{options}"
    return question


def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
    """MATH-500: the method's reasoning prompt (METHOD.md 1b, the style's user text); MathVista: its query."""
    if "problem" in doc:
        return reasoning_doc_to_text(doc, lmms_eval_specific_kwargs)
    return problem_text(doc)


def doc_to_text_paper(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
    """The authors' user turn: their prefix and MATH-500's problem, or MathVista's question (choices
    as "A. option" lines) alone or in their described layout under frank_math_vqa's condition B."""
    from frankenstein_tasks.paper_protocol import reasoning_user_text, transfer_user_text

    if "problem" in doc:
        return reasoning_user_text(str(doc["problem"]))
    return transfer_user_text(_paper_question(doc), doc.get("description") or None)


def _paper_question(doc: Mapping[str, Any]) -> str:
    from frankenstein_tasks.paper_protocol import mathvista_question

    return mathvista_question(str(doc["question"]), doc.get("question_type"), doc.get("choices"))


def doc_to_visual_paper(doc: Mapping[str, Any]) -> list:
    """The authors' images: the real image capped at 1280x720 pixels; under B a black image made at the
    original size and capped the same way (`paper_protocol.IMAGE_CAP`); MATH-500: none."""
    from frankenstein_tasks.paper_protocol import IMAGE_CAP

    image = doc.get("decoded_image")
    if image is None:
        return []
    if doc.get("condition") == BLACK:
        return [IMAGE_CAP.black(image)]
    return [IMAGE_CAP.apply(image.convert("RGB"))]


def doc_to_target(doc: Mapping[str, Any]) -> str:
    return str(doc["gold"] if "gold" in doc else doc["answer"])


# ---------------------------------------------------------------------------------- per sample


def score(task: str, doc: Mapping[str, Any], results: list, *, paper: bool = False) -> dict[str, Any]:
    """Per-sample metrics: the outcome record under each of the task's record metrics (+ a curve).

    `paper`: with the judge on, the authors' judge grades the extracted answer (`_paper_judge`).
    """
    response = results[0] if results and isinstance(results[0], str) else ""
    probe = contract.decode(response)
    answer_text = probe.baseline if probe is not None else response
    if not judge_enabled():
        correct, answer, graded_by = _rule(doc, answer_text)
    else:
        correct, answer, graded_by = (_paper_judge if paper else _judge)(doc, answer_text)
    record = OutcomeRecord(item=str(doc["item_id"]), condition=doc["condition"], correct=bool(correct),
                           answer=answer, graded_by=graded_by).model_dump()
    metrics: dict[str, Any] = {name: record for name in TASKS[task].record_metrics}
    if TASKS[task].attention_curve and probe is not None and probe.values is not None:
        metrics["visual_attention"] = contract.per_layer(probe.value_by_layer())
    return metrics


def judge_enabled() -> bool:
    return os.environ.get(JUDGE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _rule(doc: Mapping[str, Any], output: str) -> tuple[bool, str | None, str]:
    result = grade(output, doc["gold"]) if "gold" in doc else grade_mathvista(output, doc)
    return result.correct, result.answer, "rule"


def _judge(doc: Mapping[str, Any], output: str) -> tuple[bool, str | None, str]:
    from frankenstein_tasks.llm_endpoint import default_endpoint

    choices = doc.get("choices") if doc.get("question_type") == "multi_choice" else None
    question = str(doc.get("problem") or doc.get("question") or "")
    verdict = default_endpoint().judge(str(doc["item_id"]), question=question, gold=doc_to_target(doc),
                                       output=output, choices=choices)
    return verdict.correct, None, "judge"


def _paper_judge(doc: Mapping[str, Any], output: str) -> tuple[bool, str | None, str]:
    """The authors' judge: their prompts, the question as they ask it, the choices as JSON, and the
    answer the rules extract (their grader never sees the whole output)."""
    from frankenstein_tasks.llm_endpoint import default_endpoint
    from frankenstein_tasks.paper_protocol import JUDGE

    _, answer, _ = _rule(doc, output)
    question = str(doc["problem"]) if "problem" in doc else _paper_question(doc)
    verdict = default_endpoint().judge(str(doc["item_id"]), question=question, gold=doc_to_target(doc),
                                       output=answer or "", choices=doc.get("choices"), recipe=JUDGE)
    return verdict.correct, answer, "judge"


# --------------------------------------------------------------------------------- aggregation


def estimate_dict(estimate: Estimate, n: int) -> dict[str, Any]:
    """An estimate as the results JSON holds it: value, 95% interval, and the number of items."""
    return IntervalEstimate(**estimate.as_dict(), n=int(n)).model_dump()


def _stats(records: Iterable[Mapping[str, Any]]):
    _, a, b = pair_conditions(records)
    return transition_stats(a, b)


def aggregate_m_vis(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    t = _stats(records)
    return estimate_dict(t.right_before_only, t.n)


def aggregate_m_v2r(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    t = _stats(records)
    return estimate_dict(t.right_both, t.n)


def aggregate_accuracy_a(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    t = _stats(records)
    return estimate_dict(t.accuracy_before, t.n)


aggregate_m_rea = aggregate_accuracy_a  # M_rea is the accuracy of the one condition


def aggregate_accuracy_b(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    t = _stats(records)
    return estimate_dict(t.accuracy_after, t.n)


def aggregate_transitions(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    t = _stats(records)
    return TransitionCounts(
        n=t.n, TT=t.tt, TF=t.tf, FT=t.ft, FF=t.ff,
        **{name: IntervalEstimate(**getattr(t, name).as_dict(), n=t.n) for name in TRANSITION_STATISTICS},
    ).model_dump()
