"""Run a generated recipe with the real `mergekit-yaml`, then complete the processor files.

mergekit 0.1.5 copies tokenizer files, chat templates, preprocessor_config.json and
generation_config.json from `base_model` (the early-block model in our recipes), but not
`processor_config.json`, where transformers 5 saves a processor. `copy_processor_files` adds the
processor files mergekit left out, from the same model, so the merged folder loads with
`AutoProcessor` like the model it came from.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from surgery import sources
from surgery.atomic import atomic_dir
from surgery.errors import FrankensteinError

# Files that make up a checkpoint's processor and tokenizer (transformers 4 and 5 layouts).
PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
)


def mergekit_executable() -> str:
    """The `mergekit-yaml` console script of this environment."""
    found = shutil.which("mergekit-yaml", path=str(Path(sys.executable).parent)) or shutil.which("mergekit-yaml")
    if found is None:
        raise FrankensteinError("mergekit-yaml is not installed in this environment (pip install mergekit)")
    return found


def copy_processor_files(model_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Copy the processor files of `model_dir` that `out_dir` lacks; returns their names."""
    copied = []
    for name in PROCESSOR_FILES:
        src, dst = Path(model_dir) / name, Path(out_dir) / name
        if src.is_file() and not dst.exists():
            shutil.copyfile(src, dst)
            copied.append(name)
    return copied


def run_mergekit(
    recipe_text: str, out: str | Path, *, early_model: str, overwrite: bool = False, quiet: bool = False
) -> list[str]:
    """Merge `recipe_text` into OUT (atomically); returns the processor files added after mergekit.

    `early_model` is the recipe's base_model (local folder or hub id): the processor files come from it.
    """
    exe = mergekit_executable()
    early_dir = sources.resolve(early_model, weights=False)
    with tempfile.TemporaryDirectory(prefix="frankenstein-recipe-") as tmp, atomic_dir(out, overwrite=overwrite) as staging:
        recipe = Path(tmp) / "recipe.yaml"
        recipe.write_text(recipe_text)
        cmd = [exe, str(recipe), str(staging)] + (["--quiet"] if quiet else [])
        result = subprocess.run(cmd, capture_output=quiet, text=True)
        if result.returncode != 0:
            detail = ""
            if quiet:
                lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
                detail = f": {lines[-1].strip()}" if lines else ""
            raise FrankensteinError(f"mergekit-yaml failed with exit status {result.returncode}{detail}")
        return copy_processor_files(early_dir, staging)
