"""lmms-eval glue of the frank_reasoning tasks; the work lives in `frankenstein_tasks.reasoning`."""

from __future__ import annotations

from frankenstein_tasks.contract import aggregate_curve, count_skipped, pool_across_tasks  # noqa: F401  (named by the YAMLs)
from frankenstein_tasks.reasoning import PAPER_SUBSET, doc_to_text, doc_to_text_paper, prepare_docs, process_results  # noqa: F401


def process_docs_gsm8k(dataset):
    return prepare_docs(dataset, "gsm8k", "frank_gsm8k")


def process_docs_gsm8k_paper(dataset):
    return prepare_docs(dataset, "gsm8k", "frank_gsm8k_paper", PAPER_SUBSET, paper=True)


def process_docs_math500(dataset):
    return prepare_docs(dataset, "math500", "frank_math500")


def process_docs_math500_paper(dataset):
    return prepare_docs(dataset, "math500", "frank_math500_paper", PAPER_SUBSET, paper=True)


def doc_to_visual(doc):
    return []  # text only


def doc_to_target(doc):
    return doc["gold"]
