"""``lowcam-eval`` on bad input: every problem named with its file (and line), nothing evaluated from a
half-checked folder, memory bounded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _evaluate_cli_data import box_args, run, write_box_dataset
from metrics_reference import ref_wsoleval_thresholds

from lowcam.metrics.evaluate import main


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
