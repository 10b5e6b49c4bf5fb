"""The checkpoint fingerprint vs hashing every byte, on a Qwen2.5-VL-7B-shaped folder, in one run.

`surgery.sources.fingerprint` decides whether cached answers and finished stages still belong to the
weights in a folder. It must be cheap enough to run at every model load and stage, and must change
when the weights are rewritten in place. This script builds a folder with Qwen2.5-VL-7B's tensors
(names, shapes and bf16 dtype from the transformers model built on the meta device: 729 tensors,
8.29B parameters, 15.4 GiB, in 4 shards plus the index and a config), then times, each on a cold
page cache (`posix_fadvise(DONTNEED)` on every file first, which needs no root) and again warm:

  fast   `fingerprint(folder)`: headers, sizes, three 4 KiB ranges per tensor
  naive  blake2b over every byte of every file (an exact content hash)

and checks that both tell the same cases apart: the folder again (both equal) and one mid-layer
`mlp.down_proj` (130 MiB) rewritten in place with other bytes, size and modification time kept
(both differ). It prints the bytes each reads and the ratio, and removes the folder.

    python benchmarks/fingerprint.py                  # sparse weights (holes read as zeros: no disk I/O
                                                      # for the data; the header, sampling and hashing cost)
    python benchmarks/fingerprint.py --data random    # 15.4 GiB of real bytes on disk under $TMPDIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARDS = 4
CHUNK = 64 << 20


def qwen25_vl_7b_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of Qwen2.5-VL-7B-Instruct (hub names), from the model built on the meta device."""
    import torch
    import transformers

    from surgery.tiny import TinySpec, build_config

    config = build_config(TinySpec(layers=28, vision_depth=32))
    text, vision = config.text_config, config.vision_config
    text.hidden_size, text.intermediate_size, text.vocab_size = 3584, 18944, 152064
    text.num_attention_heads, text.num_key_value_heads = 28, 4
    text.rope_parameters["mrope_section"] = [16, 24, 24]
    vision.hidden_size, vision.intermediate_size, vision.num_heads = 1280, 3420, 16
    vision.out_hidden_size, vision.fullatt_block_indexes = 3584, [7, 15, 23, 31]
    config.tie_word_embeddings = text.tie_word_embeddings = False
    with torch.device("meta"):
        model = transformers.Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    return {_hub_name(name): tuple(p.shape) for name, p in model.state_dict().items()}


def _hub_name(name: str) -> str:
    """transformers 5 module names -> the names on the hub's safetensors files."""
    for new, old in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if name.startswith(new):
            return old + name[len(new):]
    return name


def write_folder(folder: Path, shapes: dict[str, tuple[int, ...]], data: str) -> dict[str, tuple[Path, int, int]]:
    """Shards with real safetensors headers; returns tensor name -> (file, absolute start, end)."""
    folder.mkdir(parents=True)
    names = list(shapes)
    per_shard = -(-len(names) // SHARDS)
    where, weight_map = {}, {}
    block = os.urandom(CHUNK) if data == "random" else b""
    for s in range(SHARDS):
        shard = folder / f"model-{s + 1:05d}-of-{SHARDS:05d}.safetensors"
        header, offset = {}, 0
        for name in names[s * per_shard:(s + 1) * per_shard]:
            size = 2 * _numel(shapes[name])
            header[name] = {"dtype": "BF16", "shape": list(shapes[name]), "data_offsets": [offset, offset + size]}
            offset += size
            weight_map[name] = shard.name
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        base = 8 + len(text)
        with open(shard, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            if data == "random":
                left = offset
                while left:
                    f.write(block[: min(left, CHUNK)])
                    left -= min(left, CHUNK)
            else:
                f.truncate(base + offset)
        for name, entry in header.items():
            where[name] = (shard, base + entry["data_offsets"][0], base + entry["data_offsets"][1])
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    return where


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def drop_cache(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def full_hash(folder: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for f in sorted(folder.iterdir()):
        digest.update(f.name.encode())
        with open(f, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def timed(fn, folder: Path, cold: bool) -> tuple[str, float]:
    if cold:
        os.sync()
        drop_cache(folder)
    start = time.perf_counter()
    value = fn(folder)
    return value, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("sparse", "random"), default="sparse")
    args = parser.parse_args()

    from surgery.sources import SAMPLE_BYTES, _sample_ranges, fingerprint

    shapes = qwen25_vl_7b_shapes()
    tmp = Path(tempfile.mkdtemp(prefix="frank_fingerprint_"))
    try:
        t0 = time.perf_counter()
        where = write_folder(tmp / "qwen25vl7b", shapes, args.data)
        folder = tmp / "qwen25vl7b"
        total = sum(f.stat().st_size for f in folder.iterdir())
        sampled = sum(size for _, start, end in where.values() for _, size in _sample_ranges(start, end))
        print(f"{len(shapes)} tensors, {sum(map(_numel, shapes.values())) / 1e9:.2f}B parameters, "
              f"{total / 2**30:.2f} GiB in {SHARDS} shards ({args.data} data; written in {time.perf_counter() - t0:.0f} s)")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        rows = {}
        for label, fn in (("fast", fingerprint), ("naive", full_hash)):
            for cache in ("cold", "warm"):
                rows[(label, cache)] = timed(fn, folder, cache == "cold")
        for (label, cache), (_, seconds) in rows.items():
            print(f"{label:5} {cache}: {seconds:8.3f} s")
        print(f"bytes read: fast {sampled / 2**20:.1f} MiB of tensor data in {sum(len(_sample_ranges(s, e)) for _, s, e in where.values())} "
              f"ranges of <= {SAMPLE_BYTES} B (+ headers), naive {total / 2**30:.2f} GiB")

        # Agreement: the same folder again -> both equal; one tensor rewritten in place -> both differ.
        fast_before, naive_before = rows[("fast", "warm")][0], rows[("naive", "warm")][0]
        same = (fingerprint(folder) == fast_before, full_hash(folder) == naive_before)
        target = "model.layers.14.mlp.down_proj.weight"
        shard, start, end = where[target]
        stat = shard.stat()
        with open(shard, "r+b") as f:
            f.seek(start)
            left = end - start
            while left:
                f.write(b"\x5a" * min(left, CHUNK))
                left -= min(left, CHUNK)
        os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert shard.stat().st_size == stat.st_size and shard.stat().st_mtime_ns == stat.st_mtime_ns
        changed = (fingerprint(folder) != fast_before, full_hash(folder) != naive_before)
        print(f"agreement: unchanged folder equal (fast, naive) = {same}; {target} "
              f"({(end - start) / 2**20:.0f} MiB) rewritten in place, size and mtime kept, detected = {changed}")
        for cache in ("cold", "warm"):
            print(f"speedup ({cache}): {rows[('naive', cache)][1] / rows[('fast', cache)][1]:.0f}x")
        return 0 if all(same) and all(changed) else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
