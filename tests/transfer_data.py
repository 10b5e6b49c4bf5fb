"""Local rows in the hub schemas of MathVista (testmini) and MATH-500 (test), for the frank_transfer tasks.

`cache_transfer_data(cache_dir)` writes them where `datasets.load_dataset("AI4Math/MathVista")` and
`load_dataset("HuggingFaceH4/MATH-500")` find them offline (`hub_cache.cache_dataset`), so the unchanged
tasks run on them. Images differ in size and colour per item, so a test can tell which image a model
got and that a black image has the real one's size.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

# (pid, category, question_type, choices, answer, image size, colour)
MATHVISTA_ITEMS = [
    ("1", "general-vqa", "multi_choice", ["red", "green", "blue"], "green", (56, 56), (0, 160, 0)),
    ("2", "math-targeted-vqa", "free_form", None, "12", (84, 56), (200, 0, 0)),
    ("3", "general-vqa", "free_form", None, "2", (56, 84), (0, 0, 200)),
    ("4", "math-targeted-vqa", "multi_choice", ["1.5", "2.5", "3.5", "4.5"], "2.5", (112, 56), (90, 90, 90)),
    ("5", "general-vqa", "free_form", None, "7", (70, 70), (250, 250, 0)),
]
MATH500_ITEMS = [
    ("test/algebra/1.json", "What is $2+3$?", "5"),
    ("test/algebra/2.json", "Compute $\\frac{1}{2}+\\frac{1}{4}$.", "\\frac{3}{4}"),
    ("test/number_theory/3.json", "What is the remainder of 17 divided by 5?", "2"),
]


def mathvista_features():
    import datasets

    text = datasets.Value("string")
    return datasets.Features({
        "pid": text, "question": text, "image": text, "decoded_image": datasets.Image(),
        "choices": datasets.Sequence(text), "unit": text, "precision": datasets.Value("float64"),
        "answer": text, "question_type": text, "answer_type": text,
        "metadata": {
            "category": text, "context": text, "grade": text, "img_height": datasets.Value("int64"),
            "img_width": datasets.Value("int64"), "language": text, "skills": datasets.Sequence(text),
            "source": text, "split": text, "task": text,
        },
        "query": text,
    })


def mathvista_query(question: str, qtype: str, choices: list | None) -> str:
    """A query as MathVista writes them: a hint, the question, and the options of a multiple-choice item."""
    if qtype == "multi_choice":
        options = "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))
        hint = "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
        return f"{hint}\nQuestion: {question}\nChoices:\n{options}"
    hint = "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end."
    return f"{hint}\nQuestion: {question}"


def mathvista_rows() -> list[dict]:
    rows = []
    for pid, category, qtype, choices, answer, size, colour in MATHVISTA_ITEMS:
        question = f"Question {pid}: what is shown?"
        rows.append({
            "pid": pid, "question": question, "image": f"images/{pid}.jpg",
            "decoded_image": Image.new("RGB", size, colour), "choices": choices, "unit": None,
            "precision": None, "answer": answer, "question_type": qtype,
            "answer_type": "text" if qtype == "multi_choice" else "integer",
            "metadata": {"category": category, "context": "synthetic scene", "grade": "daily life",
                         "img_height": size[1], "img_width": size[0], "language": "english",
                         "skills": ["arithmetic reasoning"], "source": "test", "split": "testmini",
                         "task": "figure question answering"},
            "query": mathvista_query(question, qtype, choices),
        })
    return rows


def math500_rows() -> list[dict]:
    return [{"problem": p, "solution": f"... \\boxed{{{a}}}", "answer": a, "subject": "Algebra", "level": 1,
             "unique_id": u} for u, p, a in MATH500_ITEMS]


def items_of(category: str) -> list[str]:
    return [pid for pid, cat, *_ in MATHVISTA_ITEMS if cat == category]


def cache_transfer_data(cache_dir: Path) -> Path:
    """Both datasets as offline cache entries under `cache_dir` (use it as HF_DATASETS_CACHE)."""
    from frankenstein_tasks.hub_cache import cache_dataset

    cache_dataset("AI4Math/MathVista", None, {"testmini": mathvista_rows()}, cache_dir=cache_dir, features=mathvista_features())
    cache_dataset("HuggingFaceH4/MATH-500", None, {"test": math500_rows()}, cache_dir=cache_dir)
    return cache_dir
