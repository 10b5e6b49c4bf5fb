"""Local copies of the benchmark datasets, made visible to the unchanged tasks for one run.

A run config may give local JSONL files in the hub datasets' schemas (`data:` section). They are
written into the run's own datasets cache (`hub_cache.cache_dataset`) at every start of the run, under
the hub names the task YAMLs use, and every lmms-eval call of the run points `HF_DATASETS_CACHE` there.
Each copy's entry is named by a hash of its content, which the run also uses to tell whether a
finished stage read the same data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from frankenstein_tasks.hub_cache import cache_dataset
from surgery.errors import FrankensteinError

# data field -> (hub repo, config, the split(s) the tasks read)
HUB_DATASETS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "gsm8k": ("openai/gsm8k", "main", ("test", "train")),
    "math500": ("HuggingFaceH4/MATH-500", None, ("test",)),
    "mathvista": ("AI4Math/MathVista", None, ("testmini",)),
}
IMAGE_FIELDS = {"mathvista": "decoded_image"}


def cache_local_data(data: Any, cache_dir: Path, needed: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Cache the local files of `data` (a LocalData) that the run reads (`needed`: data field names);
    returns the env the lmms-eval calls need and, per cached field, the content hash of its copy."""
    given = {name: getattr(data, name) for name in HUB_DATASETS if getattr(data, name) is not None}
    if not given:
        return {}, {}
    needed = set(needed)
    digests = {}
    for name, path in given.items():
        if name in needed:
            entry, _ = cache_local_dataset(name, Path(path), cache_dir)
            digests[name] = entry.name  # `datasets`' builder names the entry by a hash of the rows' parquet
    return {"HF_DATASETS_CACHE": str(cache_dir)}, digests


def cache_local_dataset(name: str, path: Path, cache_dir: Path) -> tuple[Path, int]:
    """Write the rows of `path` into `cache_dir` as the hub dataset of data field `name` (all the splits
    the tasks read); returns the cache entry and the number of rows."""
    repo, config, splits = HUB_DATASETS[name]
    rows = read_rows(path, IMAGE_FIELDS.get(name))
    return cache_dataset(repo, config, {split: rows for split in splits}, cache_dir=cache_dir), len(rows)


def read_rows(path: Path, image_field: str | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file (`image_field`: an image path relative to the file, loaded as a PIL image)
    or of a parquet file written by `datasets` (images decoded by their feature)."""
    from PIL import Image

    if path.suffix == ".parquet":
        import datasets

        table = datasets.Dataset.from_parquet(str(path))
        return [table[i] for i in range(len(table))]
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FrankensteinError(f"{path}:{number}: not a JSON line ({e.msg})") from None
        if image_field and isinstance(row.get(image_field), str):
            image = path.parent / row[image_field]
            if not image.is_file():
                raise FrankensteinError(f"{path}:{number}: {image_field} {image} does not exist")
            with Image.open(image) as img:
                row[image_field] = img.convert("RGB")
        rows.append(row)
    if not rows:
        raise FrankensteinError(f"{path} holds no rows")
    return rows
