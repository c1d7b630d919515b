"""The oracle for lowcam.metrics: the reference protocols written as plain per-image, per-threshold loops.

Both protocol families are written here from their specification in docs/metrics.md ("The specification"),
one image and one threshold at a time: "wsoleval" with OpenCV's findContours, boundingRect and contourArea
and NumPy's histogram (the wsolevaluation code's inference and evaluation path, in the same structure: all
thresholds' boxes of an image, then one IoU matrix), "ornet" with NumPy. OpenCV is needed (test-only).

This is the one copy of the oracle: the tests import it, and so does benchmarks/bench_metrics.py (for its
reference timings and its count check).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "ref_contours",
    "ref_ornet_counts",
    "ref_prepare_scoremap",
    "ref_pxap",
    "ref_resize_nearest",
    "ref_wsoleval_counts",
    "ref_wsoleval_thresholds",
]


def ref_wsoleval_thresholds(interval: float = 0.001) -> np.ndarray:
    return np.arange(0, 1, interval)


def ref_prepare_scoremap(cam: np.ndarray, size: int = 224) -> np.ndarray:
    """cv2.resize INTER_CUBIC in float64, then the reference's normalisation."""
    out = cv2.resize(cam.astype(np.float64), (size, size), interpolation=cv2.INTER_CUBIC)
    if np.isnan(out).any() or out.min() == out.max():
        return np.zeros_like(out)
    out = out - out.min()
    out = out / out.max()
    return out


def ref_contours(u8: np.ndarray, cut: int) -> list[tuple[list[int], float, bool]]:
    """(clipped box, contourArea, is_hole) of every contour of ``u8 > cut``, in OpenCV's order."""
    h, w = u8.shape
    _, binary = cv2.threshold(u8, cut, 255, cv2.THRESH_BINARY)
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for i, contour in enumerate(contours):
        x, y, bw, bh = cv2.boundingRect(contour)
        depth = 0
        parent = hierarchy[0][i][3]
        while parent >= 0:
            depth += 1
            parent = hierarchy[0][parent][3]
        box = [x, y, min(x + bw, w - 1), min(y + bh, h - 1)]
        out.append((box, float(cv2.contourArea(contour)), depth % 2 == 1))
    return out


def ref_boxes_at(u8: np.ndarray, cut: int, multi: bool) -> np.ndarray:
    """The reference's boxes at one cut: all contours (multi) or the largest; [[0, 0, 0, 0]] if none."""
    h, w = u8.shape
    _, binary = cv2.threshold(u8, cut, 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.asarray([[0, 0, 0, 0]])
    if not multi:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for contour in contours:
        x, y, bw, bh = cv2.boundingRect(contour)
        boxes.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
    return np.asarray(boxes)


def _iou_plus1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) IoU with the +1 convention, float64."""
    a = a[:, None, :].astype(np.float64)
    b = b[None, :, :].astype(np.float64)
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def ref_wsoleval_counts(
    scoremaps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    *,
    multi: bool,
    iou_thresholds: Sequence[float] = (0.5,),
    thresholds: np.ndarray | None = None,
) -> np.ndarray:
    """(D, T) int64 correct counts: the reference's loop over images, thresholds, contours."""
    taus = ref_wsoleval_thresholds() if thresholds is None else thresholds
    counts = np.zeros((len(iou_thresholds), len(taus)), dtype=np.int64)
    for scoremap, gt in zip(scoremaps, gt_boxes):
        if np.isnan(scoremap).any():
            scoremap = np.zeros_like(scoremap)
        u8 = (scoremap * 255).astype(np.uint8)
        top = int(u8.max())
        per_tau = [ref_boxes_at(u8, int(tau * top), multi) for tau in taus]
        best_per_box = _iou_plus1(np.concatenate(per_tau), np.asarray(gt).reshape(-1, 4)).max(1)
        ends = np.cumsum([len(b) for b in per_tau])
        best = np.array([best_per_box[e - len(b) : e].max() for b, e in zip(per_tau, ends)])
        for d, delta in enumerate(iou_thresholds):
            counts[d] += best >= delta
    return counts


def ref_ornet_counts(
    maps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    thresholds: Sequence[float],
    *,
    scale: float,
    logits: np.ndarray | None = None,
    targets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T,) GT-known, top-1 and top-5 correct counts of protocol "ornet", per image and threshold in NumPy."""
    t = len(thresholds)
    known = np.zeros(t, dtype=np.int64)
    top1 = np.zeros(t, dtype=np.int64)
    top5 = np.zeros(t, dtype=np.int64)
    for i, (m, gt) in enumerate(zip(maps, gt_boxes)):
        h, w = m.shape
        cls1 = cls5 = True
        if logits is not None and targets is not None:
            order = np.argsort(-logits[i], kind="stable")
            cls1 = bool(order[0] == targets[i])
            cls5 = bool(targets[i] in order[:5])
        for j, tau in enumerate(thresholds):
            ys, xs = np.nonzero(m.astype(np.float64) > tau)
            if len(xs) == 0:
                box = [0.0, 0.0, w * scale, h * scale]
            else:
                box = [xs.min() * scale, ys.min() * scale, xs.max() * scale, ys.max() * scale]
            ok = False
            for g in np.asarray(gt, dtype=np.float64).reshape(-1, 4):
                iw = max(0.0, min(box[2], g[2]) - max(box[0], g[0]))
                ih = max(0.0, min(box[3], g[3]) - max(box[1], g[1]))
                inter = iw * ih
                union = (box[2] - box[0]) * (box[3] - box[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                ok = ok or (union > 0 and inter / union > 0.5)
            known[j] += ok
            top1[j] += ok and cls1
            top5[j] += ok and cls5
    return known, top1, top5


def ref_resize_nearest(mask: np.ndarray, size: int = 224) -> np.ndarray:
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def ref_pxap(
    scoremaps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    ignores: Sequence[np.ndarray | None],
    thresholds: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """PxAP (percent) and the positive / negative histograms, as wsolevaluation's MaskEvaluator."""
    taus = ref_wsoleval_thresholds() if thresholds is None else thresholds
    edges = np.append(taus, [1.0, 2.0, 3.0])
    pos = np.zeros(len(edges) - 1, dtype=np.int64)
    neg = np.zeros(len(edges) - 1, dtype=np.int64)
    for scoremap, mask, ignore in zip(scoremaps, masks, ignores):
        fg = np.asarray(mask).reshape(-1, *scoremap.shape).astype(np.float64) > 0.5
        fg = fg.any(0)
        ign = np.zeros_like(fg) if ignore is None else (np.asarray(ignore) > 0.5) & ~fg
        pos += np.histogram(scoremap[fg & ~ign], bins=edges)[0]
        neg += np.histogram(scoremap[~fg & ~ign], bins=edges)[0]
    tp = pos[::-1].cumsum()
    fp = neg[::-1].cumsum()
    fn = pos.sum() - tp
    nonzero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100
    return float(auc), pos, neg


def stress_maps(rng: np.random.Generator, h: int, w: int) -> list[np.ndarray]:
    """Score maps in [0, 1] (float64) that stress the contour protocols, one of each kind."""
    maps = []
    yy, xx = np.mgrid[0:h, 0:w]

    def blob(cy: float, cx: float, s: float) -> np.ndarray:
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))

    maps.append(
        blob(h * 0.3, w * 0.3, 3) + 0.8 * blob(h * 0.7, w * 0.6, 2) + 0.5 * blob(h * 0.2, w * 0.8, 1.5)
    )
    ring = np.abs(np.hypot(yy - h / 2, xx - w / 2) - min(h, w) / 4) < 2.0
    ring2 = ring.astype(np.float64) * 0.9
    ring2[h // 2, w // 2] = 0.6  # a blob in the hole
    maps.append(ring2)
    lines = np.zeros((h, w))
    lines[2, 1 : w - 1] = 1.0  # a horizontal line: area 0
    lines[4 : h - 1, 3] = 0.7  # a vertical line
    lines[h - 3, w - 3] = 0.9  # a single pixel
    lines[5:8, 6:9] = 0.5  # a 3x3 square: area 4
    maps.append(lines)
    diag = np.zeros((h, w))
    for i in range(min(h, w)):
        diag[i, i] = 1.0  # 8-connected diagonal
    diag[0, w - 1] = diag[1, w - 2] = 0.8
    maps.append(diag)
    border = np.zeros((h, w))
    border[0:4, 0:5] = 1.0
    border[h - 3 :, w - 6 :] = 0.7
    border[:, w - 1] = 0.4
    maps.append(border)
    ties = np.zeros((h, w))
    ties[1:4, 1:4] = 1.0
    ties[1:4, w - 5 : w - 2] = 1.0
    ties[h - 5 : h - 2, 3:6] = 1.0
    maps.append(ties)
    maps.append(np.full((h, w), 0.3))  # constant
    nan = blob(h / 2, w / 2, 4)
    nan[1, 1] = np.nan
    maps.append(nan)
    maps.append(0.6 * blob(h / 2, w / 3, 3))  # max below 1
    noise = np.clip(blob(h / 2, w / 2, 5) + 0.5 * rng.random((h, w)), 0, None)
    maps.append(noise / noise.max())
    binary = (rng.random((h, w)) < 0.45).astype(np.float64)
    maps.append(binary)
    levels = rng.integers(0, 4, size=(h, w)) / 3.0
    maps.append(levels)
    return maps


def stress_gt(rng: np.random.Generator, h: int, w: int, count: int) -> list[np.ndarray]:
    """Random GT boxes, 1 to 3 per image (ILSVRC-style), integer pixel coordinates."""
    out = []
    for _ in range(count):
        k = int(rng.integers(1, 4))
        x = np.sort(rng.integers(0, w, size=(k, 2)), axis=1)
        y = np.sort(rng.integers(0, h, size=(k, 2)), axis=1)
        out.append(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1))
    return out
