"""Benchmark lowcam.metrics against per-image loops written the way the reference code works.

Protocols: MaxBoxAcc and MaxBoxAccV2 ("wsoleval": OpenCV findContours at each of the 1000 thresholds, one
image at a time, when cv2 is installed) and "ornet" (NumPy, 19 thresholds per image). Maps: smooth CAM-like
maps (a few Gaussian blobs at 14×14, prepared to 224×224 like the reference) and noisy ones (the same plus
uniform noise at full resolution). The reference loops are slow (seconds per noisy image), so they are timed
on the first ``--ref-n`` images and reported per image; lowcam is timed on all ``--n``.

    python benchmarks/bench_metrics.py --n 1000            # full
    python benchmarks/bench_metrics.py --n 64 --quick      # a minute or two

Writes ``benchmarks/results/metrics_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._timing import environment, markdown_table, synchronize, time_fn, write_results
from lowcam import metrics

try:
    import cv2
except ImportError:  # pragma: no cover - the benchmark then has no OpenCV reference
    cv2 = None


def make_maps(kind: str, n: int, size: int, low: int, seed: int) -> torch.Tensor:
    """``(n, low, low)`` float64 CAMs: smooth blobs, or blobs plus noise (added after resizing to ``size``)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(low, dtype=torch.float64), torch.arange(low, dtype=torch.float64), indexing="ij"
    )
    cams = torch.zeros(n, low, low, dtype=torch.float64)
    for _ in range(3):
        cy, cx = torch.rand(2, n, 1, 1, generator=g, dtype=torch.float64) * low
        s = 1.0 + torch.rand(n, 1, 1, generator=g, dtype=torch.float64) * low / 5
        a = torch.rand(n, 1, 1, generator=g, dtype=torch.float64)
        cams += a * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return cams


def wsoleval_maps(kind: str, n: int, seed: int) -> torch.Tensor:
    maps = metrics.prepare_scoremap(make_maps(kind, n, 224, 14, seed), 224)
    if kind == "noisy":
        g = torch.Generator().manual_seed(seed + 1)
        maps = metrics.prepare_scoremap(
            maps + 0.3 * torch.rand(maps.shape, generator=g, dtype=torch.float64), 224
        )
    return maps


def ornet_maps(kind: str, n: int, seed: int) -> torch.Tensor:
    cams = make_maps(kind, n, 56, 56, seed)
    if kind == "noisy":
        g = torch.Generator().manual_seed(seed + 1)
        cams = cams + 0.3 * torch.rand(cams.shape, generator=g, dtype=torch.float64)
    return torch.sigmoid(4 * cams - 2).to(torch.float32)


def gt_boxes(n: int, size: float, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 2)
    lo = torch.rand(n, 2, generator=g) * size * 0.6
    hi = lo + 10 + torch.rand(n, 2, generator=g) * size * 0.4
    return [
        torch.tensor([[float(a), float(b), min(float(c), size - 1), min(float(d), size - 1)]]).floor()
        for a, b, c, d in torch.cat([lo, hi], 1)
    ]


# -- the reference loops ------------------------------------------------------------------------------------


def ref_wsoleval(maps: np.ndarray, gts: list[np.ndarray], multi: bool) -> np.ndarray:
    """The reference's BoxEvaluator.accumulate, one image and one threshold at a time with OpenCV."""
    taus = np.arange(0, 1, 0.001)
    deltas = (30, 50, 70) if multi else (50,)
    counts = {d: np.zeros(len(taus), dtype=np.int64) for d in deltas}
    for scoremap, gt in zip(maps, gts):
        h, w = scoremap.shape
        img = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
        boxes_all, numbers = [], []
        for tau in taus:
            _, binary = cv2.threshold(img, int(tau * np.max(img)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                boxes_all.append(np.asarray([[0, 0, 0, 0]]))
                numbers.append(1)
                continue
            if not multi:
                contours = [max(contours, key=cv2.contourArea)]
            boxes = []
            for c in contours:
                x, y, bw, bh = cv2.boundingRect(c)
                boxes.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
            boxes_all.append(np.asarray(boxes))
            numbers.append(len(contours))
        a = np.concatenate(boxes_all, 0)[:, None, :].astype(np.float64)
        b = np.asarray(gt, dtype=np.float64)[None]
        iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
        ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
        inter = iw * ih
        union = (
            (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
            + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
            - inter
        )
        best_per_box = (inter / union).max(1)
        idx, sliced = 0, []
        for nr in numbers:
            sliced.append(best_per_box[idx : idx + nr].max())
            idx += nr
        for d in deltas:
            counts[d][np.where(np.asarray(sliced) >= d / 100)[0]] += 1
    return np.stack([counts[d] for d in deltas])


def ref_ornet(maps: np.ndarray, gts: list[np.ndarray]) -> np.ndarray:
    """Per image, per threshold in NumPy, the ORNet way."""
    taus = [(i + 1) / 20 for i in range(19)]
    counts = np.zeros(len(taus), dtype=np.int64)
    for m, gt in zip(maps, gts):
        s = 224 / m.shape[1]
        for j, tau in enumerate(taus):
            ys, xs = np.where(m.astype(np.float64) > tau)
            box = (
                [0.0, 0.0, 224.0, 224.0]
                if len(xs) == 0
                else [xs.min() * s, ys.min() * s, xs.max() * s, ys.max() * s]
            )
            g = gt[0]
            iw = max(0.0, min(box[2], g[2]) - max(box[0], g[0]))
            ih = max(0.0, min(box[3], g[3]) - max(box[1], g[1]))
            inter = iw * ih
            union = (box[2] - box[0]) * (box[3] - box[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
            counts[j] += inter / union > 0.5
    return counts


# -- main ---------------------------------------------------------------------------------------------------


def run_case(
    protocol: str, kind: str, n: int, ref_n: int, device: torch.device, repeats: int
) -> dict[str, Any]:
    if protocol == "ornet":
        maps = ornet_maps(kind, n, seed=1)
        gts = gt_boxes(n, 224.0, seed=1)
    else:
        maps = wsoleval_maps(kind, n, seed=1)
        gts = gt_boxes(n, 224.0, seed=1)
    maps_dev = maps.to(device)

    def lowcam_run() -> dict[str, Any]:
        return metrics.BoxAccuracy(protocol).update(maps_dev, gts).compute()  # type: ignore[arg-type]

    stats = time_fn(lowcam_run, device=device, warmup=1, repeats=repeats)
    out = lowcam_run()
    row: dict[str, Any] = {
        "protocol": protocol,
        "maps": kind,
        "n": n,
        "lowcam_ms_per_image": stats["median_ms"] / n,
        "lowcam_total_s": stats["median_ms"] / 1e3,
        "lowcam_p20_ms": stats["p20_ms"],
        "lowcam_p80_ms": stats["p80_ms"],
        "peak_mem_mb": stats["peak_mem_mb"],
        "value": out["value"],
    }
    if protocol != "ornet" and cv2 is None:
        row["reference"] = "cv2 not installed"
        return row
    sub = maps[:ref_n].numpy()
    sub_gt = [g.numpy() for g in gts[:ref_n]]
    start = time.perf_counter()
    if protocol == "ornet":
        ref = ref_ornet(sub, sub_gt)[None]
    else:
        ref = ref_wsoleval(sub, sub_gt, multi=protocol == "maxboxacc_v2")
    ref_s = time.perf_counter() - start
    check = metrics.BoxAccuracy(protocol).update(maps_dev[:ref_n], gts[:ref_n]).compute()  # type: ignore[arg-type]
    got = np.stack([c.numpy() for c in check["counts"].values()])
    row["reference_images"] = ref_n
    row["reference_ms_per_image"] = ref_s * 1e3 / ref_n
    row["speedup"] = row["reference_ms_per_image"] / row["lowcam_ms_per_image"]
    row["counts_equal"] = bool(np.array_equal(got, ref))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="maps per case (e.g. 1000, 5000)")
    parser.add_argument(
        "--ref-n", type=int, default=None, help="maps for the reference loops (default: per case)"
    )
    parser.add_argument("--quick", action="store_true", help="one timed repeat, small reference subsets")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice). On a loaded CPU, spinning OpenMP threads can "
        "slow the many medium-sized ops of the contour protocols several-fold: try 1, or OMP_WAIT_POLICY=passive",
    )
    parser.add_argument("--protocols", default="maxboxacc,maxboxacc_v2,ornet")
    parser.add_argument("--maps", default="smooth,noisy")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--name", default=None, help="file stem under --out (default metrics_cpu or metrics_cuda)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    rows = []
    for protocol in args.protocols.split(","):
        for kind in args.maps.split(","):
            default_ref = {"ornet": 200, "smooth": 20, "noisy": 3}["ornet" if protocol == "ornet" else kind]
            ref_n = min(args.n, args.ref_n or (max(2, default_ref // 2) if args.quick else default_ref))
            row = run_case(protocol, kind, args.n, ref_n, device, repeats)
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            synchronize(device)
    env = environment(device)
    header = [
        "protocol",
        "maps",
        "n",
        "lowcam ms/img",
        "reference ms/img (images)",
        "speedup",
        "counts equal",
    ]
    table = [
        [
            r["protocol"],
            r["maps"],
            r["n"],
            f"{r['lowcam_ms_per_image']:.2f}",
            f"{r.get('reference_ms_per_image', float('nan')):.2f} ({r.get('reference_images', 0)})",
            f"{r.get('speedup', float('nan')):.1f}×",
            r.get("counts_equal", "-"),
        ]
        for r in rows
    ]
    md = "\n".join(
        [
            f"# lowcam.metrics benchmark ({env['device']})",
            "",
            f"torch {env['torch']}, {env['date']}, commit {env['commit']}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, torch threads "
            f"{torch.get_num_threads()}, {'one timed run after a warm-up' if args.quick else 'median of 3 runs'}",
            "",
            markdown_table(header, table),
            "",
            "Reference loops timed per image on the first images of each case (see benchmarks/bench_metrics.py).",
        ]
    )
    name = args.name or ("metrics_cuda" if device.type == "cuda" else "metrics_cpu")
    write_results(Path(args.out) / name, {"environment": env, "args": vars(args), "rows": rows}, md)
    print(md)


if __name__ == "__main__":
    main()
