"""Held-out evaluation sets for the organism, in the schemas of the hub datasets the tasks read.

    gsm8k/test.jsonl            openai/gsm8k (main, test): question, answer ("<steps>\\n#### N")
    math500/test.jsonl          HuggingFaceH4/MATH-500: problem, solution, answer, subject, level, unique_id
    mathvista/testmini.parquet  AI4Math/MathVista testmini: pid, question, image, decoded_image, choices,
                                unit, precision, answer, question_type, answer_type, metadata, query;
                                counting items are category "general-vqa", count-then-compute items
                                "math-targeted-vqa" (images also under mathvista/images/)
    mathvista/descriptions.json pid -> a text description of the image ("The image shows 5 red stars
                                on a white background."), for frank_math_vqa's condition B, written
                                from the drawing (the paper asks an LLM; here the truth is known)
    pairs/<task>/               frank_vision pair folders (the pair generator's own layout)

so the project's lmms-eval tasks read them from local files with their normal loading code. The items
are the organism's "eval" and "eval_math" splits (`data.items`): no image and no word problem of
them is ever trained on. The MathVista `query` is the question itself, the text the organism was
trained to answer (real MathVista queries prepend a hint the organism has never seen).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from surgery.atomic import atomic_dir

from frankenstein_tasks.hub_cache import quiet_datasets
from frankenstein_tasks.vision.pairs import plural

from .data import Item, items, pair_seed

PAIR_TASKS = ("counting", "recognition")


def gsm8k_record(item: Item) -> dict:
    return {"question": item.meta["problem"], "answer": f"{item.meta['worked']}\n#### {item.answer}"}


def math500_record(item: Item, index: int) -> dict:
    return {
        "problem": item.meta["problem"],
        "solution": item.meta["solution"],
        "answer": item.answer,
        "subject": "Prealgebra",
        "level": item.meta["steps"],
        "unique_id": f"test/organism_arithmetic/{index}.json",
    }


def mathvista_record(item: Item, pid: str, image_path: str) -> dict:
    category = "general-vqa" if item.task == "counting" else "math-targeted-vqa"
    return {
        "pid": pid,
        "question": item.prompt,
        "image": image_path,
        "choices": None,
        "unit": None,
        "precision": None,
        "answer": item.answer,
        "question_type": "free_form",
        "answer_type": "integer",
        "metadata": {
            "category": category,
            "context": "synthetic scene",
            "grade": "elementary school",
            "img_height": item.image.height,
            "img_width": item.image.width,
            "language": "english",
            "skills": ["numeric commonsense"] if category == "general-vqa" else ["arithmetic reasoning", "numeric commonsense"],
            "source": "frankenstein-organism",
            "split": "testmini",
            "task": "figure question answering" if category == "general-vqa" else "math word problem",
        },
        "query": item.prompt,
    }


def describe(item: Item) -> str:
    """What a counting image shows, from its drawing's record."""
    n, color, kind = item.meta["count"], item.meta["color"], item.meta["kind"]
    return f"The image shows {n} {color} {kind if n == 1 else plural(kind)} on a white background."


def eval_items(n: int, seed: int, size: int) -> dict[str, list[Item]]:
    """The held-out items behind every set: name -> items (what `write_eval_sets` writes)."""
    return {
        "gsm8k": items("arithmetic", n, split="eval", seed=seed, size=size),
        "math500": items("arithmetic", n, split="eval_math", seed=seed, size=size),
        "general_vqa": items("counting", n, split="eval", seed=seed, size=size),
        "math_vqa": items("count_compute", n, split="eval_math", seed=seed, size=size),
        "recognition": items("recognition", n, split="eval", seed=seed, size=size),
    }


def write_eval_sets(out: str | os.PathLike, n: int, seed: int, *, size: int = 112, overwrite: bool = False) -> dict[str, Path]:
    """Write every held-out set (n items each; the pair folders n pairs) under `out`, atomically."""
    from frankenstein_tasks.vision.pairs import write_pairs

    sets = eval_items(n, seed, size)
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        _write_jsonl(tmp / "gsm8k" / "test.jsonl", [gsm8k_record(it) for it in sets["gsm8k"]])
        _write_jsonl(tmp / "math500" / "test.jsonl", [math500_record(it, i) for i, it in enumerate(sets["math500"])])
        _write_mathvista(tmp / "mathvista", sets["general_vqa"] + sets["math_vqa"])
        for task in PAIR_TASKS:
            write_pairs(task, tmp / "pairs" / task, n=n, seed=pair_seed("eval", seed), size=size, progress=False)
    written = {name: out / name for name in ("gsm8k", "math500", "mathvista", "pairs")}
    return {**written, "descriptions": out / "mathvista" / "descriptions.json"}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _write_mathvista(folder: Path, visual_items: list[Item]) -> None:
    import datasets

    (folder / "images").mkdir(parents=True)
    records, descriptions = [], {}
    for i, item in enumerate(visual_items, start=1):
        pid = str(i)
        image_path = f"images/{pid}.png"
        item.image.save(folder / image_path, format="PNG")
        records.append({**mathvista_record(item, pid, image_path), "decoded_image": item.image})
        descriptions[pid] = describe(item)
    (folder / "descriptions.json").write_text(json.dumps(descriptions, indent=1) + "\n")
    features = datasets.Features(
        {
            "pid": datasets.Value("string"),
            "question": datasets.Value("string"),
            "image": datasets.Value("string"),
            "decoded_image": datasets.Image(),
            "choices": datasets.Sequence(datasets.Value("string")),
            "unit": datasets.Value("string"),
            "precision": datasets.Value("float64"),
            "answer": datasets.Value("string"),
            "question_type": datasets.Value("string"),
            "answer_type": datasets.Value("string"),
            "metadata": {
                "category": datasets.Value("string"),
                "context": datasets.Value("string"),
                "grade": datasets.Value("string"),
                "img_height": datasets.Value("int64"),
                "img_width": datasets.Value("int64"),
                "language": datasets.Value("string"),
                "skills": datasets.Sequence(datasets.Value("string")),
                "source": datasets.Value("string"),
                "split": datasets.Value("string"),
                "task": datasets.Value("string"),
            },
            "query": datasets.Value("string"),
        }
    )
    with quiet_datasets():
        datasets.Dataset.from_list(records, features=features).to_parquet(str(folder / "testmini.parquet"))
