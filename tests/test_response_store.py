"""The response store reuses an answer only when everything that decides it is the same.

Through the real model args (`Frankenstein.create_from_arg_string`, as lmms-eval builds the model):
new weights written into the same folder (same size, same modification time) and a new
`max_new_tokens` reuse nothing, and what is then returned equals a fresh model without a store;
changing only the batch size reuses every answer and computes nothing.
"""

from __future__ import annotations

import os
import shutil

import pytest
from lmms_eval.api.instance import Instance

from lmms_tasks import dots

TASK, SPLIT = "tiny_count", "test"
DOCS = [{"image": dots(n), "question": "How many circles are in the image?"} for n in (2, 3, 5)]


def image_of(doc: dict) -> list:
    from PIL import Image

    return [doc["image"] if "image" in doc else Image.open(doc["image_path"]).convert("RGB")]


def _requests(docs: list[dict], gen_kwargs: dict) -> list[Instance]:
    return [
        Instance("generate_until", (doc["question"], dict(gen_kwargs), image_of, i, TASK, SPLIT), idx=0,
                 metadata={"task": TASK, "doc_id": i, "repeats": 1})
        for i, doc in enumerate(docs)
    ]


def answer(model_args: str, gen_kwargs: dict | None = None, docs: list[dict] = DOCS) -> tuple[list[str], int, int]:
    """(answers, responses reused from the store, requests the engine computed) of one model built from `model_args`."""
    from frankenstein_tasks.models.frankenstein import Frankenstein

    model = Frankenstein.create_from_arg_string(model_args)
    model.task_dict = {TASK: {SPLIT: docs}}
    computed = []
    run = model.runner.run
    model.runner.run = lambda batch: computed.extend(batch) or run(batch)
    answers = model.generate_until(_requests(docs, gen_kwargs or {"until": ["\n\n"]}))
    return answers, (model.store.reused if model.store else 0), len(computed)


@pytest.fixture
def checkpoint(tiny_trio, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_trio["in"], folder)
    return folder


def rewrite_in_place(folder, source) -> None:
    """Write `source`'s weights over `folder`'s, keeping the file's size and modification time."""
    weights = folder / "model.safetensors"
    before = weights.stat()
    new = (source / "model.safetensors").read_bytes()
    assert len(new) == before.st_size  # the trio's checkpoints share every shape: a same-size rewrite
    with open(weights, "r+b") as handle:  # in place: same inode
        handle.write(new)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = weights.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_new_weights_in_the_same_folder_reuse_nothing(checkpoint, tiny_trio, tmp_path):
    cache = tmp_path / "responses"
    args = f"pretrained={checkpoint},device=cpu,max_new_tokens=6"
    first, reused, computed = answer(f"{args},response_cache={cache}")
    assert (reused, computed) == (0, len(DOCS))
    again, reused, computed = answer(f"{args},response_cache={cache}")
    assert (again, reused, computed) == (first, len(DOCS), 0)  # the store serves a rerun

    rewrite_in_place(checkpoint, tiny_trio["rl"])
    retrained, reused, computed = answer(f"{args},response_cache={cache}")
    fresh, _, _ = answer(args)  # no store: what the new weights answer
    assert (reused, computed) == (0, len(DOCS))
    assert retrained == fresh
    assert retrained != first  # the rewrite changed answers, so a stale store would have been caught


def test_a_new_budget_reuses_nothing_and_the_batch_size_reuses_everything(checkpoint, tmp_path):
    cache = tmp_path / "responses"
    args = f"pretrained={checkpoint},device=cpu"
    first, _, _ = answer(f"{args},max_new_tokens=6,response_cache={cache}")

    # Only speed changes: every answer reused, nothing computed.
    for speed_only in ("max_batch_rows=1", "max_batch_rows=64", "batch_size=4"):
        again, reused, computed = answer(f"{args},max_new_tokens=6,{speed_only},response_cache={cache}")
        assert (again, reused, computed) == (first, len(DOCS), 0), speed_only

    # The model arg budget (the requests give none): recomputed, equal to a fresh model's answers.
    short, reused, computed = answer(f"{args},max_new_tokens=2,response_cache={cache}")
    assert (reused, computed) == (0, len(DOCS))
    assert short == answer(f"{args},max_new_tokens=2")[0] and short != first

    # The request's own budget and stop strings are generation settings: recomputed too.
    _, reused, computed = answer(f"{args},max_new_tokens=6,response_cache={cache}", {"until": ["\n\n"], "max_new_tokens": 2})
    assert (reused, computed) == (0, len(DOCS))
    # Another system prompt is another prompt.
    _, reused, computed = answer(f"{args},max_new_tokens=6,system_prompt=Count.,response_cache={cache}")
    assert (reused, computed) == (0, len(DOCS))


def test_an_image_rewritten_under_the_same_path_is_another_prompt(checkpoint, tmp_path):
    """Docs may name their images by path (the frank_vision pairs do): the key holds the pixels shown."""
    paths = [tmp_path / f"{k}.png" for k in range(2)]
    for path, n in zip(paths, (2, 3)):
        dots(n).save(path)
    docs = [{"image_path": str(path), "question": "How many circles are in the image?"} for path in paths]
    args = f"pretrained={checkpoint},device=cpu,max_new_tokens=6,response_cache={tmp_path / 'responses'}"
    answer(args, docs=docs)
    dots(6, "blue").save(paths[1])  # same name, other picture
    _, reused, computed = answer(args, docs=docs)
    assert (reused, computed) == (1, 1)


def test_the_store_keys_weights_not_names(checkpoint, tiny_trio, tmp_path):
    """A copied or moved checkpoint keeps its answers; a splice is keyed by both inputs' weights."""
    from frankenstein_tasks.models.model_args import ModelArgs
    from frankenstein_tasks.models.response_store import model_identity

    def identity(**args):
        return model_identity(ModelArgs.parse(**args), device="cpu", prompt_style="base")

    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(checkpoint, moved)
    assert identity(pretrained=str(moved)) == identity(pretrained=str(checkpoint))
    assert identity(pretrained=str(tiny_trio["rl"])) != identity(pretrained=str(checkpoint))

    rl = tmp_path / "rl"
    shutil.copytree(tiny_trio["rl"], rl)
    splice = dict(splice="mid_late", **{"in": str(checkpoint), "rl": str(rl)})
    before = identity(**splice)
    assert identity(**{**splice, "cuts": "2:5"}) != before and identity(**{**splice, "splice": "late"}) != before
    rewrite_in_place(rl, tiny_trio["base"])
    assert identity(**splice) != before
    # dtype is keyed resolved: "auto" on CPU is float32.
    assert identity(pretrained=str(checkpoint), dtype="auto") == identity(pretrained=str(checkpoint), dtype="float32")
