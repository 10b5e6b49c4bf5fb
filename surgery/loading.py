"""Load a model (and its processor) from a source, with the project's safe defaults.

`trust_remote_code` is always off, safetensors are required unless `allow_pickle` is given, and
the transformers class comes from the architecture adapter, never from guessing. A model too large
for one device loads dispatched by accelerate (`device_map`: "auto", or a dict placing modules on
devices, "cpu" or "disk"); the engine runs it as it is (`surgery.stack`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from surgery import sources
from surgery.arch import Layout, facts_for, layout_of_model
from surgery.errors import FrankensteinError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def torch_dtype(name: str | None) -> Any:
    import torch

    if name in (None, "auto"):
        return "auto"
    if name not in DTYPES:
        raise FrankensteinError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def resolve_device(device: str | None) -> str:
    """'auto' means CUDA when available, else CPU."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FrankensteinError(f"device {device!r} requested but CUDA is not available on this machine")
    return device


def resolve_dtype(dtype: str | None, device: str) -> str:
    """'auto' (or None) means bfloat16 on a CUDA device, else float32; other names pass through.

    (Unlike `load_model(dtype="auto")`, which keeps the checkpoint's own dtype.)
    """
    if dtype in (None, "auto"):
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


def load_model(
    source: str | Path,
    *,
    dtype: str | None = "auto",
    device: str | None = "cpu",
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
    allowed_types: tuple[str, ...] | None = None,
    device_map: str | dict[str, Any] | None = None,
    offload_folder: str | Path | None = None,
) -> tuple[Any, Layout]:
    """Load a checkpoint in eval mode on `device`; returns the model and its layout.

    With `device_map` (accelerate's: "auto", "balanced", ... or module -> device / "cpu" / "disk")
    the model is dispatched instead of moved to `device`; `offload_folder` is where disk-offloaded
    weights go when the checkpoint cannot serve them directly."""
    import transformers

    path = sources.resolve(source, allow_pickle=allow_pickle)
    config = sources.read_config(path)
    facts = facts_for(config.get("model_type"), allowed=allowed_types)
    model_cls = getattr(transformers, facts.hf_class)
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype(dtype),
        "trust_remote_code": False,
        "use_safetensors": sources.has_safetensors(path) or not allow_pickle,
    }
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
        if offload_folder is not None:
            kwargs["offload_folder"] = str(offload_folder)
    try:
        model = model_cls.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrankensteinError(f"could not load {source}: {first_line}") from None
    model = model.eval() if device_map is not None else model.to(resolve_device(device)).eval()
    return model, layout_of_model(model)


def load_processor(source: str | Path, **kwargs: Any) -> Any:
    """The processor (VL models) or tokenizer (text-only) that ships with a checkpoint.

    Extra keyword arguments (e.g. min_pixels, max_pixels) go to `from_pretrained`."""
    import transformers

    path = sources.resolve(source, weights=False)
    config = sources.read_config(path)
    facts = facts_for(config.get("model_type"))
    loader = transformers.AutoProcessor if facts.has_vision else transformers.AutoTokenizer
    try:
        return loader.from_pretrained(str(path), trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrankensteinError(f"could not load the processor of {source}: {first_line}") from None
