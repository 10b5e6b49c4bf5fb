"""Streaming one tensor of Base, IN and RL through the delta metrics, a chunk at a time.

For each planned tensor the three files are opened, the tensor is walked in chunks of rows (or of
columns, for a wide matrix with the "svd" metric), and the files are closed again: at most one
tensor per checkpoint is ever mapped into memory, whatever the model size. Per chunk the sums of
squares (`SumsOfSquares`) and, with "svd", the Gram matrices of both deltas
(`analysis.spectra.GramAccumulator`) are updated; the per-tensor record comes out at the end.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

from analysis.delta.plan import Checkpoint, PlanItem
from analysis.delta.schema import DELTAS, REFERENCE, ROLES, DeltaStats, TensorRecord
from analysis.spectra import one_thread
from surgery.errors import FrankensteinError
from surgery.finite import check_finite

# Chunk sizes. A Gram chunk of ~4M elements is 32 MB in float64 (times five buffers); energy works
# on 256K-element blocks whose float64 buffers are reused, which keeps them in cache and avoids
# page-faulting fresh memory for every block (measured 2-10x faster on CPU than fresh temporaries).
CHUNK_ELEMENTS = 1 << 22
ENERGY_BLOCK = 1 << 18


class SumsOfSquares:
    """Running ||Base||², ||IN||², ||RL||², ||dIN||², ||dRL||² of one tensor, in float64.

    Inputs are converted block by block into reused float64 buffers; the squares come from dot
    products. A non-finite sum means a NaN or Inf in the input (a finite bf16/f16/f32 value squared
    cannot overflow float64), which is checked after every chunk.
    """

    def __init__(self) -> None:
        import torch

        self._buf = [torch.empty(ENERGY_BLOCK, dtype=torch.float64) for _ in range(5)]
        self.sums = {"base": 0.0, "in": 0.0, "rl": 0.0, "d_in": 0.0, "d_rl": 0.0}

    def add(self, base: Any, inn: Any, rl: Any) -> dict[str, float]:
        """Add one chunk (equal shapes); returns this chunk's sums of the three inputs."""
        with one_thread():
            return self._add(base, inn, rl)

    def _add(self, base: Any, inn: Any, rl: Any) -> dict[str, float]:
        import torch

        flat = [t.reshape(-1) for t in (base, inn, rl)]
        n = flat[0].numel()
        chunk = {"base": 0.0, "in": 0.0, "rl": 0.0, "d_in": 0.0, "d_rl": 0.0}
        for start in range(0, n, ENERGY_BLOCK):
            stop = min(start + ENERGY_BLOCK, n)
            xb, xi, xr, d1, d2 = (b[: stop - start] for b in self._buf)
            xb.copy_(flat[0][start:stop])
            xi.copy_(flat[1][start:stop])
            xr.copy_(flat[2][start:stop])
            torch.sub(xi, xb, out=d1)
            torch.sub(xr, xi, out=d2)
            for name, x in (("base", xb), ("in", xi), ("rl", xr), ("d_in", d1), ("d_rl", d2)):
                chunk[name] += float(torch.dot(x, x))
        for name, value in chunk.items():
            self.sums[name] += value
        return chunk


def analyze_tensor(
    item: PlanItem, ckpts: dict[str, Checkpoint], *, svd: bool, topk: int, device: str, progress: Any = None
) -> tuple[TensorRecord, dict[str, Any]]:
    """Stream one tensor of the three checkpoints; returns its record and (with svd) all singular values."""
    import torch

    from analysis.spectra import GramAccumulator

    rows, cols = item.record["rows"], item.record["cols"]
    bytes_per_element = item.bytes / item.record["numel"]
    sums = SumsOfSquares()
    grams = {d: GramAccumulator(rows, cols, device) for d in DELTAS} if svd else {}
    # Chunks follow the Gram matrix (rows of a tall delta, columns of a wide one); energy alone uses rows.
    by_rows = not svd or rows >= cols
    with _open_tensors(item) as views:
        for sl in _chunks(rows, cols) if by_rows else _chunks(cols, rows):
            parts = {r: (v[sl] if by_rows else v[:, sl]) for r, v in views.items()}
            chunk_sums = sums.add(parts["base"], parts["in"], parts["rl"])
            _check_finite(item, ckpts, chunk_sums, parts)
            if svd:
                with one_thread():  # elementwise: see one_thread; the Gram matmuls below use every thread
                    # Move first, convert there: 2 bytes per element cross to a GPU instead of 8.
                    f64 = {r: p.to(device).to(torch.float64) for r, p in parts.items()}
                    d_in, d_rl = f64["in"] - f64["base"], f64["rl"] - f64["in"]
                    del f64
                grams["in"].add(d_in)
                grams["rl"].add(d_rl)
                del d_in, d_rl
            del parts
            if progress is not None:
                progress.update(int(bytes_per_element * (sl.stop - sl.start) * (cols if by_rows else rows)))
    return _record(item, sums, grams, topk)


def _record(
    item: PlanItem, sums: SumsOfSquares, grams: dict[str, Any], topk: int
) -> tuple[TensorRecord, dict[str, Any]]:
    """The tensor's record from its sums of squares and (with svd) its Gram matrices."""
    from analysis.spectra import spectral_metrics

    deltas: dict[str, DeltaStats] = {}
    spectra: dict[str, Any] = {}
    for d in DELTAS:
        energy = sums.sums[f"d_{d}"]
        ref = math.sqrt(sums.sums[REFERENCE[d]])
        frob = math.sqrt(energy)
        rel = frob / ref if ref > 0 else (0.0 if frob == 0 else math.inf)
        fields: dict[str, Any] = dict(frobenius_norm=frob, energy=energy, reference_norm=ref, relative_norm=rel)
        if grams:
            sigma = grams[d].singular_values()
            spectra[d] = sigma
            fields.update(spectral_metrics(sigma, energy, topk))
        deltas[d] = DeltaStats(**fields)
    return TensorRecord(**item.record, deltas=deltas), spectra


@contextlib.contextmanager
def _open_tensors(item: PlanItem) -> Iterator[dict[str, Any]]:
    """The tensor of each checkpoint as a 2-D view of its memory-mapped file, unmapped on exit."""
    from safetensors import safe_open

    with contextlib.ExitStack() as stack:
        views = {}
        for role, info in item.infos.items():
            handle = stack.enter_context(safe_open(str(info.file), framework="pt"))
            views[role] = handle.get_tensor(info.name).reshape(item.record["rows"], item.record["cols"])
        try:
            yield views
        finally:
            views.clear()  # drop the views before the files are unmapped


def _chunks(length: int, width: int) -> Iterator[slice]:
    step = max(1, CHUNK_ELEMENTS // max(1, width))
    for start in range(0, length, step):
        yield slice(start, min(start + step, length))


def _check_finite(
    item: PlanItem, ckpts: dict[str, Checkpoint], chunk_sums: dict[str, float], parts: dict[str, Any]
) -> None:
    """A non-finite sum of squares means NaN or Inf in that checkpoint's chunk: name the tensor (the
    same check and message as a probe's model load, `surgery.finite`)."""
    for role in ROLES:
        if math.isfinite(chunk_sums[role]):
            continue
        name, where = item.infos[role].name, ckpts[role].label
        check_finite(parts[role], name, where)
        raise FrankensteinError(f"tensor {name} in {where} holds values too large to square in float64")
