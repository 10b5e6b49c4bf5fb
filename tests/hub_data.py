"""Small local copies of the hub datasets the tasks load, in the datasets' own schemas.

`hub_env(root, gsm8k=..., math500=...)` writes them as `datasets` cache entries
(`frankenstein_tasks.hub_cache`) and returns the environment under which the unchanged task code
(`dataset_path: openai/gsm8k` ...) loads them offline. `leaderboard_env(root)` does the same for
lm-eval's own `arc_easy` (allenai/ai2_arc, ARC-Easy) and `wikitext`
(EleutherAI/wikitext_document_level, wikitext-2-raw-v1), and `arc_challenge` for a group of two.
"""

from __future__ import annotations

from pathlib import Path

from frankenstein_tasks.hub_cache import OFFLINE_ENV, cache_dataset

GSM8K = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                 "How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
    {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
     "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 bolts\n#### 3"},
]

MATH500 = [
    {"problem": "What is the value of $\\sqrt{36 \\times \\sqrt{16}}$?", "solution": "$\\sqrt{36\\cdot 4} = \\boxed{12}$.",
     "answer": "12", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Simplify $\\frac{1}{5}\\cdot \\frac{8}{7}\\div \\frac{12}{20}$.", "solution": "... $=\\boxed{\\frac{8}{21}}$.",
     "answer": "\\frac{8}{21}", "subject": "Prealgebra", "level": 2, "unique_id": "test/prealgebra/2.json"},
]


def hub_env(root: Path, *, gsm8k: list[dict] | None = None, math500: list[dict] | None = None) -> dict[str, str]:
    """Cache the given rows (default: the samples above) under root; the env that makes tasks read them."""
    cache = Path(root) / "datasets"
    rows = GSM8K if gsm8k is None else gsm8k
    cache_dataset("openai/gsm8k", "main", {"test": rows, "train": rows}, cache_dir=cache)  # lm-eval draws few-shot from train
    cache_dataset("HuggingFaceH4/MATH-500", None, {"test": MATH500 if math500 is None else math500}, cache_dir=cache)
    return {"HF_DATASETS_CACHE": str(cache), **OFFLINE_ENV}


def _arc(i: int, question: str, choices: list[str], answer: int, labels: str = "ABCD") -> dict:
    return {"id": f"Mercury_{i}", "question": question,
            "choices": {"text": choices, "label": list(labels[: len(choices)])}, "answerKey": labels[answer]}


ARC_EASY = [
    _arc(0, "Which gas do plants take in from the air to make food?", ["oxygen", "carbon dioxide", "helium", "neon"], 1),
    _arc(1, "What is frozen water called?", ["steam", "ice", "fog"], 1),
    _arc(2, "Which planet is closest to the Sun?", ["Mercury", "Mars", "Venus", "Earth"], 0, labels="1234"),
    _arc(3, "What do bees make?", ["honey", "silk", "milk", "wax paper"], 0),
    _arc(4, "Which of these is a mammal?", ["shark", "whale", "trout", "squid"], 1),
    _arc(5, "What force pulls objects toward Earth?", ["magnetism", "friction", "gravity", "light"], 2),
    _arc(6, "Which tool measures temperature?", ["ruler", "scale", "thermometer", "compass"], 2),
    _arc(7, "What is the main source of energy for Earth?", ["the Moon", "the Sun", "wind", "coal"], 1),
]

ARC_CHALLENGE = [
    _arc(10, "Which property of a mineral can be determined just by looking at it?", ["luster", "mass", "weight", "hardness"], 0),
    _arc(11, "A student mixes salt into water. What kind of matter is formed?", ["a solution", "an element", "a gas"], 0),
    _arc(12, "Which layer of Earth is made of liquid metal?", ["crust", "mantle", "outer core", "inner core"], 2),
]

WIKITEXT = [
    {"page": " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ "
             "playing video game developed by Sega and Media.Vision for the PlayStation Portable . \n"},
    {"page": " = Tower Building = \n \n The tower is 324 metres ( 1 @,@ 063 ft ) tall , about the same height as an "
             "81 @-@ storey building . \n"},
    {"page": " = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . \n"},
]


def leaderboard_env(root: Path) -> dict[str, str]:
    """Cache ARC_EASY, ARC_CHALLENGE and WIKITEXT (every split) under root; the env under which lm-eval's tasks read them."""
    cache = Path(root) / "datasets"
    cache_dataset("allenai/ai2_arc", "ARC-Easy", {"train": ARC_EASY, "validation": ARC_EASY, "test": ARC_EASY}, cache_dir=cache)
    cache_dataset("allenai/ai2_arc", "ARC-Challenge", {s: ARC_CHALLENGE for s in ("train", "validation", "test")}, cache_dir=cache)
    cache_dataset("EleutherAI/wikitext_document_level", "wikitext-2-raw-v1",
                  {"train": WIKITEXT, "validation": WIKITEXT, "test": WIKITEXT}, cache_dir=cache)
    return {"HF_DATASETS_CACHE": str(cache), **OFFLINE_ENV}
