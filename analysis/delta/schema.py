"""What a weight-delta analysis reports: the records written to delta.json, and their vocabulary.

Two deltas per tensor, dIN = IN - Base and dRL = RL - IN (METHOD.md section 2), each measured
against its own reference weight. These pydantic models are the whole result: everything else in
`analysis.delta` either fills them (planning, kernels, summaries) or writes them out (files).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from surgery.errors import FrankensteinError

DELTAS = ("in", "rl")  # dIN = IN - Base, dRL = RL - IN
ROLES = ("base", "in", "rl")
REFERENCE = {"in": "base", "rl": "in"}  # the weight each delta is measured against
ROLE_LABEL = {"base": "Base", "in": "IN", "rl": "RL"}


class DeltaStats(BaseModel):
    """One delta (dIN or dRL) of one tensor. Spectral fields are None without the "svd" metric."""

    frobenius_norm: float
    energy: float  # ||delta||_F^2
    reference_norm: float  # ||W_ref||_F
    relative_norm: float  # ||delta||_F / ||W_ref||_F (inf when W_ref is all zero and delta is not)
    spectral_norm: float | None = None
    nuclear_norm: float | None = None
    stable_rank: float | None = None
    effective_rank: float | None = None
    condition_number: float | None = None
    log_volume_topk: float | None = None
    numerical_rank: int | None = None
    topk_singular_values: list[float] | None = None


class TensorRecord(BaseModel):
    name: str  # as named in the Base checkpoint
    local_name: str  # inside its decoder layer / vision block / projector, e.g. mlp.up_proj.weight
    shape: list[int]
    rows: int  # the 2-D view: rows x cols
    cols: int
    numel: int
    part: str
    index: int | None
    unified_index: int | None
    section: str
    component: str
    block: str | None  # early / mid / late for decoder layers
    deltas: dict[str, DeltaStats]


class GroupStats(BaseModel):
    """One delta summed over a group of tensors."""

    energy: float
    reference_energy: float
    relative_norm: float  # sqrt(energy / reference_energy)
    energy_share: float  # of this delta's energy over all analysed tensors
    energy_per_param: float
    mean_stable_rank: float | None = None
    mean_effective_rank: float | None = None
    max_spectral_norm: float | None = None


class GroupSummary(BaseModel):
    key: str | int
    n_tensors: int
    numel: int
    deltas: dict[str, GroupStats]


class AuthorsLayerStats(BaseModel):
    """One delta of one unified layer, aggregated as the authors' scripts do (`analysis.delta.authors`)."""

    fro_norm_mean: float | None
    fro_norm_sum: float | None
    relative_norm_mean: float | None  # ||delta||_F / (||W_IN||_F + 1e-8), averaged
    spectral_norm_mean: float | None = None  # None without the "svd" metric
    log_volume_mean: float | None = None


class AuthorsLayer(BaseModel):
    key: int  # unified layer index
    section: str
    n_tensors: int  # in the authors' selection
    n_matrices: int  # of those, with spectral metrics
    deltas: dict[str, AuthorsLayerStats]


class SkippedTensor(BaseModel):
    name: str
    reason: str


class DeltaReport(BaseModel):
    """Everything `analyze_deltas` found; `spectra` (full singular values) is kept out of delta.json.

    `analysis.delta.write_report(report, out)` writes it as files.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    meta: dict[str, Any]
    tensors: list[TensorRecord]
    skipped: list[SkippedTensor]
    mismatched: list[SkippedTensor]
    summaries: dict[str, list[GroupSummary]]
    block_ranking: dict[str, list[str]]
    authors_per_layer: list[AuthorsLayer] = []  # the authors' aggregates, beside the project's summaries
    authors_only_tensors: list[TensorRecord] = []  # norms of the tensors only the authors' selection holds
    spectra: dict[str, dict[str, Any]] = {}  # tensor name -> delta -> float64 tensor of all sigma

    def summary(self, group: str) -> dict[str | int, GroupSummary]:
        if group not in self.summaries:
            raise FrankensteinError(f"no summary {group!r}; summaries are {', '.join(self.summaries)}")
        return {s.key: s for s in self.summaries[group]}

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude={"spectra"})
