"""Paper parity: the `*_paper` tasks and `protocol: paper` ask exactly what the authors' code asks.

Expected values come from the authors' public code (github.com/xirui-li/Frankenstein), copied here
as literals (their strings) or restated as small functions (their formats), never from
`frankenstein_tasks.paper_protocol`, which is what is under test. The prompts compared are the ones a
real run sent: the samples log's arguments and the prompt the `frankenstein` model prints once per
task, decoded from the token ids it fed the model.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from pathlib import Path

import pytest
from chat_server import ChatServer, Reply
from conftest import run_cli
from hub_data import GSM8K
from PIL import Image
from transfer_data import (
    MATHVISTA_ITEMS,
    cache_transfer_data,
    math500_rows,
    mathvista_rows,
)

# ------------------------------------------------------------------ the authors' strings, verbatim
# scripts/transferability_test.py and scripts/localization_reasoning.py (SYSTEM_PROMPT_*, QUERY_PROMPT_PREFIX)
AUTHORS_SYSTEM = {
    "reasoner": """You are a helpful assistant. When the user asks a question, your response must include two parts: first, the reasoning process enclosed in <think>...</think> tags, then the final answer enclosed in <answer>...</answer> tags. Please provide a clear, concise response within <answer> </answer> tags that directly addresses the question.""",
    "revisual": """You FIRST think about the reasoning process as an internal monologue and then provide the final answer. The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}.""",
    "base": None,
}
AUTHORS_PREFIX = 'Please solve the problem step by step and put your answer in one "\\boxed{}".\n\n'
QWEN_DEFAULT_SYSTEM = "You are a helpful assistant."  # what the Qwen2.5-VL chat template adds without a system message
# GPTHelper.IMAGE_DESCRIPTION_SYSTEM / IMAGE_DESCRIPTION_USER / GRADING_SYSTEM
AUTHORS_DESCRIBER_SYSTEM = """You are a precise visual analyzer for mathematical and scientific images.
Your task is to describe EXACTLY what you see - do NOT solve any problems or make inferences.

Focus on:
1. All text, numbers, labels, and symbols visible in the image
2. Geometric shapes, graphs, diagrams, or charts with their properties
3. Spatial relationships between elements
4. Colors and visual distinctions that may be meaningful
5. Any tables, axes labels, or data points

Be thorough but factual. Include ALL numbers and text you can read."""
AUTHORS_DESCRIBER_USER = """Describe this image in detail for someone who cannot see it.
Output a structured description covering:
- Overview: What type of image is this (graph, diagram, geometry problem, etc.)
- Text Content: All readable text, numbers, labels, equations
- Visual Elements: Shapes, lines, colors, symbols
- Spatial Layout: How elements are arranged
- Key Details: Any numbers, measurements, or specific values shown

Be precise and complete. Do not solve or interpret - just describe what you see."""
AUTHORS_GRADING_SYSTEM = """You are a strict but fair math grader. Compare the model's answer to the ground truth.

Consider correct if:
- Numerically equivalent (e.g., 0.5 = 1/2 = 50%)
- Same meaning with different formatting (e.g., "2x+3" vs "3+2x")
- For multiple choice: letter matches or full option text matches
- Minor differences in units or notation that don't change the answer

Consider incorrect if:
- Different numerical values
- Wrong multiple choice option
- Missing or extra significant information"""


def authors_question(question: str, question_type: str, choices: list | None) -> str:
    """MathVistaDataset.get_item: the question, and "A. option" lines (labels A-H) for multiple choice."""
    if question_type == "multi_choice" and choices:
        labels = ["A", "B", "C", "D", "E", "F", "G", "H"]
        formatted = [f"{labels[i]}. {c}" for i, c in enumerate(choices) if i < len(labels)]
        question = question + "\n\nChoices:\n" + "\n".join(formatted)
    return question


def authors_described(description: str, question: str) -> str:
    return f"""{AUTHORS_PREFIX}Image Description:
{description}

Question:
{question}"""


def authors_grading_prompt(question: str, choices, ground_truth: str, model_answer: str) -> str:
    return f"""Question: {question}

Choices: {json.dumps(choices) if choices else "N/A (free-form)"}

Ground Truth Answer: {ground_truth}

Model's Answer: {model_answer}

Is the model's answer correct? Respond with JSON:
{{"is_correct": true/false, "extracted_answer": "...", "reason": "brief explanation"}}"""


def chat_prompt(system: str | None, user: str, image: bool) -> re.Pattern:
    """The Qwen2.5-VL chat template around one user turn (image first), as a pattern for the image pads."""
    vision = r"<\|vision_start\|><\|image_pad\|>x\d+<\|vision_end\|>" if image else ""
    return re.compile(
        re.escape(f"<|im_start|>system\n{system or QWEN_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n")
        + vision + re.escape(f"{user}<|im_end|>\n<|im_start|>assistant\n"), re.DOTALL)


PROMPT_LINE = re.compile(r"^frankenstein: (\S+): first prompt as sent, max_new_tokens=(\d+): (.*)$", re.MULTILINE)


def sent_prompts(log: str) -> dict[str, tuple[int, str]]:
    """task -> (budget, prompt) from the lines the frankenstein model prints."""
    return {m.group(1): (int(m.group(2)), json.loads(m.group(3))) for m in PROMPT_LINE.finditer(log)}


# ----------------------------------------------------------------------------------- style rule


# Every model name in the recipes table and every splice as runs/run_eval_v1_*.sh name them, with the
# style each of the authors' scripts gives it (worked out by hand from their detect_model_type).
RECIPE_NAMES = [
    # name, localization_reasoning.py, transferability_test.py
    ("Qwen/Qwen2.5-VL-7B-Instruct", "base", "base"),
    ("Qwen/Qwen2.5-VL-3B-Instruct", "base", "base"),
    ("OpenMMReasoner/OpenMMReasoner-ColdStart", "reasoner", "reasoner"),
    ("OpenMMReasoner/OpenMMReasoner-RL", "reasoner", "reasoner"),
    ("csfufu/Revisual-R1-Coldstart", "reasoner", "revisual"),
    ("csfufu/Revisual-R1-final", "reasoner", "revisual"),  # no pattern: the reasoning script's default
    ("MMR1/MMR1-7B-SFT", "reasoner", "reasoner"),
    ("MMR1/MMR1-7B-RL", "reasoner", "reasoner"),
    ("AIcell/Frankenstein-IN", "reasoner", "reasoner"),
    ("AIcell/Frankenstein-RL", "reasoner", "reasoner"),
]
# variant -> the splice name in each run script (OpenMMReasoner, Revisual-R1, MMR1)
SPLICES = {
    "mid_late": ("ColdStart early 1/3 layers + RL late 2/3 layers", "Coldstart early 1/3 layers + final late 2/3 layers",
                 "SFT early 1/3 layers + RL late 2/3 layers"),
    "early": ("RL early 1/3 layers + ColdStart late 2/3 layers", "final early 1/3 layers + Coldstart late 2/3 layers",
              "RL early 1/3 layers + SFT late 2/3 layers"),
    "late": ("ColdStart early 2/3 layers + RL late 1/3 layers", "Coldstart early 2/3 layers + final late 1/3 layers",
             "SFT early 2/3 layers + RL late 1/3 layers"),
    "early_mid": ("RL early 2/3 layers + ColdStart late 1/3 layers", "final early 2/3 layers + Coldstart late 1/3 layers",
                  "RL early 2/3 layers + SFT late 1/3 layers"),
    "mid": ("ColdStart early 1/3 + RL middle 1/3 + ColdStart late 1/3 layers",
            "Coldstart early 1/3 + final middle 1/3 + Coldstart late 1/3 layers",
            "SFT early 1/3 + RL middle 1/3 + SFT late 1/3 layers"),
    "early_late": ("RL early 1/3 + ColdStart middle 1/3 + RL late 1/3 layers",
                   "final early 1/3 + Coldstart middle 1/3 + final late 1/3 layers",
                   "RL early 1/3 + SFT middle 1/3 + RL late 1/3 layers"),
}
RECIPE_INS = ("OpenMMReasoner/OpenMMReasoner-ColdStart", "csfufu/Revisual-R1-Coldstart", "MMR1/MMR1-7B-SFT")


def test_style_rule_on_every_model_name_of_the_recipes_including_splices():
    from frankenstein_tasks.paper_protocol import (
        STYLE_RULES,
        authors_model_name,
        paper_style,
    )

    for name, reasoning, transfer in RECIPE_NAMES:
        assert STYLE_RULES["reasoning"].style(name) == reasoning, name
        assert STYLE_RULES["transfer"].style(name) == transfer, name
    for variant, names in SPLICES.items():
        for in_model, spliced in zip(RECIPE_INS, names):
            models = {"base": "Qwen/Qwen2.5-VL-7B-Instruct", "in": in_model, "rl": "x/y"}
            assert authors_model_name(variant, models) == spliced
            # Every splice is a reasoner in transfer, Revisual-R1's too (their IN id gets revisual).
            assert paper_style("transfer", variant, models)[0] == "reasoner", spliced
    revisual = {"base": "Qwen/Qwen2.5-VL-7B-Instruct", "in": "csfufu/Revisual-R1-Coldstart", "rl": "csfufu/Revisual-R1-final"}
    assert [paper_style("transfer", m, revisual)[0] for m in ("base", "in", "rl", "mid_late")] == ["base", "revisual", "revisual", "reasoner"]
    assert [paper_style("reasoning", m, revisual)[0] for m in ("base", "in", "rl")] == ["base", "reasoner", "reasoner"]
    # The project's own default (by checkpoint id) keeps Revisual-R1's style: the rule differs only under protocol: paper.
    from frankenstein_tasks.prompt_styles import style_for_checkpoint

    assert style_for_checkpoint("csfufu/Revisual-R1-final")[0].name == "revisual"


def test_prompt_styles_carry_the_authors_system_prompts():
    from frankenstein_tasks.prompt_styles import PROMPT_STYLES

    assert {name: style.system_prompt for name, style in PROMPT_STYLES.items()} == AUTHORS_SYSTEM


# -------------------------------------------------------------------------------------- image cap


# (width, height) -> shown size, by the authors' resize_image_if_needed worked by hand:
#   1921x1081 = 2,076,601 px > 921,600: scale sqrt(921600/2076601) = 0.66618 -> 1279.7 x 720.1 -> 1279 x 720
#   27x400: a side under 28: scale max(28/27, 28/400) = 1.037 -> 28 x 414.8 -> 28 x 414; 11,592 px, kept
#   20x50000: scale 1.4 -> 28 x 70000 (1,960,000 px) -> scale 0.68571 -> 19.2 x 48000 -> 19 x 48000 (not re-upscaled)
#   4000x3000: scale sqrt(921600/12e6) = 0.27713 -> 1108.5 x 831.4 -> 1108 x 831
#   1280x720 and 333x777: within both limits, unchanged
ODD_SIZES = {(1921, 1081): (1279, 720), (27, 400): (28, 414), (20, 50000): (19, 48000), (4000, 3000): (1108, 831),
             (1280, 720): (1280, 720), (333, 777): (333, 777)}


def test_image_cap_and_black_image_on_odd_sizes():
    from frankenstein_tasks.transfer import doc_to_visual_paper

    for size, shown in ODD_SIZES.items():
        image = Image.new("RGB", size, (200, 30, 60))
        image.putpixel((0, 0), (0, 255, 0))
        (a,) = doc_to_visual_paper({"decoded_image": image, "condition": "A"})
        (b,) = doc_to_visual_paper({"decoded_image": image, "condition": "B"})
        assert a.size == shown and b.size == shown, size
        assert b.mode == "RGB" and b.getextrema() == ((0, 0), (0, 0), (0, 0)), size
        if shown == size:
            assert a.tobytes() == image.tobytes()  # not resampled at all
        else:  # resampled with LANCZOS in the authors' steps (upscale, then cap)
            expected = image
            if min(size) < 28:
                scale = max(28 / size[0], 28 / size[1])
                expected = expected.resize((int(size[0] * scale), int(size[1] * scale)), Image.LANCZOS)
            if expected.size != shown:
                expected = expected.resize(shown, Image.LANCZOS)
            assert a.tobytes() == expected.tobytes(), size
    assert doc_to_visual_paper({"decoded_image": None, "condition": "A"}) == []


# --------------------------------------------------------------------------- pair set, change rule


def write_authors_pairs(root: Path, n: int = 3) -> Path:
    """Tiny pairs in the layout and schema of the authors' dataset/vision_functionality_dataset (our own
    images and rows): string counts, "Yes"/"No", box lists, canvas sizes, provenance fields, and the
    counting prompt's literal "<image>"."""
    from lmms_tasks import dots

    rows = {
        "counting": lambda k: ("<image>How many items are there in the image?",
                               {"target_answer": str(2 + k), "source_answer": str(5 + k), "hf_dataset": "ours", "hf_split": "test",
                                "target_index": k, "source_index": 100 + k}, (2 + k, 5 + k)),
        "ocr": lambda k: ("Read the text in the image. Answer with the exact word only.",
                          {"target_text": "alpha", "source_text": "beta", "canvas_size": [112, 112]}, (1, 2)),
        "grounding": lambda k: ("Locate the object: red circle. Return bounding box as x1,y1,x2,y2.",
                                {"object_name": "red circle", "target_bbox_xyxy": [10, 10, 40, 40], "source_bbox_xyxy": [60, 60, 90, 90],
                                 "canvas_size": [112, 112], "iou_threshold": 0.5}, (1, 1)),
        "recognition": lambda k: ("Is there a dot in the image? Answer Yes or No only.",
                                  {"category_id": 1, "category_name": "dot", "target_answer": "Yes", "source_answer": "No",
                                   "canvas_size": [112, 112]}, (3, 1)),
    }
    for task, row in rows.items():
        folder = root / task
        (folder / "images").mkdir(parents=True)
        lines = []
        for k in range(n):
            prompt, meta, (t, s) = row(k)
            for suffix, count in (("t", t), ("s", s)):
                dots(count, "red", (112, 112)).save(folder / "images" / f"{task}_{k:06d}_{suffix}.png")
            lines.append({"id": f"{task}_{k:06d}", "task": task, "target_image": f"images/{task}_{k:06d}_t.png",
                          "source_image": f"images/{task}_{k:06d}_s.png", "prompt": prompt, "meta": meta})
        (folder / "data.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def test_paper_pair_set_reads_the_authors_schema_first_lines_and_verbatim_prompts(tmp_path, monkeypatch):
    from frankenstein_tasks import paper_protocol
    from frankenstein_tasks.vision.dataset import DATA_ENV, paper_task_docs
    from surgery.errors import FrankensteinError

    root = write_authors_pairs(tmp_path / "vision_functionality_dataset", n=3)
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(FrankensteinError) as missing:
        paper_task_docs("counting")
    assert "\n" not in str(missing.value) and "vision_functionality_dataset" in str(missing.value)
    monkeypatch.setenv(DATA_ENV, str(root))
    monkeypatch.setattr(paper_protocol, "PAIRS_PER_TASK", 2)  # the first lines, as their loader reads 50
    for task in ("counting", "ocr", "grounding", "recognition"):
        docs = paper_task_docs(task)
        assert [d["id"] for d in docs] == [f"{task}_000000", f"{task}_000001"], task
        assert all(d["verbatim_text"] for d in docs)
    counting = paper_task_docs("counting")
    assert counting[0]["prompt"] == "<image>How many items are there in the image?"  # the literal "<image>" kept
    assert (counting[1]["target_answer"], counting[1]["source_answer"]) == ("3", "6")
    assert paper_task_docs("recognition")[0]["target_answer"] == "yes"


@pytest.mark.parametrize("first, second, differ", [
    ("3", "3.", False), ("Three", "three!", False), ("3", "4", True),
    # 20 characters or more: the same when one holds the other (the authors' heuristic)
    ("The image shows 3 red circles.", "The image shows 3 red circles. They are small.", False),
    ("[283, 278, 368, 348]", "[283, 278, 368, 348] is the box", False),
    ("[283, 278, 368, 348]", "[15, 320, 81, 382]", True),
    ("a short one", "a short one, but now much longer", False),  # one of 20 or more: the containment rule
    ("yes", "no, there is no dot in this image", True),
])
def test_authors_change_rule(first, second, differ):
    from frankenstein_tasks.paper_protocol import answers_differ

    assert answers_differ(first, second) is differ


@pytest.mark.parametrize("reply, verdict", [
    ('{"is_correct": true, "extracted_answer": "5", "reason": "same"}', True),
    ('```json\n{"is_correct": false, "extracted_answer": "4", "reason": "no"}\n```', False),
    ('{"is_correct": "false"}', False),  # the authors' bool("false") would say True
    ("The answer is correct.", None), ('{"reason": "no verdict"}', None),
])
def test_paper_judge_reply(reply, verdict):
    from frankenstein_tasks.paper_protocol import parse_judge_reply

    assert parse_judge_reply(reply) is verdict


def test_paper_task_budgets_are_the_authors():
    """The *_paper YAMLs hold the authors' budgets: 64 (localization_vision.py), 2048 (the argparse default
    runs/localization_reasoning.sh runs with) and 8192 (runs/run_eval_v1_*.sh)."""
    import yaml

    from frankenstein_tasks.paper_protocol import BUDGETS

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    tasks = Path(__file__).resolve().parents[1] / "frankenstein_tasks" / "tasks"

    def budget(path: Path) -> int:
        config = yaml.load(path.read_text(), Loader=Loader)
        if "generation_kwargs" in config:
            return config["generation_kwargs"]["max_new_tokens"]
        return budget(path.parent / config["include"])

    assert budget(tasks / "frank_vision" / "frank_vision_counting_paper.yaml") == 64 == BUDGETS["vision_swap"]
    assert budget(tasks / "frank_reasoning" / "frank_gsm8k_paper.yaml") == 2048 == BUDGETS["reasoning"]
    assert budget(tasks / "frank_transfer" / "frank_math_vqa_paper.yaml") == 8192 == BUDGETS["transfer"]


# ------------------------------------------------------------- prompts as sent, from real runs

KEY = f"sk-paper-{uuid.uuid4().hex}"
GSM8K_ROWS = [*GSM8K, {"question": "Tom has 3 apples and buys 4 more. How many apples does he have? ",  # trailing space kept
                       "answer": "3 + 4 = 7\n#### 7"}]
ROWS = {str(r["pid"]): r for r in mathvista_rows()}


def describer_reply(pid_of_size: dict, body: dict) -> str:
    image = next(p for p in body["messages"][1]["content"] if p["type"] == "image_url")["image_url"]["url"]
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(image.split(",", 1)[1]))) as sent:
        return f"A picture of {sent.width}x{sent.height} pixels (item {pid_of_size.get(sent.size, '?')})."


def judge_verdict(prompt: str) -> bool:
    return hashlib.sha256(prompt.encode()).digest()[0] % 2 == 0


def script(n: int, body: dict, headers: dict) -> Reply:
    pid_of_size = {size: pid for pid, _, _, _, _, size, _ in MATHVISTA_ITEMS}
    if isinstance(body["messages"][-1]["content"], list):
        return Reply(text=describer_reply(pid_of_size, body))
    verdict = judge_verdict(body["messages"][-1]["content"])
    text = json.dumps({"is_correct": verdict, "extracted_answer": "?", "reason": "scripted"})
    return Reply(text=f"```json\n{text}\n```" if n % 2 else text)


@pytest.fixture(scope="module")
def style_runs(tiny_trio, tmp_path_factory):
    """lmms_eval runs of every paper task (reasoning and transfer) under each prompt style, logged."""
    from frankenstein_tasks.hub_cache import cache_dataset

    root = tmp_path_factory.mktemp("paper_runs")
    cache = cache_transfer_data(root / "datasets")
    cache_dataset("openai/gsm8k", "main", {"test": GSM8K_ROWS, "train": GSM8K_ROWS}, cache_dir=cache)
    server = ChatServer(script, max_requests=400)
    runs = {}
    try:
        for style in ("reasoner", "revisual", "base"):
            out = root / style
            env = {"HF_DATASETS_CACHE": str(cache), "FRANKENSTEIN_CACHE": str(root / f"cache_{style}"), "FRANKENSTEIN_JUDGE": "1",
                   "FRANKENSTEIN_LLM_BASE_URL": server.url, "FRANKENSTEIN_LLM_API_KEY": KEY, "FRANKENSTEIN_DESCRIPTIONS": "",
                   "FRANKENSTEIN_SUBSET": "", "OPENAI_API_KEY": "", "LMMS_EVAL_PLUGINS": ""}
            first = server.count
            done = run_cli([sys.executable, "-m", "lmms_eval", "--model", "frankenstein",
                            "--model_args", f"pretrained={tiny_trio['in']},device=cpu,prompt_style={style}",
                            "--tasks", "frank_gsm8k_paper,frank_math500_paper,frank_transfer_paper",
                            "--gen_kwargs", "max_new_tokens=4", "--output_path", str(out), "--log_samples"], env=env)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            (results,) = out.rglob("*_results.json")
            runs[style] = {"results": results, "log": done.stderr, "requests": server.requests[first:server.count]}
        yield runs
    finally:
        server.close()
    assert not server.problems, server.problems


def samples(results: Path, task: str) -> list[dict]:
    stamp = results.name[: -len("_results.json")]
    return [json.loads(line) for line in results.with_name(f"{stamp}_samples_{task}.jsonl").read_text().splitlines()]


def logged_item(task: str, sample: dict) -> tuple[dict, str]:
    """The raw row a logged sample asked about, and its condition (the samples log keeps no doc: the
    reasoning tasks' docs are the rows in order, the transfer tasks' outcome records name item and condition)."""
    if task == "frank_gsm8k_paper":
        return GSM8K_ROWS[sample["doc_id"]], "A"
    if task == "frank_math500_paper":
        return math500_rows()[sample["doc_id"]], "A"
    record = sample["accuracy_a"]
    if task == "frank_math500_rea_paper":
        return next(r for r in math500_rows() if r["unique_id"] == record["item"]), record["condition"]
    return ROWS[record["item"]], record["condition"]


def expected_user_text(task: str, row: dict, condition: str, descriptions: dict[str, str]) -> str:
    """The authors' user turn for a raw row."""
    if task == "frank_gsm8k_paper":
        return AUTHORS_PREFIX + row["question"]
    if task in ("frank_math500_paper", "frank_math500_rea_paper"):
        return AUTHORS_PREFIX + row["problem"]
    question = authors_question(row["question"], row["question_type"], row["choices"])
    if task == "frank_math_vqa_paper" and condition == "B":
        return authors_described(descriptions[str(row["pid"])], question)
    return AUTHORS_PREFIX + question


TASKS = ("frank_gsm8k_paper", "frank_math500_paper", "frank_general_vqa_paper", "frank_math_vqa_paper", "frank_math500_rea_paper")


@pytest.mark.parametrize("style", ["reasoner", "revisual", "base"])
def test_prompts_sent_for_each_style_and_task_are_the_authors(style_runs, style):
    run = style_runs[style]
    sizes = {pid: size for pid, _, _, _, _, size, _ in MATHVISTA_ITEMS}
    descriptions = {pid: f"A picture of {w}x{h} pixels (item {pid})." for pid, (w, h) in sizes.items()}
    sent = sent_prompts(run["log"])
    for task in TASKS:
        logged = samples(run["results"], task)
        users = []
        for s in logged:
            user = expected_user_text(task, *logged_item(task, s), descriptions)
            assert s["input"] == user, (task, s["doc_id"])  # byte for byte, as lmms-eval logged the request
            users.append(user)
        # The one prompt the model printed is the chat template around the authors' system prompt and one of these.
        budget, prompt = sent[task]
        image = task not in ("frank_gsm8k_paper", "frank_math500_paper", "frank_math500_rea_paper")
        assert budget == 4  # --gen_kwargs (the budgets themselves: the organism run below)
        assert any(chat_prompt(AUTHORS_SYSTEM[style], user, image).fullmatch(prompt) for user in users), (task, prompt)


def test_describer_and_judge_requests_are_the_authors(style_runs):
    run = style_runs["reasoner"]
    describe = [body for body, _ in run["requests"] if isinstance(body["messages"][-1]["content"], list)]
    judge = [body for body, _ in run["requests"] if isinstance(body["messages"][-1]["content"], str)]
    math_items = sorted(pid for pid, category, *_ in MATHVISTA_ITEMS if category == "math-targeted-vqa")
    assert len(describe) == len(math_items)  # once per item, then cached
    for body in describe:
        assert set(body) == {"model", "messages", "max_completion_tokens"}  # no temperature: the server's default
        assert body["model"] == "gpt-4o-mini" and body["max_completion_tokens"] == 2000
        system, user = body["messages"]
        assert system == {"role": "system", "content": AUTHORS_DESCRIBER_SYSTEM}
        assert [p["type"] for p in user["content"]] == ["image_url", "text"] and user["content"][1]["text"] == AUTHORS_DESCRIBER_USER
        assert user["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")

    expected = set()
    for task in TASKS[2:]:
        for s in samples(run["results"], task):
            record = s["accuracy_a"]
            row, _ = logged_item(task, s)
            if task == "frank_math500_rea_paper":
                question, choices, gold = row["problem"], None, row["answer"]
            else:
                question, choices, gold = authors_question(row["question"], row["question_type"], row["choices"]), row["choices"], row["answer"]
            prompt = authors_grading_prompt(question, choices, gold, record["answer"] or "")
            expected.add(prompt)
            assert record["graded_by"] == "judge" and record["correct"] is judge_verdict(prompt)
    for body in judge:
        assert set(body) == {"model", "messages", "max_completion_tokens"} and body["max_completion_tokens"] == 1000
        assert body["messages"][0] == {"role": "system", "content": AUTHORS_GRADING_SYSTEM}
    assert {body["messages"][1]["content"] for body in judge} == expected


# ------------------------------------------------- frankenstein run, the printed example, the organism

pytest_plugins = ("organism_fixture",)


def test_paper_run_on_the_organism_logs_the_authors_prompts_and_budgets(organism, tmp_path):
    """`frankenstein run` on `--print-config revisual-r1` with the organism in place of the checkpoints
    (linked under the recipe's names, which the authors' style rule reads): every stage says the
    authors' budget and each model's style, and the model prints the authors' prompts as sent."""
    import subprocess

    import yaml
    from conftest import cli_path

    from frankenstein_tasks.organism.evalsets import write_eval_sets

    printed = run_cli([cli_path("frankenstein"), "run", "--print-config", "revisual-r1"])
    assert printed.returncode == 0
    config = yaml.safe_load(printed.stdout)
    assert config["protocol"] == "paper"
    names = {"base": "Qwen/Qwen2.5-VL-7B-Instruct", "in": "csfufu/Revisual-R1-Coldstart", "rl": "csfufu/Revisual-R1-final"}
    for role, name in names.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).symlink_to(organism[role], target_is_directory=True)
    data = write_eval_sets(tmp_path / "data", n=3, seed=0)
    write_authors_pairs(tmp_path / "vision_functionality_dataset", n=2)
    config.update(
        models={role: str(tmp_path / name) for role, name in names.items()}, out=str(tmp_path / "out"), device="cpu",
        offline=True, stages=["vision_swap", "reasoning", "transfer"],
        data={"vision_pairs": "vision_functionality_dataset", "gsm8k": str(data["gsm8k"] / "test.jsonl"),
              "math500": str(data["math500"] / "test.jsonl"), "mathvista": str(data["mathvista"] / "testmini.parquet")},
    )
    config["vision_swap"]["tasks"] = ["counting"]
    config["reasoning"].update(roles=["base", "in"], tasks=["gsm8k"], layers="7")  # one ablated layer: CPU minutes
    config["transfer"]["models"] = ["in", "mid_late"]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))

    server = ChatServer(script, max_requests=200)
    try:
        env = {"FRANKENSTEIN_LLM_BASE_URL": server.url, "FRANKENSTEIN_LLM_API_KEY": KEY, "FRANKENSTEIN_CACHE": str(tmp_path / "cache"),
               "FRANKENSTEIN_DESCRIPTIONS": "", "FRANKENSTEIN_JUDGE": "", "OPENAI_API_KEY": ""}
        done = subprocess.run([cli_path("frankenstein"), "run", "run.yaml", "--no-report"], cwd=tmp_path, text=True, timeout=1500,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**__import__("os").environ, **env})
    finally:
        server.close()
    log = done.stdout
    (tmp_path / "run.log").write_text(log)
    assert done.returncode == 0, log[-4000:]

    # Budgets: each stage says them, and each prompt line says what the model used.
    assert "tasks: frank_vision_counting_paper; max_new_tokens: 64 (the authors')" in log
    assert "tasks: frank_gsm8k_paper; max_new_tokens: 2048 (the authors')" in log
    assert "tasks: frank_transfer_paper; max_new_tokens: 8192 (the authors')" in log
    lines = [(m.group(1), int(m.group(2)), json.loads(m.group(3))) for m in PROMPT_LINE.finditer(log)]
    budgets = {task: budget for task, budget, _ in lines}
    assert budgets == {"frank_vision_counting_paper": 64, "frank_gsm8k_paper": 2048,
                       "frank_general_vqa_paper": 8192, "frank_math_vqa_paper": 8192, "frank_math500_rea_paper": 8192}

    # Styles: the authors' rule on the names (reasoning: Base base, Revisual's IN a reasoner; transfer:
    # Revisual's IN revisual, its splice a reasoner), in the order the models ran.
    member_lines = re.findall(r"model \d/\d: (\w+) .*?prompt style: (\w+)", log)
    assert member_lines == [("base", "base"), ("in", "reasoner"), ("in", "revisual"), ("mid_late", "reasoner")]
    prompts = [p for task, _, p in lines]
    by_task = {}
    for task, _, prompt in lines:
        by_task.setdefault(task, []).append(prompt)
    counting = by_task["frank_vision_counting_paper"][0]  # the pair set's prompt, "<image>" and all
    assert chat_prompt(None, "<image>How many items are there in the image?", True).fullmatch(counting), counting
    gsm8k = [json.loads(line)["question"] for line in (data["gsm8k"] / "test.jsonl").read_text().splitlines()]
    base_q, in_q = by_task["frank_gsm8k_paper"]  # Base, then IN
    assert any(chat_prompt(None, AUTHORS_PREFIX + q, False).fullmatch(base_q) for q in gsm8k), base_q
    assert any(chat_prompt(AUTHORS_SYSTEM["reasoner"], AUTHORS_PREFIX + q, False).fullmatch(in_q) for q in gsm8k), in_q
    import datasets

    vista = datasets.load_dataset("parquet", data_files=str(data["mathvista"] / "testmini.parquet"), split="train")
    questions = [authors_question(r["question"], r["question_type"], r["choices"]) for r in vista]
    in_vqa, splice_vqa = by_task["frank_general_vqa_paper"]
    assert any(chat_prompt(AUTHORS_SYSTEM["revisual"], AUTHORS_PREFIX + q, True).fullmatch(in_vqa) for q in questions), in_vqa
    assert any(chat_prompt(AUTHORS_SYSTEM["reasoner"], AUTHORS_PREFIX + q, True).fullmatch(splice_vqa) for q in questions)
    assert len(prompts) == 1 + 2 * 1 + 2 * 3
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["protocol"] == "paper" and all(run["stages"][s]["status"] == "done" for s in config["stages"])


def test_swap_decode_is_part_of_the_response_cache_key(monkeypatch):
    """A reinsert run must not reuse the prefill run's stored answers (and vice versa)."""
    from frankenstein_tasks.models import response_store
    from frankenstein_tasks.models.model_args import ModelArgs

    monkeypatch.setattr(response_store, "weights_identity", lambda args: {"pretrained": "the same weights"})
    identities = [
        response_store.model_identity(ModelArgs.parse(pretrained="m", probe="visual_swap", swap_decode=d),
                                      device="cpu", prompt_style="base")
        for d in ("prefill", "reinsert")
    ]
    assert identities[0] != identities[1]
    assert [i["args"]["swap_decode"] for i in identities] == ["prefill", "reinsert"]


def test_example_configs_run_the_paper_protocol_and_name_the_pair_set(tmp_path):
    """Every printed example is protocol: paper with Base localized; it names the authors' released pair
    set, and where that folder is missing the config fails in one line saying what it is."""
    from frankenstein_tasks.run.config import example_names, example_text, load_config
    from frankenstein_tasks.run.runner import check_pair_set
    from surgery.errors import FrankensteinError

    assert example_names() == ["frankenstein-3b", "mmr1", "openmmreasoner", "revisual-r1"]
    for name in example_names():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "run.yaml").write_text(example_text(name))
        with pytest.raises(FrankensteinError) as missing:
            load_config(folder / "run.yaml")
        message = str(missing.value)
        assert "\n" not in message and "data.vision_pairs" in message and "vision_functionality_dataset" in message
        assert "not shipped" in message
        (folder / "vision_functionality_dataset").mkdir()
        config = load_config(folder / "run.yaml")
        assert config.protocol == "paper" and config.prompt_style is None
        assert config.vision_swap.roles == ["base"] and config.reasoning.roles == ["base"]
        assert config.transfer.judge and config.transfer.max_new_tokens is None  # the task's: the authors' 8192
        check_pair_set(config)  # named: fine
        with pytest.raises(FrankensteinError, match="not shipped: name your copy as data.vision_pairs"):
            check_pair_set(config.model_copy(update={"data": config.data.model_copy(update={"vision_pairs": None})}))
