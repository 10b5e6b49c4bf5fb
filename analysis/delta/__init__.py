"""Weight deltas across Base -> IN -> RL: streaming energy and SVD metrics (METHOD.md section 2).

`analyze_deltas(base, in_, rl)` reads the three safetensors checkpoints (local folders or hub ids,
sharded or not) one tensor name at a time and never builds a model, so at most one tensor per
checkpoint is ever mapped into memory. Per 2-D tensor (higher ranks flattened to 2-D; 1-D tensors
and norms skipped) and per delta, dIN = IN - Base and dRL = RL - IN, it measures the Frobenius
norm, the relative norm ||delta||_F / ||W_ref||_F (W_ref = Base for dIN, IN for dRL) and, with the
"svd" metric, the spectral metrics of `analysis.spectra`, for every matrix including the embeddings
and lm_head. Records are aggregated per unified layer, section, component, block and part. Where a
tensor sits comes from the architecture adapter (`surgery.arch`); nothing here knows a tensor name.

One concept per module, in the order the data flows:

  schema    the result records (`DeltaReport` and its parts) and the delta vocabulary
  plan      the three checkpoints' headers, and which tensors are analysed, skipped or mismatched
  kernels   one tensor streamed in chunks: sums of squares, Gram matrices, its record
  summary   records summed per group; blocks ranked
  files     delta.json, tensors.csv, layers.csv, spectra.npz and the plots, written atomically
  analyze   `analyze_deltas`, the API that runs the above, and the run's metadata
"""

from analysis.delta.analyze import METRICS, analyze_deltas, parse_metrics
from analysis.delta.files import write_report
from analysis.delta.schema import (
    DeltaReport,
    DeltaStats,
    GroupStats,
    GroupSummary,
    SkippedTensor,
    TensorRecord,
)

__all__ = [
    "METRICS",
    "DeltaReport",
    "DeltaStats",
    "GroupStats",
    "GroupSummary",
    "SkippedTensor",
    "TensorRecord",
    "analyze_deltas",
    "parse_metrics",
    "write_report",
]
