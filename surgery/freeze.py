"""Block freezing for necessity experiments (METHOD.md section 4).

RL runs with one decoder block frozen show which updates the gain needs. This module gives the
parameter names of a block (early / mid / late, thirds or custom cuts), sets `requires_grad=False`
on them, and writes them as a regex for trainers that take one. Names come from the model the
trainer will see: a loaded model's `named_parameters()`, or, for a checkpoint, the same model
built on the meta device from its config (no weights read).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from surgery.arch import Layout, Part, check_block, layout_of_model
from surgery.errors import FrankensteinError

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

Scheme = Literal["module", "checkpoint"]  # names as model.named_parameters() / as on disk (hub names)
SCHEMES = ("module", "checkpoint")


def meta_model(source: str | Path) -> Any:
    """The transformers model of a checkpoint (folder or hub id), on the meta device: names, no weights."""
    import torch
    import transformers

    from surgery import sources
    from surgery.arch import facts_for

    path = sources.resolve(source, weights=False)
    config = sources.read_config(path)
    facts = facts_for(config.get("model_type"))
    model_cls = getattr(transformers, facts.hf_class)
    config_obj = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    with torch.device("meta"):
        return model_cls._from_config(config_obj)


def _model_and_layout(model_or_source: "nn.Module | str | Path") -> tuple[Any, Layout]:
    import torch.nn as nn

    model = model_or_source if isinstance(model_or_source, nn.Module) else meta_model(model_or_source)
    return model, layout_of_model(model)


def block_layers(layout: Layout, block: str, cuts: tuple[int, int] | list[int] | None = None) -> range:
    return layout.partition(cuts).layers(check_block(block))


def block_parameter_names(
    model_or_source: "nn.Module | str | Path",
    block: str,
    *,
    cuts: tuple[int, int] | list[int] | None = None,
    scheme: Scheme = "module",
) -> list[str]:
    """Names of every parameter in the decoder layers of `block`, in `named_parameters()` order."""
    if scheme not in SCHEMES:
        raise FrankensteinError(f"unknown name scheme {scheme!r}; choose {' or '.join(SCHEMES)}")
    model, layout = _model_and_layout(model_or_source)
    layers = block_layers(layout, block, cuts)
    names = []
    for name, _ in model.named_parameters():
        role = layout.classify(name)
        if role.part is Part.DECODER_LAYER and role.index in layers:
            names.append(name if scheme == "module" else layout.rename(name, "hf4"))
    return names


def freeze_block(model: "nn.Module", block: str, *, cuts: tuple[int, int] | list[int] | None = None) -> list[str]:
    """Set `requires_grad=False` on the parameters of `block`; returns their names."""
    names = set(block_parameter_names(model, block, cuts=cuts))
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(False)
    return [n for n, _ in model.named_parameters() if n in names]


def block_regex(layout: Layout, block: str, *, cuts: tuple[int, int] | list[int] | None = None, scheme: Scheme = "module") -> str:
    """A regex that matches exactly the parameter names of `block` (re.search, re.match or re.fullmatch).

    It also matches those names behind a wrapper prefix such as `module.` (DDP) or
    `_fsdp_wrapped_module.`, since trainers often see them that way.
    """
    if scheme not in SCHEMES:
        raise FrankensteinError(f"unknown name scheme {scheme!r}; choose {' or '.join(SCHEMES)}")
    layers = block_layers(layout, block, cuts)
    prefix = layout.facts.namings[layout.naming_scheme if scheme == "module" else "hf4"].decoder_layer
    alternatives = "|".join(str(i) for i in layers)
    body = re.escape(prefix).replace(re.escape("{i}"), f"(?:{alternatives})")
    return rf"^(?:.*\.)?{body}.*$"
