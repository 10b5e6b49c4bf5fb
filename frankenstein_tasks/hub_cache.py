"""Put your own copy of a hub dataset where `datasets.load_dataset(repo_id, config)` finds it offline.

The `frank_*` reasoning and transfer tasks load their data exactly as lmms-eval's own tasks do:
`dataset_path: openai/gsm8k` in the task YAML, `datasets.load_dataset` underneath. A machine without
hub access (a cluster, CI, this project's tests and demo) can still run them unchanged: with
`HF_DATASETS_OFFLINE=1`, `datasets` serves a dataset from its cache folder
(`$HF_DATASETS_CACHE/<owner>___<name>/<config>/<version>/<hash>/`), which is what an online run leaves
behind. `cache_dataset` writes such a cache entry from local rows in the hub dataset's schema, so the
task code that runs is the same code that runs online.

    cache_dataset("openai/gsm8k", "main", {"test": rows, "train": rows}, cache_dir=...)

The entry is built by `datasets`' own parquet builder (so its `dataset_info.json` and arrow files are
what `datasets` expects) and moved into place atomically. An existing entry for the same repo and
config is replaced, and `datasets` picks the newest one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from surgery.atomic import atomic_dir
from surgery.errors import FrankensteinError

VERSION = "0.0.0"
OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def datasets_cache_dir() -> Path:
    """Where lmms-eval and lm-eval look for cached datasets (the same rule as lmms-eval's)."""
    explicit = os.environ.get("LMMS_EVAL_DATASETS_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return Path(os.environ.get("HF_DATASETS_CACHE", os.path.join(hf_home, "datasets"))).expanduser()


def entry_root(repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """`<cache>/<owner>___<name>`: the folder `datasets` searches for `repo_id` when offline."""
    from datasets.naming import camelcase_to_snakecase

    parts = repo_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    return Path(cache_dir or datasets_cache_dir()) / "___".join(parts)


def cache_dataset(
    repo_id: str,
    config: str | None,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    cache_dir: str | Path | None = None,
    features: Any = None,
) -> Path:
    """Write rows as the cached copy of `repo_id` (config `config`, or "default"); returns the entry folder.

    `features` (a `datasets.Features`) fixes column types, e.g. `datasets.Image()` for an image column
    given as PIL images, file paths or bytes; without it types are inferred from the rows.
    """
    if "/" not in repo_id:
        raise FrankensteinError(f"{repo_id!r} is not a hub dataset id (owner/name)")
    if not splits or any(len(rows) == 0 for rows in splits.values()):
        raise FrankensteinError(f"cache_dataset {repo_id}: every split needs at least one row")
    config_name = config or "default"
    root = entry_root(repo_id, cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    with quiet_datasets():  # a few rows: the library's per-step bars are noise here
        return _build_entry(root, repo_id, config_name, splits, features)


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Run `datasets` operations without its per-step progress bars; their previous state is restored after."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars:
            datasets.enable_progress_bars()


def _build_entry(root: Path, repo_id: str, config_name: str, splits: Mapping[str, Sequence[Mapping[str, Any]]], features: Any) -> Path:
    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    with tempfile.TemporaryDirectory(prefix=".build-", dir=root) as tmp:
        files = {}
        for split, rows in splits.items():
            table = datasets.Dataset.from_list([dict(r) for r in rows], features=features)
            files[split] = str(Path(tmp) / f"{split}.parquet")
            table.to_parquet(files[split])
        builder = Parquet(
            cache_dir=str(Path(tmp) / "build"),
            dataset_name=repo_id.split("/")[-1],
            config_name=config_name,
            data_files=files,
            hash=_content_hash(files),
        )
        builder.download_and_prepare()
        built = Path(builder.cache_dir)
        _set_config_name(built / "dataset_info.json", config_name)
        # One entry per config, no stale copies: the new folder replaces the old one only once it is complete.
        with atomic_dir(root / config_name, overwrite=True) as entry:
            (entry / VERSION).mkdir()
            os.replace(built, entry / VERSION / built.name)
    return root / config_name / VERSION / built.name


def _content_hash(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for split in sorted(files):
        digest.update(split.encode())
        digest.update(Path(files[split]).read_bytes())
    return digest.hexdigest()[:16]


def _set_config_name(info_file: Path, config_name: str) -> None:
    """The builder names its config after the data files; `datasets` looks it up by the hub config name."""
    info = json.loads(info_file.read_text())
    info["config_name"] = config_name
    info_file.write_text(json.dumps(info))
