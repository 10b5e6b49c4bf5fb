"""Model sources: a local checkpoint folder or a Hugging Face hub id, resolved to a local folder.

Safe by default: safetensors only. A folder that holds only pickle weights (`*.bin`, `*.pt`) is
refused unless the caller passes `allow_pickle=True` (`--allow-pickle` on the CLI), because
unpickling can run arbitrary code. Hub access fails within seconds with a one-line error when
the hub cannot be reached and the id is not in the local cache; it never hangs.

`fingerprint(folder)` is the one answer to "are these the same weights?" for every cache that reuses
work computed from a checkpoint (the response store, `frankenstein run`'s stage skipping): see its
docstring for what it reads and what it cannot see.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from surgery.errors import FrankensteinError

SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
METADATA_PATTERNS = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.py"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_CONNECT_TIMEOUT_S = 5.0


def resolve(source: str | os.PathLike, *, weights: bool = True, allow_pickle: bool = False) -> Path:
    """Local folder holding `source`: the folder itself, or the hub snapshot (cached or downloaded).

    With `weights=False` only config, tokenizer and index files are fetched from the hub.
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        check_checkpoint(path, weights=weights, allow_pickle=allow_pickle)
        return path
    if path.exists():
        raise FrankensteinError(f"{text} is a file, not a checkpoint folder")
    if _looks_like_path(text) or not HUB_ID.match(text):
        raise FrankensteinError(f"no checkpoint folder at {text}")
    return _from_hub(text, weights=weights, allow_pickle=allow_pickle)


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text


def check_checkpoint(path: Path, *, weights: bool = True, allow_pickle: bool = False) -> None:
    """A folder is a checkpoint if it has config.json and (when asked) loadable weights."""
    if not (path / "config.json").is_file():
        raise FrankensteinError(f"{path} has no config.json; it is not a transformers checkpoint folder")
    if not weights:
        return
    if has_safetensors(path):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        if allow_pickle:
            return
        raise FrankensteinError(
            f"{path} holds only pickle weights ({', '.join(pickles[:3])}); pickle can run arbitrary code, "
            "so it is refused: convert to safetensors, or pass --allow-pickle if you trust the source"
        )
    raise FrankensteinError(f"{path} holds no model weights (no *.safetensors files)")


def has_safetensors(path: Path) -> bool:
    return (path / SAFETENSORS_INDEX).is_file() or any(path.glob("*.safetensors"))


def read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / "config.json").read_text())
    except FileNotFoundError:
        raise FrankensteinError(f"{path} has no config.json") from None
    except json.JSONDecodeError as e:
        raise FrankensteinError(f"{path}/config.json is not valid JSON ({e.msg} at line {e.lineno})") from None


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint, in index order (sharded) or sorted (single/unsharded)."""
    path = Path(path)
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = _read_index(index)
        files = list(dict.fromkeys(weight_map.values()))
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            raise FrankensteinError(f"{path}: shard {missing[0]} named in {SAFETENSORS_INDEX} is missing")
        return [path / f for f in files]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FrankensteinError(f"{path} holds no *.safetensors files")
    return files


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as its safetensors header describes it (no weights read)."""

    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name: "BF16", "F32", ...


def tensor_index(path: Path) -> dict[str, TensorEntry]:
    """Tensor name -> file, shape and dtype, from the safetensors headers (sharded or not; no weights read).

    Entries are in disk order: files in index order, tensors by data offset inside each file, so
    reading tensors in this order reads every file front to back.
    """
    from safetensors import safe_open

    out: dict[str, TensorEntry] = {}
    for f in weight_files(Path(path)):
        try:
            with safe_open(str(f), framework="pt") as handle:
                # offset_keys (data order) is newer than keys (name order) in safetensors.
                names = handle.offset_keys() if hasattr(handle, "offset_keys") else handle.keys()
                for name in names:
                    view = handle.get_slice(name)
                    out[name] = TensorEntry(f, tuple(view.get_shape()), view.get_dtype())
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise FrankensteinError(f"{f} is not a readable safetensors file ({e})") from None
    return out


def tensor_names(path: Path) -> dict[str, Path]:
    """Tensor name -> file that holds it. A sharded checkpoint's index answers this without its shards
    (a hub checkpoint resolved without weights has only the index); otherwise the headers do."""
    path = Path(path)
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        return {name: path / f for name, f in _read_index(index).items()}
    return {name: entry.file for name, entry in tensor_index(path).items()}


def _read_index(index: Path) -> dict[str, str]:
    try:
        return json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
        raise FrankensteinError(f"{index} is not a valid safetensors index ({e})") from None


# ---------------------------------------------------------------------------------------------
# Fingerprint: the same weights or not, without reading them all
# ---------------------------------------------------------------------------------------------

SAMPLE_BYTES = 4096  # per byte range read from a tensor (start, middle, end)
PICKLE_SAMPLES = 64  # evenly spaced byte ranges of a pickle weight file (no header to find tensors in)
FINGERPRINT_VERSION = 1  # bump when what `fingerprint` reads changes


def fingerprint(path: str | os.PathLike) -> str:
    """A short digest of what decides a checkpoint folder's outputs, read in milliseconds.

    It reads every small top-level file whole (config, generation config, tokenizer, chat template,
    processor config, the safetensors index: `METADATA_PATTERNS`) and, of every weight file, its name
    and size, its safetensors header (names, dtypes, shapes, offsets, metadata) and three
    `SAMPLE_BYTES` ranges of every tensor's data: its start, middle and end (a small tensor whole).
    Pickle weights (`allow_pickle`) give their size and `PICKLE_SAMPLES` evenly spaced ranges.

    Names, paths and modification times are not read: a copied, moved or re-downloaded checkpoint
    keeps its fingerprint, and a rewrite that keeps sizes and times (retraining or re-merging into
    the same folder, `cp -p`) changes it as soon as any sampled byte differs, which a retrained or
    re-spliced tensor does everywhere. What it cannot see: an edit confined to bytes between the
    samples of one tensor (hand-editing a few weights in place); rerun with `--force` or a fresh
    cache folder after such an edit. On Qwen2.5-VL-7B's shapes (729 tensors, 15.4 GiB) it reads 1,451
    ranges, 5.8 MiB, in about 0.1 s from a cold cache (`benchmarks/fingerprint.py`).
    """
    folder = Path(path)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"fingerprint v{FINGERPRINT_VERSION}".encode())
    for f in sorted(folder.iterdir(), key=lambda p: p.name):
        if f.name.startswith(".") or not f.is_file():
            continue
        if f.suffix == ".safetensors":
            kind = _sample_safetensors
        elif f.suffix in PICKLE_SUFFIXES:
            kind = _sample_evenly
        elif any(fnmatch.fnmatch(f.name, pattern) for pattern in METADATA_PATTERNS):
            kind = _whole
        else:
            continue  # READMEs, mergekit's YAML, images: they decide no output
        digest.update(f"\0{f.name}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as handle:
            kind(handle, f, digest)
    return digest.hexdigest()


def _whole(handle: Any, path: Path, digest: Any) -> None:
    digest.update(handle.read())


def _sample_safetensors(handle: Any, path: Path, digest: Any) -> None:
    """The header bytes, then start / middle / end of every tensor's data (safetensors layout: an 8-byte
    little-endian header length, the JSON header, then the data; offsets relative to the data)."""
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise FrankensteinError(f"{path} is not a readable safetensors file (shorter than its header length)")
    (length,) = struct.unpack("<Q", prefix)
    header = handle.read(length)
    try:
        entries = json.loads(header)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FrankensteinError(f"{path} is not a readable safetensors file (its header is not JSON)") from None
    digest.update(header)
    base = 8 + length
    spans = sorted(tuple(e["data_offsets"]) for name, e in entries.items() if name != "__metadata__")
    for start, end in spans:
        for offset, size in _sample_ranges(base + start, base + end):
            digest.update(os.pread(handle.fileno(), size, offset))


def _sample_ranges(start: int, end: int) -> list[tuple[int, int]]:
    """(offset, size) of the start, middle and end of [start, end); the whole span when that is shorter."""
    size = end - start
    if size <= 3 * SAMPLE_BYTES:
        return [(start, size)]
    middle = start + (size - SAMPLE_BYTES) // 2
    return [(start, SAMPLE_BYTES), (middle, SAMPLE_BYTES), (end - SAMPLE_BYTES, SAMPLE_BYTES)]


def _sample_evenly(handle: Any, path: Path, digest: Any) -> None:
    size = os.fstat(handle.fileno()).st_size
    if size <= PICKLE_SAMPLES * SAMPLE_BYTES:
        digest.update(handle.read())
        return
    step = (size - SAMPLE_BYTES) / (PICKLE_SAMPLES - 1)
    for k in range(PICKLE_SAMPLES):
        digest.update(os.pread(handle.fileno(), SAMPLE_BYTES, round(k * step)))


def source_fingerprint(source: str | os.PathLike, *, allow_pickle: bool = False) -> str:
    """`fingerprint` of a checkpoint named by a folder or a hub id (resolved, weights fetched if needed)."""
    return fingerprint(resolve(source, allow_pickle=allow_pickle))


# ---------------------------------------------------------------------------------------------
# Hub
# ---------------------------------------------------------------------------------------------


def _hub_patterns(weights: bool, allow_pickle: bool) -> list[str]:
    patterns = list(METADATA_PATTERNS)
    if weights:
        patterns.append("*.safetensors")
        if allow_pickle:
            patterns += [f"*{s}" for s in PICKLE_SUFFIXES]
    return patterns


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = HUB_CONNECT_TIMEOUT_S) -> str | None:
    """None if a TCP connection to the hub endpoint opens within `timeout`, else the reason."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a proxy decides; huggingface_hub's own timeouts apply
    url = urlparse(_hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{url.hostname}:{port}: {e.strerror or e}"


def _from_hub(repo_id: str, *, weights: bool, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = _hub_patterns(weights, allow_pickle)
    try:
        cached = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
        check_checkpoint(cached, weights=weights, allow_pickle=allow_pickle)
        return cached
    except (LocalEntryNotFoundError, FileNotFoundError, FrankensteinError):
        pass  # not (completely) in the cache: fetch it

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline:
        raise FrankensteinError(f"{repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    reason = hub_reachable()
    if reason is not None:
        raise FrankensteinError(
            f"cannot reach the Hugging Face hub for {repo_id} ({reason}) and it is not in the local cache; "
            "download it on a connected machine or pass a local folder"
        )
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10))
    except GatedRepoError:
        raise FrankensteinError(f"{repo_id} is gated on the hub: accept its terms and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise FrankensteinError(f"{repo_id} does not exist on the hub (or is private: set HF_TOKEN)") from None
    except Exception as e:  # network errors come in many types across huggingface_hub versions
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrankensteinError(f"could not download {repo_id} from the hub: {first_line}") from None
    check_checkpoint(path, weights=weights, allow_pickle=allow_pickle)
    return path
