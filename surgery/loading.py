"""Load a model (and its processor) from a source, with the project's safe defaults.

`trust_remote_code` is always off, safetensors are required unless `allow_pickle` is given, and
the transformers class comes from the architecture adapter, never from guessing. A model too large
for one device loads dispatched by accelerate (`device_map`: "auto", or a dict placing modules on
devices, "cpu" or "disk"); the engine runs it as it is (`surgery.stack`). Bad weights are bad input:
a truncated or corrupt safetensors file is named before loading, and a NaN or Inf in any tensor of a
loaded model (or, for a disk-offloaded one, of the checkpoint it serves from) is an error naming the
tensor (`surgery.finite`), not a silent garbage run. Device names are checked against what this
machine has (`check_device`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from surgery import sources
from surgery.arch import Layout, facts_for, layout_from_config, layout_of_model
from surgery.errors import FrankensteinError
from surgery.finite import check_tensors_finite

DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_dtype(name: str) -> str:
    """`name` if it is one of DTYPES, else a one-line error listing them."""
    if name not in DTYPES:
        raise FrankensteinError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return name


def torch_dtype(name: str | None) -> Any:
    import torch

    if name in (None, "auto"):
        return "auto"
    return getattr(torch, check_dtype(name))


def available_devices() -> list[str]:
    """The device names this machine can run on: auto, cpu, and cuda, cuda:N / mps where present."""
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def check_device(device: str | None) -> str:
    """`device` if this machine has it (None means auto), else a one-line error listing what it has.

    Called where a device name is parsed (model args, run configs, command options), so a typo fails
    before any work rather than as a torch traceback when the first tensor moves."""
    name = "auto" if device is None else str(device).strip()
    available = available_devices()
    if name not in available:
        why = " (no CUDA)" if name.startswith("cuda") and "cuda" not in available else ""
        raise FrankensteinError(f"{name!r} is not a device on this machine{why}; available here: {', '.join(available)}")
    return name


# accelerate's placement strategies for a model dispatched over the devices (transformers' device_map).
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def check_device_map(device_map: str | None) -> str | None:
    """`device_map` if transformers can dispatch with it here (a strategy, or one device of this
    machine), else a one-line error listing both; checked where parsed, before any weights load."""
    if device_map is None or device_map in DEVICE_MAP_STRATEGIES:
        return device_map
    try:
        return check_device(device_map)
    except FrankensteinError:
        raise FrankensteinError(
            f"device_map {device_map!r} is neither a placement strategy ({', '.join(DEVICE_MAP_STRATEGIES)}) "
            f"nor a device on this machine ({', '.join(d for d in available_devices() if d != 'auto')})"
        ) from None


def resolve_device(device: str | None) -> str:
    """'auto' means CUDA when available, else CPU; any other name must be available here."""
    import torch

    device = check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
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

    device = resolve_device(device)
    path = sources.resolve(source, allow_pickle=allow_pickle)
    config = sources.read_config(path)
    facts = facts_for(config.get("model_type"), allowed=allowed_types)
    # Headers first (cheap): a truncated or corrupt file is named here, not deep inside transformers.
    on_disk = sources.tensor_index(path) if sources.has_safetensors(path) else None
    scheme = layout_from_config(config, on_disk, where=str(source)).naming_scheme if on_disk else "hf4"
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
    model = model.eval() if device_map is not None else model.to(device).eval()
    layout = layout_of_model(model)
    check_model_finite(model, layout, str(source), scheme, on_disk)
    return model, layout


def check_model_finite(model: Any, layout: Layout, where: str, scheme: str = "hf4",
                       on_disk: dict[str, sources.TensorEntry] | None = None) -> None:
    """Every weight of a loaded model is finite, else one line naming the tensor as a checkpoint in
    naming scheme `scheme` names it (one cheap pass over memory per tensor, `surgery.finite`).
    A weight a dispatched model left on the meta device (offloaded to disk) is read for the check
    from the checkpoint's safetensors (`on_disk`), one tensor at a time."""

    def disk_name(name: str) -> str:
        try:
            return layout.rename(name, scheme)
        except FrankensteinError:  # a tensor outside the named parts: its module name
            return name

    named = [*model.named_parameters(), *model.named_buffers()]
    check_tensors_finite([(n, t) for n, t in named if t.device.type != "meta"], where, disk_name)
    offloaded = [disk_name(n) for n, t in named if t.device.type == "meta"]
    if offloaded and on_disk:
        check_tensors_finite(_read_tensors([n for n in offloaded if n in on_disk], on_disk), where)


def _read_tensors(names: list[str], on_disk: dict[str, sources.TensorEntry]) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of the checkpoint tensors `names`, read one at a time, each file opened once."""
    from safetensors import safe_open

    by_file: dict[Path, list[str]] = {}
    for name in names:
        by_file.setdefault(on_disk[name].file, []).append(name)
    for file, in_file in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            for name in in_file:
                yield name, handle.get_tensor(name)


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
