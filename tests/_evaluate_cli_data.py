"""The small CUB-like metadata folder with score maps that the ``lowcam-eval`` tests share, and the call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from metrics_reference import ref_prepare_scoremap, stress_gt, stress_maps

from lowcam.metrics.evaluate import main

__all__ = ["box_args", "resize_bbox", "run", "write_box_dataset"]


def resize_bbox(box: np.ndarray, width: int, height: int) -> list[int]:
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
    gt224 = [np.asarray([resize_bbox(b, w, h) for b in bb]) for bb, (w, h) in zip(boxes, sizes)]
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
