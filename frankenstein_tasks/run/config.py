"""The config of `frankenstein run`: one YAML file names a whole Frankenstein analysis of a recipe.

Validated once, here, with pydantic: every section forbids unknown keys, so a typo is one line that
names the field (`frankenstein: error: config.yaml: stages.2: unknown stage 'vison_swap' ...`).
Example configs for the seed recipes live in `examples/` (`frankenstein run --print-config NAME`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from frankenstein_tasks import paper_protocol
from frankenstein_tasks.loading_fields import (
    CHECK_DEVICE,
    CHECK_DEVICE_MAP,
    CHECK_DTYPE,
)
from frankenstein_tasks.subset import parse_subset
from surgery.errors import FrankensteinError
from surgery.splice import VARIANTS

EXAMPLES = Path(__file__).with_name("examples")
ROLES = ("base", "in", "rl")
PAPER_SUBSET = "{}:{}".format(*paper_protocol.SUBSET)
TRANSFER_MODELS = ("in", "rl", *VARIANTS)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Models(Section):
    """Checkpoints as hub ids or local folders."""

    base: str
    in_model: str = Field(alias="in")
    rl: str

    def by_role(self) -> dict[str, str]:
        return {"base": self.base, "in": self.in_model, "rl": self.rl}


def _subset(value: str) -> str:
    try:
        parse_subset(value)  # "all", "K" or "K:SEED"
    except FrankensteinError as e:
        raise ValueError(str(e)) from None
    return value


Subset = Annotated[str, AfterValidator(_subset)]  # the paper's: "100:123" (100 items, seed 123)


class DeltaSettings(Section):
    metrics: str = "energy,svd"  # "energy" for the fast norms-only pass


class MergesSettings(Section):
    checkpoints: bool = False  # write the six merged checkpoints with mergekit (else splice in memory)


class VisionSwapSettings(Section):
    tasks: list[Literal["counting", "ocr", "grounding", "recognition"]] = ["counting", "ocr", "grounding", "recognition"]
    n: int = Field(100, ge=1)  # pairs per task (generated, deterministic per seed)
    seed: int = 0
    size: int = 448
    roles: list[Literal["base", "in", "rl"]] = ["rl"]
    swap_mode: Literal["from", "only", "window"] = "from"
    window: int = Field(1, ge=1)
    swap_decode: Literal["prefill", "reinsert"] = "prefill"  # reinsert: the authors' decode-time bug, to compare
    layers: str = "all"
    max_new_tokens: int | None = None  # None: each task's own budget


class ReasoningSettings(Section):
    tasks: list[Literal["gsm8k", "math500"]] = ["gsm8k", "math500"]
    subset: Subset = "100:123"
    roles: list[Literal["base", "in", "rl"]] = ["rl"]
    layers: str = "all"
    max_new_tokens: int | None = Field(None, ge=1)  # None: the task's own budget (2048)


class TransferSettings(Section):
    subset: Subset = "100:123"
    models: list[Literal["in", "rl", "early", "mid", "late", "early_mid", "mid_late", "early_late"]] = list(TRANSFER_MODELS)
    max_new_tokens: int | None = Field(None, ge=1)  # None: the task's own budget (2048; the paper's tasks 8192)
    descriptions: Path | None = None  # JSON item id -> description for frank_math_vqa (else an endpoint)
    judge: bool = False  # true: grade with the endpoint's judge (as FRANKENSTEIN_JUDGE=1 does); else the rule-based grader


class LeaderboardSettings(Section):
    """lm-eval tasks (a leaderboard group by default) on IN, RL and the splices, with lm-eval's own metrics."""

    tasks: list[str] = Field(["leaderboard"], min_length=1)  # lm-eval task or group names, e.g. [arc_easy, mmlu]
    models: list[Literal["in", "rl", "early", "mid", "late", "early_mid", "mid_late", "early_late"]] = list(TRANSFER_MODELS)
    num_fewshot: int | None = Field(None, ge=0)  # None: each task's own
    limit: int | None = Field(None, ge=1)  # at most this many docs per task (lm-eval's --limit); None: all
    apply_chat_template: bool = False
    max_length: int | None = Field(None, ge=1)  # context window of log-likelihood requests (default: the model's)


class AttentionSettings(Section):
    subset: Subset = "100:123"
    roles: list[Literal["base", "in", "rl"]] = ["in", "rl"]
    max_new_tokens: int = Field(2048, ge=1)


class LocalData(Section):
    """Local copies of the datasets, in the hub datasets' schemas (JSONL), for machines without the hub."""

    gsm8k: Path | None = None  # openai/gsm8k rows: question, answer ("... #### N")
    math500: Path | None = None  # HuggingFaceH4/MATH-500 rows: problem, solution, answer, subject, level, unique_id
    mathvista: Path | None = None  # AI4Math/MathVista testmini rows (JSONL, decoded_image a path relative to it; or parquet)
    vision_pairs: Path | None = None  # a pair folder with counting/ ocr/ grounding/ recognition/ (else generated)

    @field_validator("*")
    @classmethod
    def _exists(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is not None and not Path(path).expanduser().exists():
            hint = ""
            if info.field_name == "vision_pairs":
                hint = (f" (protocol: paper probes the authors' released pair set, dataset/{paper_protocol.PAIR_SET_NAME} "
                        "of github.com/xirui-li/Frankenstein, which is not shipped: copy it there or change the path)")
            raise ValueError(f"{path} does not exist{hint}")
        return path


class RunConfig(Section):
    recipe: str  # a label for reports and plots, e.g. "OpenMMReasoner"
    models: Models
    # "paper": the authors' protocol (frankenstein_tasks/paper_protocol.py): the *_paper tasks, their
    # style rule, budgets, prompts, image cap, describer and judge, their released pair set.
    protocol: paper_protocol.Protocol = "project"
    out: Path | None = None  # default: frankenstein_runs/<recipe>
    stages: list[str] = Field(default_factory=lambda: list(_default_stages()))
    prompt_style: Literal["base", "reasoner", "revisual"] | None = None  # default: from the checkpoint ids
    cuts: tuple[int, int] | None = None  # block cuts; default thirds
    device: Annotated[str, CHECK_DEVICE] = "auto"
    device_map: Annotated[str | None, CHECK_DEVICE_MAP] = None  # "auto": dispatch each model over the GPUs (and CPU) with accelerate
    dtype: Annotated[str, CHECK_DTYPE] = "auto"
    attn_implementation: str | None = None
    max_batch_rows: int | None = Field(None, ge=1)
    # Ranks sharing each lmms-eval / lm-eval stage's items (`run/parallel.py`): one GPU each, or CPU processes.
    processes: int = Field(1, ge=1)
    offline: bool = False  # never contact a hub (datasets and models must be local or cached)
    delta: DeltaSettings = DeltaSettings()
    merges: MergesSettings = MergesSettings()
    vision_swap: VisionSwapSettings = VisionSwapSettings()
    reasoning: ReasoningSettings = ReasoningSettings()
    reasoning_logprob: ReasoningSettings = ReasoningSettings()
    transfer: TransferSettings = TransferSettings()
    leaderboard: LeaderboardSettings = LeaderboardSettings()
    attention: AttentionSettings = AttentionSettings()
    data: LocalData = LocalData()

    @model_validator(mode="after")
    def _paper_fixes_the_subsets(self) -> "RunConfig":
        if self.protocol == "paper":
            for name in ("reasoning", "reasoning_logprob", "transfer"):
                if getattr(self, name).subset != PAPER_SUBSET:
                    raise ValueError(f"protocol: paper asks the paper's items ({PAPER_SUBSET}: 100 items, seed 123); "
                                     f"{name}.subset is {getattr(self, name).subset!r} (use protocol: project for another subset)")
        return self

    @model_validator(mode="after")
    def _ranks_hold_whole_models(self) -> "RunConfig":
        # Each rank loads the whole model on its own device; device_map spreads one model over all of them.
        if self.processes > 1 and self.device_map:
            raise ValueError(f"processes: {self.processes} gives each rank a whole model on its own device; device_map: "
                             f"{self.device_map} spreads one model over the devices: set one of them only")
        return self

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, stages: list[str]) -> list[str]:
        known = _stage_names()
        for name in stages:
            if name not in known:
                raise ValueError(f"unknown stage {name!r}; stages are {', '.join(known)}")
        return stages

    @field_validator("out")
    @classmethod
    def _out_is_a_folder(cls, out: Path | None) -> Path | None:
        if out is not None and Path(out).exists() and not Path(out).is_dir():
            raise ValueError(f"{out} is a file, not a folder")
        return out

    def output_folder(self) -> Path:
        return Path(self.out) if self.out else Path("frankenstein_runs") / re.sub(r"[^\w.-]+", "-", self.recipe).lower()


def _stage_names() -> tuple[str, ...]:
    from frankenstein_tasks.run.stages import STAGES

    return tuple(STAGES)


def _default_stages() -> list[str]:
    from frankenstein_tasks.run.stages import default_stages

    return default_stages()


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config; relative paths in it are relative to the file."""
    path = Path(path)
    if path.is_dir():
        raise FrankensteinError(f"{path} is a folder; give the run config file (YAML) inside it")
    if not path.is_file():
        raise FrankensteinError(f"no config file at {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise FrankensteinError(_yaml_error(path, e)) from None
    if not isinstance(data, dict):
        raise FrankensteinError(f"{path}: a run config is a mapping (recipe:, models:, stages: ...)")
    _resolve_paths(data, path.parent)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise FrankensteinError(f"{path}: {where}: {message}") from None


def _yaml_error(path: Path, error: yaml.YAMLError) -> str:
    """`FILE:LINE:COLUMN: not valid YAML: <problem>` (PyYAML's marks count from 0)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def _resolve_paths(data: dict, base: Path) -> None:
    """Make the file's relative paths (out, data.*, transfer.descriptions) relative to its folder."""
    def fix(section: dict | None, key: str) -> None:
        if isinstance(section, dict) and isinstance(section.get(key), str) and not Path(section[key]).expanduser().is_absolute():
            section[key] = str(base / section[key])

    fix(data, "out")
    for key in LocalData.model_fields:
        fix(data.get("data"), key)
    fix(data.get("transfer"), "descriptions")


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


def example_text(name: str) -> str:
    path = EXAMPLES / f"{name}.yaml"
    if not path.is_file():
        raise FrankensteinError(f"no example config {name!r}; examples are {', '.join(example_names())}")
    return path.read_text()
