"""Finished responses of the `frankenstein` model, kept on disk as they finish, so a killed run resumes.

A sweep over 28 layers x hundreds of items on a 7B model runs for hours; lmms-eval 0.7.3's own
response cache (`--use_cache`) stores a run's responses only after the model has answered every
request of the run, so a run killed half-way keeps nothing. This store sits at the request layer
inside the model instead: `generate_until` looks every request up first, computes only the misses,
and appends each finished chunk of responses (one JSON line each, flushed and fsynced) before it
starts the next. A run started again with the same `response_cache=DIR` recomputes nothing that was
finished; a line cut short by the kill is ignored.

A response's key is a hash of everything that decides it: the model args that change answers (the
checkpoint or splice, probe, layers, swap settings, scoring, prompt style, system prompt, dtype), the
task, the doc (its fields; images by their pixels), the prompt text and the generation settings, and
the package version. Settings that only change speed (device, batch rows) are left out.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

# Model args that decide what a response is (others, like device and batch size, only change speed).
ANSWER_ARGS = (
    "pretrained", "in_model", "rl_model", "splice", "cuts", "dtype", "attn_implementation", "probe", "layers",
    "swap_mode", "window", "swap_decode", "scoring", "ablate", "prompt_style", "system_prompt", "min_pixels", "max_pixels",
)


class ResponseStore:
    def __init__(self, folder: str | Path, model_fingerprint: str, rank: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"responses.rank{rank}.jsonl"  # one file per process: no interleaved writes
        self.model_fingerprint = model_fingerprint
        self.responses = {k: v for f in sorted(self.folder.glob("responses.rank*.jsonl")) for k, v in _read(f)}
        self.reused = 0

    @classmethod
    def for_model_args(cls, folder: str | Path, args: Mapping[str, Any], rank: int = 0) -> "ResponseStore":
        from importlib.metadata import PackageNotFoundError, version

        try:
            package = version("frankenstein-vlm")
        except PackageNotFoundError:  # running from a source tree
            package = "source"
        decided = {k: args.get(k) for k in ANSWER_ARGS}
        return cls(folder, _digest({"args": decided, "package": package}), rank)

    def key(self, task: str, doc: Mapping[str, Any], context: str, gen_kwargs: Mapping[str, Any]) -> str:
        return _digest({
            "model": self.model_fingerprint,
            "task": task,
            "doc": doc_fingerprint(doc),
            "context": context,
            "gen_kwargs": json.dumps(gen_kwargs, sort_keys=True, default=str),
        })

    def get(self, key: str) -> str | None:
        found = self.responses.get(key)
        if found is not None:
            self.reused += 1
        return found

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Append finished responses durably (flush + fsync) before the caller moves on."""
        lines = []
        for key, response in items:
            self.responses[key] = response
            lines.append(json.dumps({"key": key, "response": response}, ensure_ascii=False) + "\n")
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())


def doc_fingerprint(doc: Mapping[str, Any]) -> str:
    """A hash of a doc's content: plain fields as JSON, images by their pixels."""
    digest = hashlib.sha256()
    for key in sorted(doc):
        digest.update(str(key).encode())
        digest.update(_value_bytes(doc[key]))
    return digest.hexdigest()


def _value_bytes(value: Any) -> bytes:
    try:
        from PIL import Image

        if isinstance(value, Image.Image):
            return hashlib.sha256(value.tobytes() + repr((value.mode, value.size)).encode()).digest()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, (bytes, bytearray)):
        return hashlib.sha256(bytes(value)).digest()
    if isinstance(value, Mapping):
        return doc_fingerprint(value).encode()
    if isinstance(value, (list, tuple)):
        return b"[" + b",".join(_value_bytes(v) for v in value) + b"]"
    return json.dumps(value, sort_keys=True, default=str).encode()


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read(path: Path) -> Iterable[tuple[str, str]]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
                yield entry["key"], entry["response"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a kill: recompute that response
