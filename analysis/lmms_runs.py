"""lmms-eval runs as result files: a run's results JSON, its model arguments and its samples logs.

`lmms_eval ... --output_path OUT --log_samples` writes, per run, `OUT/<model>/<date>_results.json` and
next to it one `<date>_samples_<task>.jsonl` per task (one JSON object per doc: the reply under
`filtered_resps` and each per-sample metric value under the metric's name; lmms-eval drops the doc
itself). `find_runs` collects every run under the paths given (files or output folders); a `Run`
answers for one of them. Used by the transfer table and the attention-shift comparison, which read
result files only. lm-eval's results files (`OUT/<model>/results_<date>.json`) have the same
`results` shape and read the same way (`newest_run(folder, LM_EVAL_RESULTS)`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from surgery.errors import FrankensteinError

RESULTS_SUFFIX = "_results.json"
LM_EVAL_RESULTS = "results_*.json"  # how lm-eval names its results files


@dataclass(frozen=True)
class Run:
    """One lmms-eval run: the results file and what it says."""

    path: Path  # the *_results.json
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def read(cls, path: str | Path) -> Run:
        path = Path(path)
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise FrankensteinError(f"{path} is not an lmms-eval results file (no 'results' object)")
        return cls(path, data)

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """Task -> {"metric,filter": value}."""
        return self.data["results"]

    @cached_property
    def model_args(self) -> dict[str, Any]:
        """`--model_args` as a dict, parsed as lmms-eval parsed them."""
        args = (self.data.get("config") or {}).get("model_args")
        if isinstance(args, str):
            from lmms_eval.utils import simple_parse_args_string

            args = simple_parse_args_string(args)
        return dict(args) if isinstance(args, dict) else {}

    def metric(self, task: str, name: str, filter_name: str = "none") -> Any:
        """`results[task]["<name>,<filter>"]`, or None."""
        return self.results.get(task, {}).get(f"{name},{filter_name}")

    def tasks(self) -> list[str]:
        """Leaf tasks, sorted: group rows (a group lists its subtasks in `group_subtasks`) left out."""
        subtasks = self.data.get("group_subtasks") or {}
        groups = {name for name, members in subtasks.items() if members}
        return sorted(t for t in self.results if t not in groups)

    def samples_file(self, task: str) -> Path:
        date_id = self.path.name[: -len(RESULTS_SUFFIX)]
        return self.path.with_name(f"{date_id}_samples_{task}.jsonl")

    def has_samples(self, task: str) -> bool:
        return self.samples_file(task).is_file()

    def samples(self, task: str) -> list[dict[str, Any]]:
        """The logged samples of `task` (run with --log_samples), one dict per doc."""
        path = self.samples_file(task)
        if not path.is_file():
            raise FrankensteinError(f"{self.path} has no samples log for {task} ({path.name}); run lmms_eval with --log_samples")
        out = []
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise FrankensteinError(f"{path} line {number} is not JSON: {e}") from None
        return out

    def __str__(self) -> str:
        return str(self.path)


def read_json(path: Path) -> Any:
    """A JSON file's content; a file that cannot be read or parsed is one line naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FrankensteinError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FrankensteinError(f"{path} is not valid JSON ({e})") from None


def newest_run(folder: Path, pattern: str = f"*{RESULTS_SUFFIX}") -> Run | None:
    """The newest run of an lmms-eval (or, with `LM_EVAL_RESULTS`, lm-eval) --output_path folder
    (timestamped names sort in time), or None."""
    if not folder.is_dir():
        return None
    found = sorted(folder.rglob(pattern), key=lambda p: (p.name, p.stat().st_mtime))
    return Run.read(found[-1]) if found else None


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run under `paths` (results files, or folders searched recursively), each once, in path order."""
    found: dict[Path, None] = {}
    for given in paths:
        p = Path(given)
        if p.is_file():
            found[p.resolve()] = None
        elif p.is_dir():
            files = sorted(p.rglob(f"*{RESULTS_SUFFIX}"))
            if not files:
                raise FrankensteinError(f"no lmms-eval *{RESULTS_SUFFIX} under {p}")
            found.update((f.resolve(), None) for f in files)
        else:
            raise FrankensteinError(f"{p} does not exist")
    return [Run.read(f) for f in found]
