"""The trained organism shipped with the package: one small file, expanded into checkpoints on first use.

Training the default organism takes minutes of CPU, and small numeric differences between machines
or library versions train a different organism. So the package ships the one the docs describe,
`shipped/<setting>.safetensors`, holding only what training made: every tensor of the three
checkpoints except the full embedding and lm_head, of which only the trained rows are kept (the
organism trains a slice of the vocabulary, `training.VocabSlice`; every other row of both matrices is
zero), bf16 as the checkpoints are. Its metadata holds the settings and the organism.json of the
trio it was packed from.

    pack(trio_folder, file)   a trained trio -> the compact file (lossless: every non-zero row is kept)
    expand(file, folder)      the compact file -> base/, in/, rl/ (bf16 safetensors, config,
                              processor), organism.json and eval/, exactly as training wrote them
    shipped_trio(setting)     the expanded shipped organism, in the cache (None if none is shipped
                              or it was trained with other settings than the code's)

    python -m frankenstein_tasks.organism.shipped [SETTING ...]   train (or reuse the cached training
                              of) each setting from scratch and pack it into shipped/ (default: default test)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from surgery.errors import FrankensteinError

SHIPPED_DIR = Path(__file__).with_name("shipped")
ROLES = ("base", "in", "rl")
log = logging.getLogger(__name__)
ROWS = ":rows"  # suffix of the tensor holding the vocabulary ids of a sliced matrix's kept rows


def shipped_file(setting: str) -> Path | None:
    path = SHIPPED_DIR / f"{setting}.safetensors"
    return path if path.is_file() else None


def file_digest(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The packed file's metadata: setting, organism version, organism.json and full row counts."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        raw = f.metadata() or {}
    try:
        return {"setting": raw["setting"], "version": int(raw["version"]), "info": json.loads(raw["organism"]),
                "full_rows": json.loads(raw["full_rows"])}
    except (KeyError, ValueError) as e:
        raise FrankensteinError(f"{path} is not a packed organism (metadata {e} missing or malformed)") from None


def pack(trio_folder: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the compact file of a trained trio folder (base/, in/, rl/, organism.json), atomically."""
    import torch
    from safetensors.torch import load_file, save_file

    from surgery.arch import Part, layout_of_checkpoint
    from surgery.atomic import atomic_path

    folder = Path(trio_folder)
    info = json.loads((folder / "organism.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    full_rows: dict[str, int] = {}
    for role in ROLES:
        layout = layout_of_checkpoint(str(folder / role))
        for name, weight in load_file(str(folder / role / "model.safetensors")).items():
            if layout.classify(name).part in (Part.EMBED, Part.LM_HEAD):
                # Only the rows training wrote; expand() puts zeros everywhere else, as training left them.
                kept = torch.nonzero(weight.abs().sum(dim=1)).flatten()
                tensors[f"{role}/{name}"] = weight[kept].contiguous()
                tensors[f"{role}/{name}{ROWS}"] = kept.to(torch.int32)
                full_rows[name] = weight.shape[0]
            else:
                tensors[f"{role}/{name}"] = weight.contiguous()
    metadata = {"setting": info["setting"], "version": str(info["version"]), "organism": json.dumps(info),
                "full_rows": json.dumps(full_rows)}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(out)


def expand(path: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> dict[str, Path]:
    """Write the trio of a packed file into `out` (atomically): base/, in/, rl/, organism.json, eval/."""
    import torch
    from safetensors.torch import load_file

    from surgery.atomic import atomic_dir, write_json
    from surgery.tiny import TinySpec, build_config, build_processor, write_checkpoint

    from .evalsets import write_eval_sets

    meta = read_metadata(path)
    settings = meta["info"]["settings"]
    spec = TinySpec.model_validate({**settings["model"], "seed": settings["seed"]})
    config, processor = build_config(spec), build_processor(spec.arch)
    packed = load_file(str(path))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for role in ROLES:
            state: dict[str, torch.Tensor] = {}
            for key, tensor in packed.items():
                prefix, _, name = key.partition("/")
                if prefix != role or name.endswith(ROWS):
                    continue
                rows = packed.get(key + ROWS)
                if rows is not None:
                    whole = torch.zeros(meta["full_rows"][name], tensor.shape[1], dtype=tensor.dtype)
                    whole[rows.long()] = tensor
                    tensor = whole
                state[name] = tensor
            write_checkpoint(tmp / role, config, state, processor)
        write_json(tmp / "organism.json", meta["info"])
        write_eval_sets(tmp / "eval", settings["eval_n"], settings["seed"], size=settings["image_size"])
    return {role: Path(out) / role for role in ROLES}


def shipped_trio(setting: str, *, seed: int | None = None) -> dict[str, Path] | None:
    """The shipped organism of `setting`, expanded into $FRANKENSTEIN_CACHE/organism on first use; None
    if the package ships none, or one trained with other settings or another organism version than
    this code's (then it is stale: `python -m frankenstein_tasks.organism.shipped` retrains and packs)."""
    from frankenstein_tasks.caches import cache_root

    from .pipeline import ORGANISM_VERSION, cached, settings_for

    path = shipped_file(setting)
    if path is None:
        return None
    meta = read_metadata(path)
    if meta["version"] != ORGANISM_VERSION or meta["info"]["settings"] != settings_for(setting, seed=seed).model_dump(mode="json"):
        log.warning("frankenstein: the shipped %s organism (%s) was trained by other settings than this code's; "
                    "training one instead", setting, path)
        return None
    folder = cached(cache_root() / "organism" / f"{setting}-shipped-{file_digest(path)[:12]}", lambda out: expand(path, out))
    return {role: folder / role for role in ROLES}


def main(argv: list[str] | None = None) -> int:
    """Train each named setting from scratch (cached) and pack it into the package's shipped/ folder."""
    import sys

    from .pipeline import organism_trio

    for setting in (sys.argv[1:] if argv is None else argv) or ["default", "test"]:
        trio = organism_trio(setting, shipped=False)
        path = pack(trio["base"].parent, SHIPPED_DIR / f"{setting}.safetensors")
        print(f"{path}: {path.stat().st_size / 2**20:.2f} MiB, sha256 {file_digest(path)[:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
