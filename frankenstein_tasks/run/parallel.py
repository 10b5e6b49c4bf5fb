"""Data-parallel stages: one harness call of `frankenstein run` answered by N processes (`processes: N`).

With `processes: 1` (the default) a stage calls the harness in the run's own process. With N > 1,
`call` starts N workers (this module run as `python -m`), each with the environment `torchrun
--nproc_per_node N` gives its workers (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): each
joins one `torch.distributed` group (gloo on CPU, NCCL with one GPU per process), the harness deals it
its share of the docs, and rank 0 writes the results where the stage expects them. The run itself stays
one process: it owns run.json, the stage folders and the report, and waits for the workers.

Why not torchrun itself: the run must end with one line when a rank fails (torchrun ends with its own
traceback block), and the workers must never outlive the run. Each worker is told by the kernel to die
with the run (PR_SET_PDEATHSIG), so a killed run never leaves ranks writing behind a restarted one.

Killed ranks and resume: a rank that dies (a kill, out of memory) stops the others and fails the stage
with one line naming it; the stage folder is not written, and every response the ranks had finished is
in the response store (one file per rank, `models/response_store.py`), so the next run, with any number
of processes, reuses them and computes only the rest.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from surgery.errors import FrankensteinError

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_GRACE_S = 10  # how long stopped ranks get to exit on SIGTERM before SIGKILL


def _calls() -> dict[str, Callable[..., Any]]:
    """The harness calls a stage can hand to the ranks, by name (the name travels to the workers)."""
    from frankenstein_tasks.run import harness

    return {"lmms_eval": harness.evaluate, "lm_eval": harness.lm_eval_evaluate}


def check_processes(processes: int, device: str | None) -> None:
    """One line before any stage runs if `processes` GPUs are asked for and fewer are visible."""
    if processes <= 1 or device not in (None, "auto", "cuda"):
        return
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus and processes > gpus:
        raise FrankensteinError(
            f"processes: {processes} runs one GPU per process, but {gpus} GPU(s) are visible; "
            f"set processes: {gpus} or fewer (or device: cpu)"
        )


def call(processes: int, name: str, *args: Any, device: str | None = None, **kwargs: Any) -> None:
    """`_calls()[name](*args, **kwargs)`, in this process (processes == 1) or answered by `processes` ranks.

    `device` is the model's device setting (each rank's own GPU under `auto`); arguments must be JSON
    values (paths become strings)."""
    if processes <= 1:
        _calls()[name](*args, **kwargs)
        return
    with tempfile.TemporaryDirectory(prefix="frankenstein-ranks-") as folder:
        spec = Path(folder) / "call.json"
        spec.write_text(json.dumps({"call": name, "device": device, "args": args, "kwargs": kwargs}, default=str))
        workers = _start(spec, processes)
        try:
            failed = _wait(workers)
        finally:
            _stop(workers)
        if failed is not None:
            rank, code = failed
            print(file=sys.stderr, flush=True)  # the error's line of its own, after a stopped rank's progress bar
            errors = sorted(Path(folder).glob("error.rank*"))
            if errors:  # bad input met by a rank: its own line (every rank meets the same)
                raise FrankensteinError(errors[0].read_text())
            raise FrankensteinError(
                f"rank {rank} of {processes} {_exit_reason(code)}; the other ranks were stopped. The responses "
                "they finished are kept: run again to resume"
            )


def _start(spec: Path, processes: int) -> list[subprocess.Popen]:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes)}
    # As torchrun: CPU ranks share the cores instead of each taking all of them.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    parent = os.getpid()
    # Looked up here: between fork and exec the child may only make the call. (Linux; elsewhere the
    # ranks are still stopped when a rank fails or on Ctrl-C, but a killed run leaves them running.)
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)

    def die_with_parent() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the run died before the call
            os._exit(1)

    # Their own session: Ctrl-C reaches the run, which stops the ranks (no traceback from each rank).
    return [
        subprocess.Popen([sys.executable, "-m", __name__, str(spec)], env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                         preexec_fn=die_with_parent, start_new_session=True)
        for rank in range(processes)
    ]


def _wait(workers: list[subprocess.Popen]) -> tuple[int, int] | None:
    """None when every rank finished; else (rank, exit code) of the first one seen failing."""
    while True:
        codes = [w.poll() for w in workers]
        for rank, code in enumerate(codes):
            if code not in (None, 0):
                return rank, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def _stop(workers: list[subprocess.Popen]) -> None:
    """Ends the ranks still running (a failed rank's partners, or all of them on Ctrl-C)."""
    running = [w for w in workers if w.poll() is None]
    for w in running:
        w.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for w in running:
        try:
            w.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"failed with exit status {code} (its output above says why)"


def _free_port() -> int:
    """A port free now for rank 0's rendezvous (as `torchrun --standalone` picks one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(spec_path: str) -> int:
    """One rank: join the process group, answer this rank's share of the call, leave the group."""
    from frankenstein_tasks.models.distributed import join_process_group

    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ["RANK"])
    try:
        join_process_group(spec["device"])
        _calls()[spec["call"]](*spec["args"], **spec["kwargs"])
    except FrankensteinError as e:
        (Path(spec_path).parent / f"error.rank{rank}").write_text(str(e))
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
