"""Shared setup for the sweep benchmarks: a model of the requested shape and probe inputs."""

from __future__ import annotations

import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from PIL import Image, ImageDraw

from surgery.loading import load_model, load_processor, resolve_device, resolve_dtype
from surgery.tiny import TINY_ARCHS, TinySpec, build_config, build_processor, make_tiny
from surgery.tiny_families import FAMILIES

QUESTIONS = [
    "How many circles are in the image? Answer with a number.",
    "Count the red dots.",
    "How many objects can you see?",
    "What is the number of shapes in this picture?",
]


def hardware(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


def dots(n: int, color: str, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    r = size // 16
    for k in range(n):
        x = (2 * k + 1) * size // 20
        draw.ellipse([x, size // 2 - r, x + 2 * r, size // 2 + r], fill=color)
    return img


@contextmanager
def timed() -> Iterator[dict]:
    out: dict[str, float] = {}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield out
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    out["seconds"] = time.perf_counter() - start


def add_family(p: Any) -> None:
    """The `--family` option: which model family's tiny checkpoint the benchmark builds."""
    p.add_argument("--family", choices=TINY_ARCHS, default="qwen2_5_vl",
                   help="model family of the tiny model (default qwen2_5_vl; --shape 7b is Qwen2.5-VL's)")


def build_model(shape: str, layers: int, device: str, dtype: str, family: str = "qwen2_5_vl") -> tuple[Any, Any, Any]:
    """(model, layout, processor). `tiny`: a make-tiny checkpoint of `family`; `7b`: Qwen2.5-VL-7B shapes, random."""
    from surgery.arch import layout_of_model

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if shape == "tiny":
        tmp = Path(tempfile.mkdtemp(prefix="frank_bench_"))
        depth = max(2, FAMILIES[family].vision_depth)
        paths = make_tiny(tmp / "trio", TinySpec(arch=family, layers=layers, vision_depth=depth, seed=0))
        model, layout = load_model(str(paths["in"]), dtype=dtype, device=device)
        return model, layout, load_processor(str(paths["in"]))
    if family != "qwen2_5_vl":
        raise SystemExit(f"--shape 7b builds Qwen2.5-VL-7B's shapes; --family {family} runs with --shape tiny")
    import transformers

    spec = TinySpec(layers=layers, vision_depth=32)
    config = build_config(spec)
    # Qwen2.5-VL-7B-Instruct shapes.
    text = config.text_config
    text.hidden_size, text.intermediate_size = 3584, 18944
    text.num_attention_heads, text.num_key_value_heads = 28, 4
    text.rope_parameters["mrope_section"] = [16, 24, 24]
    vision = config.vision_config
    vision.hidden_size, vision.intermediate_size, vision.num_heads = 1280, 3420, 16
    vision.out_hidden_size, vision.fullatt_block_indexes = 3584, [7, 15, 23, 31]
    config.text_config, config.vision_config = text, vision
    with torch.device(device):
        model = transformers.Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=getattr(torch, dtype))
    model.eval()
    processor = build_processor("qwen2_5_vl")
    return model, layout_of_model(model), processor


def report(fast: list, naive: list, layers: list[int], fast_s: float, naive_s: float, model: Any, header: str,
           naive_label: str, fast_label: str) -> int:
    """Print timings, agreement and speedup; exit status 1 if fp32 answers disagree (they must not)."""
    total = same = 0
    for f, n in zip(fast, naive):
        for layer in layers:
            total += 1
            same += f.by_layer[layer] == n.by_layer[layer]
        total += 1
        same += f.baseline == n.baseline
    device = str(next(model.parameters()).device)
    family = model.config.model_type
    print(f"device: {device} ({hardware(device)}), dtype {next(model.parameters()).dtype}, family {family}, {header}")
    print(f"naive loop  ({naive_label}): {naive_s:8.2f} s")
    print(f"fast sweep  ({fast_label}): {fast_s:8.2f} s")
    print(f"agreement: {same}/{total} answers token-identical")
    print(f"speedup: {naive_s / fast_s:.1f}x")
    # bf16 on a GPU may legitimately flip near-tied greedy tokens between batch shapes; fp32 must agree.
    exact = next(model.parameters()).dtype == torch.float32
    return 0 if (same == total or not exact) else 1
