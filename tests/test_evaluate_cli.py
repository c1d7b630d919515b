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
from metrics_reference import (
    ref_prepare_scoremap,
    ref_pxap,
    ref_resize_nearest,
    ref_wsoleval_counts,
    ref_wsoleval_thresholds,
    stress_gt,
    stress_maps,
)
from PIL import Image

from lowcam.metrics.evaluate import main

ROOT = Path(__file__).resolve().parent.parent


def _resize_bbox(box: np.ndarray, width: int, height: int) -> list[int]:
    """wsolevaluation's resize_bbox to 224×224, written out."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [
        int(x0 * 224.0 / width),
        int(y0 * 224.0 / height),
        int(x1 * 224.0 / width),
        int(y1 * 224.0 / height),
    ]


def write_box_dataset(tmp_path: Path, *, raw_cams: bool = False) -> dict[str, Any]:
    """A CUB-like split: metadata/CUB/test/*.txt, score maps under nested folders, some float32."""
    rng = np.random.default_rng(7)
    maps = [m for m in stress_maps(rng, 224, 224) if not np.isnan(m).any()]
    # and a few CAMs prepared as the reference's inference does
    cams = [rng.random((14, 14)) ** 3 for _ in range(4)]
    maps += [ref_prepare_scoremap(c) for c in cams]
    n = len(maps)
    ids, sizes, boxes = [], [], []
    for i in range(n):
        ids.append(f"{i % 3:03d}.Class_{i % 3}/img_{i}.jpg")
        width, height = int(rng.integers(60, 600)), int(rng.integers(60, 600))
        sizes.append((width, height))
        gt = stress_gt(rng, height, width, 1)[0]
        gt[:, 2] = np.maximum(gt[:, 2], gt[:, 0] + 1)  # x1 > x0, y1 > y0, inside the image
        gt[:, 3] = np.maximum(gt[:, 3], gt[:, 1] + 1)
        boxes.append(gt)
    meta = tmp_path / "metadata" / "CUB" / "test"
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},{k % 3}\n" for k, i in enumerate(ids)))
    (meta / "image_sizes.txt").write_text("".join(f"{i},{w},{h}\n" for i, (w, h) in zip(ids, sizes)))
    lines = [f"{i},{x0},{y0},{x1},{y1}\n" for i, b in zip(ids, boxes) for x0, y0, x1, y1 in b.tolist()]
    (meta / "localization.txt").write_text("".join(lines))
    scoremaps = tmp_path / "scoremaps"
    evaluated = []
    for k, (image_id, m) in enumerate(zip(ids, maps)):
        path = scoremaps / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        if raw_cams:
            cam = 3.0 * rng.random((7 + k % 3, 9)) - 1.0  # raw CAMs of several sizes, not normalised
            np.save(path, cam)
            evaluated.append(ref_prepare_scoremap(cam))
        else:
            stored = m.astype(np.float32) if k % 2 else m
            np.save(path, stored)
            evaluated.append(stored.astype(np.float64))  # the reference evaluates t2n(cam): float64
    gt224 = [np.asarray([_resize_bbox(b, w, h) for b in bb]) for bb, (w, h) in zip(boxes, sizes)]
    return {"root": tmp_path, "maps": evaluated, "gt": gt224, "ids": ids}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def box_args(root: Path, *extra: str) -> list[str]:
    return [
        "--scoremap_root",
        str(root / "scoremaps"),
        "--metadata_root",
        str(root / "metadata"),
        "--dataset_name",
        "CUB",
        "--split",
        "test",
        "--no_progress",
        *extra,
    ]


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


# ------------------------------------------------------------------------------------------------ errors


def _error(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> str:
    code, out, err = run(capsys, *box_args(root, *extra))
    assert code == 1 and out == ""
    return err


def test_missing_and_malformed_maps_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_box_dataset(tmp_path)
    ids = data["ids"]
    ids_file = tmp_path / "metadata" / "CUB" / "test" / "image_ids.txt"
    victim = tmp_path / "scoremaps" / f"{ids[2]}.npy"
    good = np.load(victim)
    victim.unlink()
    assert f"{ids_file}:3: score map of image '{ids[2]}' not found" in _error(capsys, tmp_path)
    np.save(victim, good[:100])
    assert f"{victim}: " in (err := _error(capsys, tmp_path)) and "(100, 224)" in err and "224x224" in err
    bad = good.copy()
    bad[5, 5] = np.nan
    np.save(victim, bad)
    assert "NaN" in _error(capsys, tmp_path)
    np.save(victim, good * 2.0 + 0.5)
    assert "must lie in [0, 1]" in _error(capsys, tmp_path)
    np.save(victim, good[None])
    assert "2-D" in _error(capsys, tmp_path)
    np.save(victim, np.array(["a", "b"]))
    assert "real numbers" in _error(capsys, tmp_path)
    victim.write_bytes(b"garbage")
    assert "unreadable score map" in _error(capsys, tmp_path)


def test_metadata_errors_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_box_dataset(tmp_path)
    meta = tmp_path / "metadata" / "CUB" / "test"
    labels = (meta / "class_labels.txt").read_text()
    (meta / "class_labels.txt").write_text(labels + f"{data['ids'][0]},2\n")
    assert "class_labels.txt:" in (err := _error(capsys, tmp_path)) and "but 0 on line 1" in err
    (meta / "class_labels.txt").write_text(labels)
    sizes = (meta / "image_sizes.txt").read_text()
    (meta / "image_sizes.txt").write_text(sizes.replace(",", ",x", 1))
    assert f"{meta / 'image_sizes.txt'}:1: width must be an integer" in _error(capsys, tmp_path)
    (meta / "image_sizes.txt").write_text(sizes)
    boxes = (meta / "localization.txt").read_text()
    first = boxes.splitlines()[0].split(",")
    width = sizes.splitlines()[0].split(",")[1]
    (meta / "localization.txt").write_text(
        ",".join([*first[:3], str(int(width) + 5), first[4]]) + "\n" + boxes
    )
    assert f"{meta / 'localization.txt'}:1: box" in (err := _error(capsys, tmp_path)) and "leaves its" in err
    code, _, err = run(capsys, *box_args(tmp_path, "--keep_boxes_outside_image"))
    assert code == 0, err  # the reference keeps such a box
    (meta / "localization.txt").write_text(boxes)
    assert "lacks 50" in _error(capsys, tmp_path, "--iou_threshold_list", "30", "70")
    assert "distinct" in _error(capsys, tmp_path, "--iou_threshold_list", "50", "50")
    assert "cam_curve_interval" in _error(capsys, tmp_path, "--cam_curve_interval", "0")
    assert "metadata folder not found" in _error(capsys, tmp_path, "--split", "val")
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        (meta / name).write_text("\n")
    assert "lists no image" in _error(capsys, tmp_path)
    with pytest.raises(SystemExit) as caught:
        main(box_args(tmp_path, "--dataset_name", "VOC"))
    assert caught.value.code == 2


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


# -- score-map folders written as a unit, bounded reading ------------------------------------------------


def _manifest(root: Path, ids: list[str], **changes: Any) -> None:
    data: dict[str, Any] = {
        "format": "lowcam-scoremaps",
        "version": 1,
        "count": len(ids),
        "image_ids": sorted(ids),
    }
    data.update(changes)
    (root / "scoremaps" / "lowcam_scoremaps.json").write_text(json.dumps(data))


def test_interrupted_writer_and_manifest_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: a folder mixing maps of two runs was scored without a word, and *.tmp files were ignored
    data = write_box_dataset(tmp_path)
    ids: list[str] = data["ids"]
    scoremaps = tmp_path / "scoremaps"
    leftover = scoremaps / (ids[0] + ".npy.tmp")
    leftover.write_bytes(b"partial")
    err = _error(capsys, tmp_path)
    assert f"{scoremaps}: holds 1 unfinished file(s)" in err and ids[0] + ".npy.tmp" in err
    leftover.unlink()
    _manifest(tmp_path, ids[1:], count=len(ids) - 1)
    manifest = scoremaps / "lowcam_scoremaps.json"
    assert f"{manifest}: does not list image '{ids[0]}' (image_ids.txt line 1)" in _error(capsys, tmp_path)
    _manifest(tmp_path, [*ids, "extra/img.jpg"])
    assert "lists image 'extra/img.jpg', but" in _error(capsys, tmp_path)
    _manifest(tmp_path, ids, format="other")
    assert "not a lowcam score-map manifest" in _error(capsys, tmp_path)
    manifest.write_text("{not json")
    assert "unreadable score-map manifest" in _error(capsys, tmp_path)
    _manifest(tmp_path, ids)
    code, _, err = run(capsys, *box_args(tmp_path))
    assert code == 0, err


def test_npy_header_is_checked_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # before: a 136-byte file whose header claims (10**6, 10**6) float64 made numpy allocate 7.28 TiB
    data = write_box_dataset(tmp_path)
    victim = tmp_path / "scoremaps" / f"{data['ids'][1]}.npy"
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    with victim.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)  # type: ignore[no-untyped-call]
    assert victim.stat().st_size < 200
    err = _error(capsys, tmp_path, "--prepare_scoremaps")
    assert f"{victim}: " in err and "1000000000000 pixels" in err
    with victim.open("wb") as handle:
        np.lib.format.write_array_header_1_0(  # type: ignore[no-untyped-call]
            handle, {"descr": "<f8", "fortran_order": False, "shape": (224, 224)}
        )
    assert "its header promises a (224, 224) float64 array" in _error(capsys, tmp_path)


def test_every_map_is_checked_before_any_is_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # before: a missing map was found only when its batch was reached
    import lowcam.metrics.evaluate as evaluate

    data = write_box_dataset(tmp_path)
    (tmp_path / "scoremaps" / f"{data['ids'][-1]}.npy").unlink()
    loaded: list[str] = []
    real = evaluate._load_scoremap

    def spy(root: Path, image_id: str, meta: Any, prepare: bool) -> torch.Tensor:
        loaded.append(image_id)
        return real(root, image_id, meta, prepare)

    monkeypatch.setattr(evaluate, "_load_scoremap", spy)
    assert f"score map of image '{data['ids'][-1]}' not found" in _error(
        capsys, tmp_path, "--batch_size", "1"
    )
    assert loaded == []


def test_tiny_intervals_stay_bounded_and_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # before: 1e-300 overflowed, and 1e-8 grew to gigabytes on three images
    from lowcam.metrics import MaxBoxAcc
    from lowcam.metrics.evaluate import _box_thresholds

    data = write_box_dataset(tmp_path)
    assert "at least 2**-53" in _error(capsys, tmp_path, "--cam_curve_interval", "1e-300")
    assert _box_thresholds(1e-8, 10**8).numel() <= 32386
    flags = ["--json", "--multi_contour_eval", "--multi_iou_eval", "--cam_curve_interval"]
    code, out, err = run(capsys, *box_args(tmp_path, *flags, "1e-5"))  # 100,000 thresholds: the short list
    assert code == 0, err
    report = json.loads(out)
    full = MaxBoxAcc(2, thresholds=torch.from_numpy(ref_wsoleval_thresholds(1e-5)))  # the whole grid
    full.update(torch.from_numpy(np.stack(data["maps"])), [torch.from_numpy(g) for g in data["gt"]])
    want = full.compute()
    for percent in (30, 50, 70):
        assert report[f"acc@{percent}"] == want.acc[percent / 100]
        assert report[f"threshold@{percent}"] == want.scalars()[f"threshold@{percent / 100:g}"]
    code, out, err = run(capsys, *box_args(tmp_path, *flags, "1e-8"))
    assert code == 0, err
    assert json.loads(out)["localization"] >= report["localization"]  # a finer grid never scores less


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


def test_metadata_with_a_bom_reads_and_a_nul_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # before: "image 'a/1.jpg' is not in image_ids.txt" for a BOM or a NUL byte in image_ids.txt
    write_box_dataset(tmp_path)
    ids_file = tmp_path / "metadata" / "CUB" / "test" / "image_ids.txt"
    text = ids_file.read_text()
    code, plain, _ = run(capsys, *box_args(tmp_path, "--json"))
    ids_file.write_bytes(b"\xef\xbb\xbf" + text.encode())
    code, with_bom, err = run(capsys, *box_args(tmp_path, "--json"))
    assert code == 0, err
    assert json.loads(with_bom) == json.loads(plain)
    lines = text.splitlines(keepends=True)
    lines[2] = lines[2][:3] + "\x00" + lines[2][3:]
    ids_file.write_text("".join(lines))
    assert f"{ids_file}:3: holds a NUL byte" in _error(capsys, tmp_path)


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
    gt = [np.asarray([_resize_bbox(np.asarray(boxes[i]), 1000, 800)]) for i in ids]
    assert gt[0].tolist() == [[0, 0, 0, 0]]
    taus = ref_wsoleval_thresholds(0.05)
    counts = ref_wsoleval_counts(
        [maps[i] for i in ids], gt, multi=False, iou_thresholds=(0.5,), thresholds=taus
    )
    assert report["acc@50"] == (counts[0] * 100.0 / 3).max()
    assert report["acc@50"] >= 100.0 / 3  # the blank map's box matches the tiny box, as in the reference
