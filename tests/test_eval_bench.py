"""bench/eval_batched.py end to end on the CPU with the tiny config, as on a bare GPU machine: no datasets,
click, opencv or pyarrow importable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the benchmark needs the eval extra")
pytest.importorskip("transformers", reason="the benchmark needs the eval extra")

REPO = Path(__file__).resolve().parent.parent
BARE = ("datasets", "click", "cv2", "pyarrow")


def test_gpu_bench_dry_runs_on_the_cpu_without_the_build_dependencies(tmp_path: Path):
    out = tmp_path / "gpu.json"
    code = (f"import runpy, sys\nfor m in {BARE!r}:\n    sys.modules[m] = None\n"
            f"sys.argv = ['eval_batched.py', '--gpu', '--tiny-config', '--device', 'cpu', '--episodes', '3', "
            f"'--batch-sizes', '1,3', '--max-new-tokens', '2', '--advance', 'model', '--json', {str(out)!r}]\n"
            "runpy.run_path('bench/eval_batched.py', run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["results"]
    assert [r["batch_size"] for r in rows] == [1, 3]
    assert all(r["episodes"] == 3 and r["failed"] == 0 and r["turns"] == 3 for r in rows)
    assert all(r["turns_per_s"] > 0 and r["episodes_per_s"] > 0 for r in rows)
    assert result["environment"]["imported"] == []
