"""Proof that make-tiny checkpoints are real for the harness: lmms-eval's built-in qwen2_5_vl runs them."""

from __future__ import annotations

import sys

import pytest

from conftest import run_cli
from lmms_tasks import read_run, write_counting_task


@pytest.mark.cli
def test_builtin_qwen2_5_vl_runs_tiny_checkpoint(tiny_trio, tmp_path):
    tasks = write_counting_task(tmp_path)
    out = tmp_path / "out"
    result = run_cli([
        sys.executable, "-m", "lmms_eval",
        "--model", "qwen2_5_vl",
        "--model_args", f"pretrained={tiny_trio['in']},device=cpu,device_map=cpu",
        "--tasks", "tiny_count", "--include_path", str(tasks),
        "--output_path", str(out), "--log_samples",
    ])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results, samples = read_run(out, "tiny_count")
    assert "exact_match,none" in results
    assert len(samples) == 2
    assert all(isinstance(s["filtered_resps"], str) and "exact_match" in s for s in samples)
