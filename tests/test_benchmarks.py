"""The benchmark scripts run (tiny CPU configurations) and the GPU script fits one 10-minute device call.

The GPU machine is lent for 15 minutes at most, so a script that fails on an argument or a renamed function
there wastes the only chance to measure; these smoke runs catch that here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GPU_SCRIPT = ROOT / "benchmarks" / "run_gpu.sh"


def _run(args: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_gpu_script_fits_one_device_call() -> None:
    text = GPU_SCRIPT.read_text()
    limits = [int(t) for t in re.findall(r"\btimeout (\d+)", text)]
    assert len(limits) >= 7 and sum(limits) <= 560  # per-call limit 600 s, with room for the set-up
    subprocess.run(["bash", "-n", str(GPU_SCRIPT)], check=True)
    for script in set(re.findall(r"(benchmarks/\w+\.py|tests/\w+\.py)", text)):
        assert (ROOT / script).exists(), script


def test_bench_ops_smoke(tmp_path: Path) -> None:
    out = tmp_path / "ops"
    args = ["--device", "cpu", "--batches", "2", "--sizes", "8", "--classes", "30", "--repeats", "1"]
    args += ["--warmup", "0", "--min-time", "0", "--impls", "loop", "torch", "--out", str(out)]
    _run([str(ROOT / "benchmarks" / "bench_ops.py"), *args], tmp_path)
    rows = json.loads(out.with_suffix(".json").read_text())["results"]
    assert {(r["component"], r["impl"]) for r in rows} == {
        (c, i) for c in ("entropy", "area", "erasing") for i in ("loop", "torch")
    }
    # --resume keeps those rows and measures nothing new
    _run([str(ROOT / "benchmarks" / "bench_ops.py"), *args, "--resume"], tmp_path)
    assert len(json.loads(out.with_suffix(".json").read_text())["results"]) == len(rows)


def test_bench_metrics_smoke(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    args = ["--device", "cpu", "--n", "3", "--quick", "--protocols", "maxboxacc_v2,ornet", "--maps", "smooth"]
    _run([str(ROOT / "benchmarks" / "bench_metrics.py"), *args, "--out", str(tmp_path)], tmp_path)
    rows = json.loads((tmp_path / "metrics_cpu.json").read_text())["rows"]
    assert [r["protocol"] for r in rows] == ["maxboxacc_v2", "ornet"]
    assert all(r["counts_equal"] for r in rows)


def test_bench_step_smoke(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    out = tmp_path / "step"
    args = ["--device", "cpu", "--batches", "2", "--image-size", "32", "--classes", "30", "--repeats", "1"]
    args += ["--warmup", "0", "--precisions", "fp32", "--out", str(out)]
    _run([str(ROOT / "benchmarks" / "bench_step.py"), *args], tmp_path)
    rows = json.loads(out.with_suffix(".json").read_text())["results"]
    assert {r["pieces"] for r in rows} == {"loop", "lowcam"}
