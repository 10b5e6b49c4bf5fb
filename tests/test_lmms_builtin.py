"""Proof that make-tiny checkpoints are real for the harness: lmms-eval's built-in qwen2_5_vl runs them."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from PIL import Image, ImageDraw

from conftest import run_cli


def _write_counting_task(root):
    """A two-item counting task in lmms-eval's format, reading local files only."""
    data = root / "data"
    (data / "images").mkdir(parents=True)
    rows = []
    for i, n in enumerate([2, 3]):
        img = Image.new("RGB", (112, 112), "white")
        draw = ImageDraw.Draw(img)
        for k in range(n):
            draw.ellipse([10 + 30 * k, 40, 30 + 30 * k, 60], fill="red")
        img.save(data / "images" / f"{i}.png")
        rows.append({"id": i, "image": f"images/{i}.png", "question": "How many circles?", "answer": str(n)})
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "tiny_count.yaml").write_text(textwrap.dedent(f"""\
        task: tiny_count
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data / 'test.jsonl'}
        test_split: test
        output_type: generate_until
        doc_to_visual: !function tiny_count_utils.doc_to_visual
        doc_to_text: !function tiny_count_utils.doc_to_text
        doc_to_target: answer
        generation_kwargs:
          max_new_tokens: 4
          do_sample: false
        process_results: !function tiny_count_utils.process_results
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """))
    (tasks / "tiny_count_utils.py").write_text(textwrap.dedent(f"""\
        from PIL import Image
        def doc_to_visual(doc):
            return [Image.open({str(data)!r} + "/" + doc["image"]).convert("RGB")]
        def doc_to_text(doc, lmms_eval_specific_kwargs=None):
            return doc["question"]
        def process_results(doc, results):
            return {{"exact_match": float(results[0].strip() == doc["answer"])}}
        """))
    return tasks


@pytest.mark.cli
def test_builtin_qwen2_5_vl_runs_tiny_checkpoint(tiny_trio, tmp_path):
    tasks = _write_counting_task(tmp_path)
    out = tmp_path / "out"
    result = run_cli([
        sys.executable, "-m", "lmms_eval",
        "--model", "qwen2_5_vl",
        "--model_args", f"pretrained={tiny_trio['in']},device=cpu,device_map=cpu",
        "--tasks", "tiny_count", "--include_path", str(tasks),
        "--output_path", str(out), "--log_samples",
    ])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in out.rglob("*_results.json")]
    assert len(results) == 1, result.stdout[-2000:]
    assert "exact_match,none" in results[0]["results"]["tiny_count"]
    samples = [json.loads(line) for p in out.rglob("*_samples_tiny_count.jsonl") for line in p.read_text().splitlines()]
    assert len(samples) == 2
    assert all(isinstance(s["filtered_resps"], str) and "exact_match" in s for s in samples)
