"""Small lmms-eval tasks written into a temp folder, for end-to-end runs of the real `lmms_eval` CLI.

`write_counting_task(root)` makes a two-item counting task reading only local files. Each doc also
carries a source image (`contract.SOURCE_IMAGE_KEY`) so the same task serves probe runs; its metrics
follow `frankenstein_tasks.contract`: `exact_match` for plain answers, and per-layer curves
(`changed` for swap/ablation answers, `visual_attention` for attention values) for probe results.

`write_choice_task(root, pairs)` makes a multiple-choice counting task (lmms-eval's own
`output_type: multiple_choice`, scored by log-likelihood) from a frank_vision counting pair folder;
`write_multi_round_task(root)` a task of a request type the frankenstein model does not serve.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

COUNTS = [(2, 4), (3, 1)]  # (target, source) dots per item


def dots(n: int, color: str = "red", size=(112, 112)) -> Image.Image:
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for k in range(n):
        draw.ellipse([5 + 20 * k, 40, 20 + 20 * k, 60], fill=color)
    return img


UTILS = '''
from PIL import Image
from frankenstein_tasks import contract

def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]

def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]

def process_results(doc, results):
    probe = contract.decode(results[0])
    if probe is None:
        return {"exact_match": float(results[0].strip() == doc["answer"])}
    if probe.values is not None:
        return {"visual_attention": contract.per_layer(probe.value_by_layer())}
    return {"changed": contract.per_layer(contract.changed_by_layer(probe))}

aggregate_curve = contract.aggregate_curve
'''


def write_counting_task(root: Path, name: str = "tiny_count") -> Path:
    """Write data and task files under root; returns the folder to pass as --include_path."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (target, source) in enumerate(COUNTS):
        dots(target).save(data / f"{i}_target.png")
        dots(source, "blue").save(data / f"{i}_source.png")
        rows.append({
            "id": i,
            "image": str(data / f"{i}_target.png"),
            "source_image": str(data / f"{i}_source.png"),
            "question": "How many circles are in the image?",
            "answer": str(target),
        })
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data / 'test.jsonl'}
        test_split: test
        output_type: generate_until
        doc_to_visual: !function {name}_utils.doc_to_visual
        doc_to_text: !function {name}_utils.doc_to_text
        doc_to_target: answer
        generation_kwargs:
          max_new_tokens: 4
          do_sample: false
        process_results: !function {name}_utils.process_results
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
          - metric: changed
            aggregation: !function {name}_utils.aggregate_curve
            higher_is_better: false
          - metric: visual_attention
            aggregation: !function {name}_utils.aggregate_curve
            higher_is_better: true
        """))
    (tasks / f"{name}_utils.py").write_text(UTILS)
    return tasks


def read_run(out: Path, task: str) -> tuple[dict, list[dict]]:
    """(results of `task`, its logged samples) from an lmms-eval --output_path folder."""
    results = [json.loads(p.read_text()) for p in out.rglob("*_results.json")]
    assert len(results) == 1, f"expected one results file under {out}"
    samples = [json.loads(line) for p in out.rglob(f"*_samples_{task}.jsonl") for line in p.read_text().splitlines()]
    return results[0]["results"][task], samples


CHOICE_UTILS = """
from pathlib import Path
from PIL import Image

def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]
"""


def write_choice_task(root: Path, pairs: Path, n: int, name: str = "tiny_choice") -> tuple[Path, list[dict]]:
    """A multiple-choice counting task over the first `n` items of a counting pair folder (target
    images): choices "1".."9" right after the prompt (no delimiter); returns (--include_path, rows)."""
    data = root / "choice_data"
    data.mkdir(parents=True, exist_ok=True)
    rows = []
    for line in (pairs / "data.jsonl").read_text().splitlines()[:n]:
        item = json.loads(line)
        count = item["meta"]["target_answer"]
        rows.append({"id": item["id"], "image": str(pairs / item["target_image"]), "question": item["prompt"],
                     "choices": [str(k) for k in range(1, 10)], "answer": count - 1})
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "choice_tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data / 'test.jsonl'}
        test_split: test
        output_type: multiple_choice
        doc_to_visual: !function {name}_utils.doc_to_visual
        doc_to_text: "{{{{question}}}}"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: answer
        target_delimiter: ""
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
          - metric: acc_norm
            aggregation: mean
            higher_is_better: true
        """))
    (tasks / f"{name}_utils.py").write_text(CHOICE_UTILS)
    return tasks, rows


MULTI_ROUND_UTILS = """
def doc_to_visual(doc):
    return []

def doc_to_text(doc, lmms_eval_specific_kwargs=None, previous_output=None, round_idx=None, previous_round_info=None):
    return doc["question"]

def process_results(doc, results):
    return {"exact_match": 0.0}
"""


def write_multi_round_task(root: Path, name: str = "tiny_rounds") -> Path:
    """A one-item `generate_until_multi_round` task (local data); returns the --include_path folder."""
    data = root / "rounds_data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "test.jsonl").write_text(json.dumps({"id": 0, "question": "What is 2 + 3?", "answer": "5"}) + "\n")
    tasks = root / "rounds_tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data / 'test.jsonl'}
        test_split: test
        output_type: generate_until_multi_round
        doc_to_visual: !function {name}_utils.doc_to_visual
        doc_to_text: !function {name}_utils.doc_to_text
        doc_to_target: answer
        generation_kwargs:
          max_new_tokens: 4
          do_sample: false
        process_results: !function {name}_utils.process_results
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """))
    (tasks / f"{name}_utils.py").write_text(MULTI_ROUND_UTILS)
    return tasks
