"""Finished responses of the `frankenstein` model, kept on disk as they finish, so a killed run resumes.

A sweep over 28 layers x hundreds of items on a 7B model runs for hours; lmms-eval 0.7.3's own
response cache (`--use_cache`) stores a run's responses only after the model has answered every
request of the run, so a run killed half-way keeps nothing. This store sits at the request layer
inside the model instead: `generate_until` looks every request up first, computes only the misses,
and appends each finished chunk of responses (one JSON line each, flushed and fsynced) before it
starts the next. A run started again with the same `response_cache=DIR` recomputes nothing that was
finished; a line cut short by the kill is ignored.

A response's key is a hash of everything that decides it, and of nothing that only changes speed:

    the weights          `surgery.sources.fingerprint` of the checkpoint (of IN and RL for a splice),
                         not its name: retrained or re-merged weights in the same folder are new
    the model args       every arg except SPEED_ONLY_ARGS (probe, layers, swap settings, scoring,
                         ablate, splice and cuts, max_new_tokens, system_prompt, pixels, ...), with
                         dtype resolved (auto: bfloat16 on GPU, float32 on CPU) and the device type
    the prompt           the task, the doc (its fields; images by their pixels), the prompt text, the
                         system prompt the model adds (the prompt style resolved) and the images the
                         model is shown, by their pixels (a doc may name them by path: a file
                         rewritten under the same name is another prompt)
    generation settings  the request's generation kwargs (budget, stop strings)
    the code             this package's version, torch's and transformers', and a digest of the
                         source that turns a request into an answer (ANSWER_CODE)

Settings that only change speed (device index, batch rows) are left out: changing them reuses everything.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

# Model args that only change speed or where files go. Every other arg is part of the key, so an arg
# added to ModelArgs later decides answers unless it is listed here.
SPEED_ONLY_ARGS = frozenset({"device", "max_batch_rows", "batch_size", "max_batch_size", "response_cache", "allow_pickle"})
# Model args that name checkpoints: keyed by the weights' fingerprints instead of by the names.
CHECKPOINT_ARGS = frozenset({"pretrained", "in_model", "rl_model"})
# The source (relative to the repository root) that turns a request into an answer: the engine, the
# harness models, the contract and the prompt styles. A change there is a new key.
ANSWER_CODE = ("surgery", "frankenstein_tasks/models", "frankenstein_tasks/contract.py", "frankenstein_tasks/prompt_styles.py",
               "frankenstein_tasks/paper_protocol.py")


class ResponseStore:
    def __init__(self, folder: str | Path, model_fingerprint: str, rank: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"responses.rank{rank}.jsonl"  # one file per process: no interleaved writes
        self.model_fingerprint = model_fingerprint
        self.responses = {k: v for f in sorted(self.folder.glob("responses.rank*.jsonl")) for k, v in _read(f)}
        self.reused = 0

    @classmethod
    def for_model(cls, folder: str | Path, args: Any, *, device: str, prompt_style: str, rank: int = 0) -> "ResponseStore":
        """The store of a `frankenstein` model built from `args` (a ModelArgs) on `device`."""
        return cls(folder, _digest(model_identity(args, device=device, prompt_style=prompt_style)), rank)

    def key(self, task: str, doc: Mapping[str, Any], context: str, gen_kwargs: Mapping[str, Any],
            system_prompt: str | None = None, images: Iterable[Any] = ()) -> str:
        return _digest({
            "model": self.model_fingerprint,
            "task": task,
            "doc": doc_fingerprint(doc),
            "context": context,
            "system_prompt": system_prompt,
            "images": [_value_bytes(image).hex() for image in images],
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


def model_identity(args: Any, *, device: str, prompt_style: str) -> dict[str, Any]:
    """What decides every answer of a model built from `args` (a ModelArgs) on `device`, as a JSON-able dict."""
    from surgery.loading import resolve_dtype

    decided = args.model_dump(exclude=SPEED_ONLY_ARGS | CHECKPOINT_ARGS)
    decided["dtype"] = resolve_dtype(args.dtype, device)
    return {
        "weights": weights_identity(args),
        "args": decided,
        "device_type": device.split(":")[0],  # cuda:0 and cuda:1 compute alike; CPU and GPU kernels differ
        "prompt_style": prompt_style,
        "code": code_identity(),
    }


def weights_identity(args: Any) -> dict[str, str | None]:
    """The fingerprints of the checkpoints `args` names: `pretrained`, or IN and RL of a splice."""
    from surgery.sources import source_fingerprint

    names = ("in_model", "rl_model") if args.splice else ("pretrained",)
    return {name: source_fingerprint(getattr(args, name), allow_pickle=args.allow_pickle) for name in names}


@lru_cache(maxsize=1)
def code_identity() -> dict[str, str]:
    """Versions of this package, torch and transformers, and a digest of ANSWER_CODE's Python files."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:  # running from a source tree
            return "source"

    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for entry in ANSWER_CODE:
        path = root / entry
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []:
            digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return {
        "package": installed("frankenstein-vlm"), "torch": installed("torch"),
        "transformers": installed("transformers"), "source": digest.hexdigest()[:16],
    }


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
