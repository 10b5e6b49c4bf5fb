"""How the harness models take part in a data-parallel run: ranks, their devices, what each rank did.

Under a multi-process launcher (`torchrun --nproc_per_node N`, `accelerate launch`, or `frankenstein
run` with `processes: N`) the environment names each process's rank (RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT). Each process joins one `torch.distributed` group (gloo on CPU, NCCL with
one GPU per process), runs the whole model on its own device, and gets its share of the docs from the
harness (lmms-eval and lm-eval deal them out in turn: rank r gets docs r, r + N, r + 2N, ...); rank 0
merges the results. Both harness models (`frankenstein.py`, `lm_eval_model.py`) and the per-layer
scoring (`layer_scores.py`) ask this module, so the launcher's environment is read in one place.

`Shares` records which docs this rank answered; gathered on rank 0, it lands in the results as
`results["frankenstein"]["docs_by_rank"]`, so a run shows that every rank did its part.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from typing import Any, Iterable


def join_process_group(device: str | None) -> tuple[int, int, str]:
    """(rank, world size, device) of this process.

    One process (no launcher, or WORLD_SIZE=1): (0, 1, the device resolved). Under a launcher: joins the
    process group, and `device` auto becomes this process's own GPU (cuda:LOCAL_RANK) when there are
    GPUs, else the CPU."""
    from surgery.loading import resolve_device

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, resolve_device(device)
    import torch
    import torch.distributed as dist

    if device in (None, "auto") and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    device = resolve_device(device)
    if device.startswith("cuda"):
        # NCCL's object collectives (gather_object, used for results) run on the current device.
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the process group this process has joined; (0, 1) when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_to_rank0(local: Any) -> list[Any] | None:
    """Every rank's `local`, in rank order, on rank 0; None on the other ranks. Every rank must call it."""
    rank, world = rank_and_world()
    if world == 1:
        return [local]
    import torch.distributed as dist

    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(local, gathered, dst=0)
    return gathered


class Shares:
    """The docs this rank answered, per task (requests it served from the response store included)."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world
        self.docs: dict[str, set] = defaultdict(set)

    def add(self, requests: Iterable[Any], request_type: str) -> None:
        """Record a batch of harness requests (each has `task_name` and `doc_id`); under several ranks,
        say on stderr how many this rank got, so the log shows every rank at work."""
        requests = list(requests)
        for request in requests:
            self.docs[str(request.task_name)].add(request.doc_id)
        if self.world > 1:
            tasks = ", ".join(sorted({str(r.task_name) for r in requests}))
            print(f"frankenstein: rank {self.rank} of {self.world} answers {len(requests)} {request_type} requests ({tasks})",
                  file=sys.stderr, flush=True)

    def by_rank(self) -> dict[str, list[list[Any]]] | None:
        """task -> the doc ids each rank answered (one sorted list per rank), on rank 0; None elsewhere.
        Every rank must call it."""
        gathered = gather_to_rank0({task: sorted(docs, key=str) for task, docs in self.docs.items()})
        if gathered is None:
            return None
        tasks = dict.fromkeys(task for part in gathered for task in part)
        return {task: [part.get(task, []) for part in gathered] for task in tasks}
