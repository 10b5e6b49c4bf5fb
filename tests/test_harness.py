"""Reading harness results: errors for folders without results or without per-layer curves."""

from __future__ import annotations

import json

from conftest import cli_path, run_cli


def test_curves_needs_a_results_file(tmp_path):
    result = run_cli([cli_path("frankenstein"), "curves", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip() == f"frankenstein: error: no lmms-eval *_results.json at {tmp_path}"


def test_curves_of_a_plain_run_is_a_clear_error(tmp_path):
    plain = {"results": {"frank_vision_ocr": {"alias": "frank_vision_ocr", "accuracy,none": 0.5}}}
    path = tmp_path / "x_results.json"
    path.write_text(json.dumps(plain))
    result = run_cli([cli_path("frankenstein"), "curves", str(path), "-o", str(tmp_path / "out")])
    assert result.returncode == 2 and "holds no per-layer curves" in result.stderr
    assert not (tmp_path / "out").exists()
