"""lmms-eval glue of the frank_transfer tasks; the work lives in `frankenstein_tasks.transfer`."""

from __future__ import annotations

from frankenstein_tasks.contract import aggregate_curve  # noqa: F401  (named by the YAMLs)
from frankenstein_tasks.reasoning import PAPER_SUBSET
from frankenstein_tasks.transfer import (  # noqa: F401
    aggregate_accuracy_a,
    aggregate_accuracy_b,
    aggregate_m_rea,
    aggregate_m_v2r,
    aggregate_m_vis,
    aggregate_transitions,
    doc_to_target,
    doc_to_text,
    doc_to_text_paper,
    doc_to_visual,
    doc_to_visual_paper,
    prepare_math500_docs,
    prepare_mathvista_docs,
    score,
)


def process_docs_general_vqa(dataset):
    return prepare_mathvista_docs(dataset, "frank_general_vqa")


def process_docs_general_vqa_paper(dataset):
    return prepare_mathvista_docs(dataset, "frank_general_vqa", "frank_general_vqa_paper", PAPER_SUBSET, paper=True)


def process_docs_math_vqa(dataset):
    return prepare_mathvista_docs(dataset, "frank_math_vqa")


def process_docs_math_vqa_paper(dataset):
    return prepare_mathvista_docs(dataset, "frank_math_vqa", "frank_math_vqa_paper", PAPER_SUBSET, paper=True)


def process_docs_attention_shift(dataset):
    return prepare_mathvista_docs(dataset, "frank_attention_shift")


def process_docs_attention_shift_paper(dataset):
    return prepare_mathvista_docs(dataset, "frank_attention_shift", "frank_attention_shift_paper", PAPER_SUBSET)


def process_docs_math500_rea(dataset):
    return prepare_math500_docs(dataset, "frank_math500_rea")


def process_docs_math500_rea_paper(dataset):
    return prepare_math500_docs(dataset, "frank_math500_rea_paper", PAPER_SUBSET, paper=True)


def process_results_general_vqa(doc, results):
    return score("frank_general_vqa", doc, results)


def process_results_math_vqa(doc, results):
    return score("frank_math_vqa", doc, results)


def process_results_math500_rea(doc, results):
    return score("frank_math500_rea", doc, results)


def process_results_attention_shift(doc, results):
    return score("frank_attention_shift", doc, results)


def process_results_general_vqa_paper(doc, results):
    return score("frank_general_vqa", doc, results, paper=True)


def process_results_math_vqa_paper(doc, results):
    return score("frank_math_vqa", doc, results, paper=True)


def process_results_math500_rea_paper(doc, results):
    return score("frank_math500_rea", doc, results, paper=True)
