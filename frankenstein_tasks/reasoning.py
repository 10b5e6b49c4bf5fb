"""The reasoning benchmarks of zero-ablation localisation (METHOD.md 1b): docs and per-sample metrics.

`frank_gsm8k` (openai/gsm8k, config main, split test) and `frank_math500` (HuggingFaceH4/MATH-500,
split test) load their data as lmms-eval's own tasks do (the YAML names the hub dataset). This module
turns those rows into docs, builds their prompt (`doc_to_text`, also frank_math500_rea's) and scores
responses; the task folder `tasks/frank_reasoning/` is glue.

Docs (`prepare_docs`): the chosen subset of the rows (`subset_from_env`), each with
    problem               the question text
    gold                  the gold answer (GSM8K: after '####'; MATH-500: `answer`)
    reference_answer      the text teacher-forced by scoring=logprob (GSM8K: the number; MATH-500:
                          \\boxed{answer}); `contract.REFERENCE_ANSWER_KEY`
    uses_prompt_style     True: the `frankenstein` model adds its prompt style's system prompt
    verbatim_text         (the `*_paper` tasks) True: the model sends the text unstripped
    source_index          the row's index in the full split (so the samples log names the item)

Metrics (`process_results`), one response per doc:
    plain answer          accuracy
    zero_ablation         accuracy (unablated), accuracy_by_layer and accuracy_drop (curves;
                          drop = unablated minus ablated, per item), skipped
    zero_ablation,        answer_logprob (unablated, summed over the reference's tokens),
    scoring=logprob       answer_logprob_by_layer, answer_logprob_drop and
                          answer_logprob_per_token_drop (curves)

The subset: every item by default; `FRANKENSTEIN_SUBSET=K:SEED` (or `FRANKENSTEIN_SUBSET_<TASK>`,
e.g. `FRANKENSTEIN_SUBSET_FRANK_GSM8K=100:123`) draws the paper's way (`frankenstein_tasks.subset`),
and the `*_paper` tasks are fixed to the paper's 100 items with seed 123 and ask with the authors'
prompt (`doc_to_text_paper`: their prefix and the problem exactly as stored).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Callable, Mapping

from frankenstein_tasks import contract
from frankenstein_tasks.grading import grade, gsm8k_gold, math500_gold
from frankenstein_tasks.paper_protocol import reasoning_user_text
from frankenstein_tasks.prompt_styles import user_text
from frankenstein_tasks.subset import PAPER_SEED, PAPER_SIZE, SubsetSpec, parse_subset
from surgery.errors import FrankensteinError

SUBSET_ENV = "FRANKENSTEIN_SUBSET"
PAPER_SUBSET = SubsetSpec(PAPER_SIZE, PAPER_SEED)


class Benchmark:
    """How one hub dataset's rows become reasoning docs."""

    def __init__(self, dataset: str, fields: tuple[str, ...], problem: str,
                 gold: Callable[[Mapping[str, Any]], str], reference: Callable[[str], str]):
        self.dataset, self.fields, self.problem_field = dataset, fields, problem
        self.gold, self.reference = gold, reference

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        """Why the task cannot read `row` (a field it reads missing or empty, no gold answer), or None.
        Local copies of the dataset are checked with it row by row when they enter (`run.data`)."""
        missing = [f for f in self.fields if row.get(f) is None or not str(row[f]).strip()]
        if missing:
            return (f"no {', '.join(repr(f) for f in missing)} field{'s' if len(missing) > 1 else ''}; "
                    f"{self.dataset} rows need {', '.join(self.fields)}")
        try:
            self.doc(row, 0)
        except FrankensteinError as e:
            return str(e)
        return None

    def doc(self, row: Mapping[str, Any], index: int, paper: bool = False) -> dict[str, Any]:
        gold = self.gold(row)
        return {
            "problem": str(row[self.problem_field]),
            "gold": gold,
            contract.REFERENCE_ANSWER_KEY: self.reference(gold),
            contract.PROMPT_STYLE_KEY: True,
            **({contract.VERBATIM_TEXT_KEY: True} if paper else {}),
            "source_index": index,
        }


BENCHMARKS: dict[str, Benchmark] = {
    "gsm8k": Benchmark(
        "openai/gsm8k", ("question", "answer"), "question",
        gold=lambda row: gsm8k_gold(row["answer"]), reference=lambda gold: gold,
    ),
    "math500": Benchmark(
        "HuggingFaceH4/MATH-500", ("problem", "answer"), "problem",
        gold=math500_gold, reference=lambda gold: f"\\boxed{{{gold}}}",
    ),
}


def subset_from_env(task: str) -> SubsetSpec:
    """`FRANKENSTEIN_SUBSET_<TASK>` if set, else `FRANKENSTEIN_SUBSET`, else every item."""
    for name in (f"{SUBSET_ENV}_{task.upper()}", SUBSET_ENV):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return parse_subset(value)
            except FrankensteinError as e:
                raise FrankensteinError(f"{name}: {e}") from None
    return SubsetSpec()


def check_fields(dataset: Any, fields: Iterable[str], task: str, source: str) -> None:
    """A one-line error naming the task and the fields `dataset` lacks (a wrong dataset, most likely)."""
    missing = [f for f in fields if f not in dataset.column_names]
    if missing:
        raise FrankensteinError(
            f"{task}: the {source} data has no {', '.join(repr(f) for f in missing)} field{'s' if len(missing) > 1 else ''} "
            f"(columns: {', '.join(dataset.column_names)}); is it the right dataset?"
        )


def prepare_docs(dataset: Any, benchmark: str, task: str, subset: SubsetSpec | None = None, *, paper: bool = False) -> Any:
    """The task's docs: the subset of `dataset` (a datasets.Dataset) mapped to reasoning docs
    (`paper`: marked to be sent verbatim, as the authors' code sends its prompts)."""
    import datasets

    bench = BENCHMARKS[benchmark]
    check_fields(dataset, bench.fields, task, bench.dataset)
    spec = subset or subset_from_env(task)
    chosen = spec.indices(len(dataset))
    rows = dataset.select(chosen)
    return datasets.Dataset.from_list([bench.doc(row, index, paper) for row, index in zip(rows, chosen)])


def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
    """The method's reasoning prompt (METHOD.md 1b): the prompt style's user text around the problem."""
    style = (lmms_eval_specific_kwargs or {}).get("prompt_style", "base")
    return user_text(style, str(doc["problem"]))


def doc_to_text_paper(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
    """The `*_paper` tasks' prompt: the authors' QUERY_PROMPT_PREFIX + the problem as stored (not stripped)."""
    return reasoning_user_text(str(doc["problem"]))


def process_results(doc: Mapping[str, Any], results: list[str]) -> dict[str, Any]:
    response = results[0] if results and isinstance(results[0], str) else ""
    result = contract.decode(response)
    if result is None:
        return {"accuracy": float(grade(response, doc["gold"]).correct)}
    if result.error is not None:
        return {"skipped": 1.0}
    if result.options.get("scoring") == "logprob":
        return _logprob_metrics(result)
    return _ablation_metrics(doc, result)


def _ablation_metrics(doc: Mapping[str, Any], result: contract.ProbeResult) -> dict[str, Any]:
    base = float(grade(result.baseline, doc["gold"]).correct)
    by_layer = {layer: float(grade(answer, doc["gold"]).correct) for layer, answer in result.answer_by_layer().items()}
    return {
        "accuracy": base,
        "accuracy_by_layer": contract.per_layer(by_layer),
        "accuracy_drop": contract.per_layer({layer: base - v for layer, v in by_layer.items()}),
        "skipped": 0.0,
    }


def _logprob_metrics(result: contract.ProbeResult) -> dict[str, Any]:
    base, n = result.baseline_value, result.answer_tokens
    by_layer = result.value_by_layer()
    return {
        "answer_logprob": base,
        "answer_logprob_by_layer": contract.per_layer(by_layer),
        "answer_logprob_drop": contract.per_layer({layer: base - v for layer, v in by_layer.items()}),
        "answer_logprob_per_token_drop": contract.per_layer({layer: (base - v) / n for layer, v in by_layer.items()}),
        "skipped": 0.0,
    }
