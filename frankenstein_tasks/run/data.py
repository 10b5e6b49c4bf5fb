"""Local copies of the benchmark datasets, made visible to the unchanged tasks for one run.

A run config may give local JSONL files in the hub datasets' schemas (`data:` section). They are
written into the run's own datasets cache (`hub_cache.cache_dataset`) at every start of the run, under
the hub names the task YAMLs use, and every lmms-eval call of the run points `HF_DATASETS_CACHE` there.
Each copy's entry is named by a hash of its content, which the run also uses to tell whether a
finished stage read the same data. Every row is checked for the fields its tasks read as it enters
(`row_problem`), here and in `frankenstein data cache-dataset`, so a wrong file fails with its line
number before any stage runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from frankenstein_tasks.hub_cache import cache_dataset
from surgery.errors import FrankensteinError

# data field -> (hub repo, config, the split(s) the tasks read)
HUB_DATASETS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "gsm8k": ("openai/gsm8k", "main", ("test", "train")),
    "math500": ("HuggingFaceH4/MATH-500", None, ("test",)),
    "mathvista": ("AI4Math/MathVista", None, ("testmini",)),
}
IMAGE_FIELDS = {"mathvista": "decoded_image"}


def row_problem(name: str, row: Any) -> str | None:
    """Why the tasks reading data field `name` cannot read `row` (the task modules say what they
    read), or None. Rows are checked when they enter, so a bad copy fails here, naming its line,
    not later inside a task run."""
    from frankenstein_tasks.reasoning import BENCHMARKS
    from frankenstein_tasks.transfer import mathvista_row_problem

    if not isinstance(row, dict):
        return "a row must be a JSON object"
    return mathvista_row_problem(row) if name == "mathvista" else BENCHMARKS[name].row_problem(row)


def read_local_data(data: Any, needed: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The rows of the local files of `data` (a LocalData) that the run reads (`needed`: data field
    names), each checked as it enters; nothing is written."""
    rows, needed = {}, set(needed)
    for name in HUB_DATASETS:
        if name in needed and getattr(data, name) is not None:
            try:
                rows[name] = read_rows(Path(getattr(data, name)), name)
            except FrankensteinError as e:
                raise FrankensteinError(f"data.{name}: {e}") from None
    return rows


def cache_local_data(data: Any, cache_dir: Path, rows: Mapping[str, list[dict[str, Any]]]) -> tuple[dict[str, str], dict[str, str]]:
    """Cache the rows read by `read_local_data` in `cache_dir`; returns the env the lmms-eval calls need
    and, per cached field, the content hash of its copy."""
    if not any(getattr(data, name) is not None for name in HUB_DATASETS):
        return {}, {}
    digests = {}
    for name, given in rows.items():
        entry = cache_rows(name, given, cache_dir)
        digests[name] = entry.name  # `datasets`' builder names the entry by a hash of the rows' parquet
    return {"HF_DATASETS_CACHE": str(cache_dir)}, digests


def cache_local_dataset(name: str, path: Path, cache_dir: Path) -> tuple[Path, int]:
    """Write the rows of `path` into `cache_dir` as the hub dataset of data field `name` (all the splits
    the tasks read); returns the cache entry and the number of rows."""
    rows = read_rows(path, name)
    return cache_rows(name, rows, cache_dir), len(rows)


def cache_rows(name: str, rows: list[dict[str, Any]], cache_dir: Path) -> Path:
    repo, config, splits = HUB_DATASETS[name]
    return cache_dataset(repo, config, {split: rows for split in splits}, cache_dir=cache_dir)


def read_rows(path: Path, name: str) -> list[dict[str, Any]]:
    """The rows of a local copy of data field `name`'s dataset, each checked (`row_problem`): a JSONL
    file (its image field a path relative to the file, loaded as a PIL image) or a parquet file
    written by `datasets` (images decoded by their feature)."""
    from PIL import Image

    image_field = IMAGE_FIELDS.get(name)
    if path.suffix == ".parquet":
        import datasets

        table = datasets.Dataset.from_parquet(str(path))
        rows = [table[i] for i in range(len(table))]
        for number, row in enumerate(rows, 1):
            if (problem := row_problem(name, row)) is not None:
                raise FrankensteinError(f"{path}: row {number}: {problem}")
        return rows
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FrankensteinError(f"{path}:{number}: not a JSON line ({e.msg})") from None
        if (problem := row_problem(name, row)) is not None:
            raise FrankensteinError(f"{path}:{number}: {problem}")
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
