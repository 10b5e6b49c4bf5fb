"""lmms-eval glue of the frank_vision_* tasks; the work lives in `frankenstein_tasks.vision`.

The YAMLs load a one-line stub (`stub.json`) because lmms-eval needs a dataset to start from;
`process_docs_<task>` replaces it with the docs of the chosen pair folder:
$FRANKENSTEIN_VISION_DATA/<task>/data.jsonl if that variable is set, else the default set generated
on first use into the cache ($FRANKENSTEIN_CACHE/vision_pairs/...). The `*_paper` tasks read the
authors' released set from $FRANKENSTEIN_VISION_DATA only (`dataset.paper_task_docs`).
"""

from __future__ import annotations

from frankenstein_tasks.contract import aggregate_curve, count_skipped  # noqa: F401  (named by the YAMLs)
from frankenstein_tasks.vision.dataset import paper_task_docs, task_docs
from frankenstein_tasks.vision.metrics import process_results, process_results_paper  # noqa: F401


def _docs(task: str):
    import datasets

    return datasets.Dataset.from_list(task_docs(task))


def process_docs_counting(dataset):
    return _docs("counting")


def process_docs_ocr(dataset):
    return _docs("ocr")


def process_docs_grounding(dataset):
    return _docs("grounding")


def process_docs_recognition(dataset):
    return _docs("recognition")


def _paper_docs(task: str):
    import datasets

    return datasets.Dataset.from_list(paper_task_docs(task))


def process_docs_counting_paper(dataset):
    return _paper_docs("counting")


def process_docs_ocr_paper(dataset):
    return _paper_docs("ocr")


def process_docs_grounding_paper(dataset):
    return _paper_docs("grounding")


def process_docs_recognition_paper(dataset):
    return _paper_docs("recognition")


def doc_to_visual(doc):
    """The target image only (the probe model reads the source from doc["source_image"])."""
    from PIL import Image

    with Image.open(doc["target_image"]) as img:
        return [img.convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['prompt']}{kwargs.get('post_prompt', '')}"


def doc_to_target(doc):
    return doc["target_answer"]
