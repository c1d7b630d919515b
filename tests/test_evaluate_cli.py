"""``lowcam-eval`` on small metadata folders, against the OpenCV oracle in tests/metrics_reference.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from _evaluate_cli_data import box_args, resize_bbox, run, write_box_dataset
from metrics_reference import (
    ref_pxap,
    ref_resize_nearest,
    ref_wsoleval_counts,
    ref_wsoleval_thresholds,
    stress_maps,
)
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("multi_contour", "multi_iou", "interval"),
    [
        (False, False, 0.01),
        (True, True, 0.01),
        (True, False, 0.01),
        (False, True, 0.05),
        pytest.param(True, True, 0.001, marks=pytest.mark.slow),  # the papers' interval: 20 s of oracle
    ],
)
def test_box_numbers_equal_the_oracle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], multi_contour: bool, multi_iou: bool, interval: float
) -> None:
    data = write_box_dataset(tmp_path)
    flags = ["--json", "--batch_size", "5", "--cam_curve_interval", str(interval)]
    if multi_contour:
        flags.append("--multi_contour_eval")
    if multi_iou:
        flags += ["--multi_iou_eval", "true"]
    code, out, err = run(capsys, *box_args(tmp_path, *flags))
    assert code == 0, err
    report = json.loads(out)
    taus = ref_wsoleval_thresholds(interval)
    deltas = (0.3, 0.5, 0.7)
    counts = ref_wsoleval_counts(
        data["maps"], data["gt"], multi=multi_contour, iou_thresholds=deltas, thresholds=taus
    )
    n = len(data["maps"])
    accs = counts * 100.0 / n
    assert report["n"] == n
    for d, percent in enumerate((30, 50, 70)):
        assert report[f"acc@{percent}"] == accs[d].max()  # the best count, count for count
        assert report[f"threshold@{percent}"] == pytest.approx(taus[int(accs[d].argmax())], abs=1e-12)
    expected = float(np.average(accs.max(1))) if multi_iou else float(accs[1].max())
    assert report["localization"] == pytest.approx(expected, rel=1e-12)
    if multi_contour == multi_iou:
        assert report["metric"] == ("MaxBoxAccV2" if multi_contour else "MaxBoxAcc")
    assert 0 < accs.max() < 100  # the data set is not trivial


def test_text_output_ends_like_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_box_dataset(tmp_path)
    code, out, _ = run(capsys, *box_args(tmp_path, "--iou_threshold_list", "50"))
    assert code == 0
    _, out_json, _ = run(capsys, *box_args(tmp_path, "--iou_threshold_list", "50", "--json"))
    value = json.loads(out_json)["localization"]
    assert out.strip().splitlines()[-1] == f"localization: {value}"
    assert "IoU 50" in out


def test_prepare_scoremaps_equals_the_reference_inference_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_box_dataset(tmp_path, raw_cams=True)
    code, _, err = run(capsys, *box_args(tmp_path, "--json"))
    assert code == 1 and "--prepare_scoremaps" in err  # raw CAMs of another size are refused by default
    code, out, err = run(capsys, *box_args(tmp_path, "--json", "--prepare_scoremaps", "--multi_contour_eval"))
    assert code == 0, err
    counts = ref_wsoleval_counts(
        data["maps"], data["gt"], multi=True, iou_thresholds=(0.5,), thresholds=ref_wsoleval_thresholds(0.01)
    )
    assert json.loads(out)["acc@50"] == (counts * 100.0 / len(data["maps"])).max()


def write_mask_dataset(tmp_path: Path) -> dict[str, Any]:
    """An OpenImages-like split: masks and ignore masks as PNG files of the images' own sizes."""
    rng = np.random.default_rng(3)
    maps = [m for m in stress_maps(rng, 224, 224) if not np.isnan(m).any()]
    n = len(maps)
    meta = tmp_path / "metadata" / "OpenImages" / "test"
    meta.mkdir(parents=True)
    mask_root = tmp_path / "dataset" / "OpenImages"
    ids, lines, fgs, ignores = [], [], [], []
    for i in range(n):
        image_id = f"test/cls{i % 2}/{i:04d}.jpg"
        ids.append(image_id)
        h, w = int(rng.integers(40, 300)), int(rng.integers(40, 300))
        instances = []
        for k in range(int(rng.integers(1, 3))):
            mask = np.zeros((h, w), dtype=np.uint8)
            y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            mask[y0 : y0 + h // 3, x0 : x0 + w // 3] = 255
            rel = f"masks/cls{i % 2}/{i:04d}_m{k}.png"
            (mask_root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(mask_root / rel)
            instances.append(ref_resize_nearest(np.float32(cv2.imread(str(mask_root / rel), 0)), 224))
            ignore_rel = ""
            if k == 0 and i % 4 != 3:  # most images have an ignore mask; a few have none
                ignore = np.zeros((h, w), dtype=np.uint8)
                ignore[h // 2 :, : w // 2] = 255
                ignore_rel = f"masks/cls{i % 2}/{i:04d}_ignore.png"
                Image.fromarray(ignore).save(mask_root / ignore_rel)
                ignores.append(
                    ref_resize_nearest(np.float32(cv2.imread(str(mask_root / ignore_rel), 0)), 224)
                )
            elif k == 0:
                ignores.append(None)
            lines.append(f"{image_id},{rel},{ignore_rel}\n")
        fgs.append(np.stack(instances))
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},{k % 2}\n" for k, i in enumerate(ids)))
    (meta / "localization.txt").write_text("".join(lines))
    for image_id, m in zip(ids, maps):
        path = tmp_path / "scoremaps" / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, m)
    return {"maps": maps, "masks": fgs, "ignores": ignores}


def test_pxap_equals_the_oracle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_mask_dataset(tmp_path)
    args = [
        "--scoremap_root",
        str(tmp_path / "scoremaps"),
        "--metadata_root",
        str(tmp_path / "metadata"),
        "--mask_root",
        str(tmp_path / "dataset"),
        "--dataset_name",
        "OpenImages",
        "--split",
        "test",
        "--no_progress",
        "--json",
        "--batch_size",
        "4",
    ]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    report = json.loads(out)
    expected, _, _ = ref_pxap(data["maps"], data["masks"], data["ignores"], ref_wsoleval_thresholds(0.01))
    assert report["metric"] == "PxAP" and report["n"] == len(data["maps"])
    assert report["localization"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert report["pxap"] == report["localization"]
    (tmp_path / "dataset" / "OpenImages" / "masks" / "cls1" / "0001_m0.png").unlink()
    code, _, err = run(capsys, *args)
    assert code == 1 and "localization.txt:" in err and "mask of image 'test/cls1/0001.jpg' not found" in err


def test_progress_without_tqdm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    n = len(write_box_dataset(tmp_path)["ids"])
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    args = [a for a in box_args(tmp_path, "--json") if a != "--no_progress"]
    code, out, err = run(capsys, *args)
    assert code == 0
    assert f"lowcam-eval: {n}/{n} score maps" in err
    json.loads(out)  # stdout holds the JSON object only


def test_module_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lowcam.metrics.evaluate", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--scoremap_root", "--metadata_root", "--mask_root", "--multi_contour_eval", "--json"):
        assert flag in result.stdout


def test_docs_python_examples_agree_with_the_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/evaluate.md: maps saved by its save_scoremaps, evaluated by its evaluate_in_python and by the CLI."""
    page = ROOT / "docs" / "evaluate.md"
    if not page.is_file():
        pytest.skip("docs/ is not shipped in the sdist")
    namespace: dict[str, Any] = {}
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
        exec(compile(block, str(page), "exec"), namespace)
    data = write_box_dataset(tmp_path)
    keep = 5
    meta = tmp_path / "metadata" / "CUB" / "test"
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        lines = (meta / name).read_text().splitlines(keepends=True)
        (meta / name).write_text(
            "".join(line for line in lines if line.split(",")[0].strip() in data["ids"][:keep])
        )
    cams = torch.rand(keep, 14, 14, generator=torch.Generator().manual_seed(1)) ** 2
    namespace["save_scoremaps"](cams, data["ids"][:keep], str(tmp_path / "scoremaps"))
    value = namespace["evaluate_in_python"](str(meta), str(tmp_path / "scoremaps"))
    code, out, err = run(
        capsys,
        *box_args(
            tmp_path, "--multi_contour_eval", "--multi_iou_eval", "--cam_curve_interval", "0.001", "--json"
        ),
    )
    assert code == 0, err
    assert json.loads(out)["localization"] == pytest.approx(value, rel=1e-12)
    assert json.loads(out)["metric"] == "MaxBoxAccV2"


def test_thresholds_are_printed_as_grid_values() -> None:
    # before: --json printed threshold@50 = 0.28700000000000003 (287 * 0.001)
    from lowcam import metrics
    from lowcam.metrics.evaluate import _read_result

    counts = torch.zeros(1, 1000, dtype=torch.int64)
    counts[0, 287] = 1
    result = metrics.BoxAccuracyResult.from_counts(
        "maxboxacc", metrics.wsoleval_thresholds(), (0.5,), counts, 1
    )
    assert _read_result(result, [50])["threshold"] == {50: 0.287}


def test_a_tiny_real_box_is_evaluated_as_the_reference_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: "gt_boxes[0] ... row 0 is all zero, which looks like padding": a.jpg,0,0,3,3 in a 1000×800
    # image becomes [0, 0, 0, 0] at 224 (a one-pixel box in the inclusive convention), valid for the reference
    meta = tmp_path / "metadata" / "CUB" / "test"
    meta.mkdir(parents=True)
    ids = ["a.jpg", "b.jpg", "c.jpg"]
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "image_sizes.txt").write_text("".join(f"{i},1000,800\n" for i in ids))
    boxes = {"a.jpg": (0, 0, 3, 3), "b.jpg": (0, 0, 3, 3), "c.jpg": (100, 100, 900, 700)}
    (meta / "localization.txt").write_text(
        "".join(f"{i},{','.join(map(str, b))}\n" for i, b in boxes.items())
    )
    rng = np.random.default_rng(3)
    blank = np.zeros((224, 224))  # no contour at any threshold: the reference's box is [0, 0, 0, 0]
    maps = {"a.jpg": blank, "b.jpg": rng.random((224, 224)), "c.jpg": rng.random((224, 224))}
    for image_id, m in maps.items():
        (tmp_path / "scoremaps").mkdir(exist_ok=True)
        np.save(tmp_path / "scoremaps" / f"{image_id}.npy", m)
    code, out, err = run(capsys, *box_args(tmp_path, "--json", "--cam_curve_interval", "0.05"))
    assert code == 0, err
    report = json.loads(out)
    gt = [np.asarray([resize_bbox(np.asarray(boxes[i]), 1000, 800)]) for i in ids]
    assert gt[0].tolist() == [[0, 0, 0, 0]]
    taus = ref_wsoleval_thresholds(0.05)
    counts = ref_wsoleval_counts(
        [maps[i] for i in ids], gt, multi=False, iou_thresholds=(0.5,), thresholds=taus
    )
    assert report["acc@50"] == (counts[0] * 100.0 / 3).max()
    assert report["acc@50"] >= 100.0 / 3  # the blank map's box matches the tiny box, as in the reference
