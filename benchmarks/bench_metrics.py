"""Benchmark lowcam.metrics against per-image loops written the way the reference code works.

Protocols: MaxBoxAcc and MaxBoxAccV2 ("wsoleval": OpenCV findContours at each of the 1000 thresholds, one
image at a time, when cv2 is installed) and "ornet" (NumPy, 19 thresholds per image). Maps: smooth CAM-like
maps (a few Gaussian blobs at 14×14, prepared to 224×224 like the reference) and noisy ones (the same plus
uniform noise at full resolution). The reference loops are slow (seconds per noisy image), so they are timed
on the first ``--ref-n`` images and reported per image; lowcam is timed on all ``--n``.

    python benchmarks/bench_metrics.py --n 1000            # full
    python benchmarks/bench_metrics.py --n 64 --quick      # a minute or two
    python benchmarks/bench_metrics.py --threads-under-load  # default threads vs one, with a busy core

Writes ``benchmarks/results/metrics_<device>.json`` and ``.md`` (``metrics_threads`` for the threads mode).
The reference loops are the test oracle, ``tests/metrics_reference.py`` (one copy for tests and benchmark).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._timing import environment, markdown_table, synchronize, time_fn, write_results
from lowcam import metrics

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
try:
    import cv2  # the oracle needs it
    from metrics_reference import ref_ornet_counts, ref_wsoleval_counts
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

    def lowcam_run() -> metrics.BoxAccuracyResult:
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
        "value": out.value,
    }
    if cv2 is None:
        row["reference"] = "cv2 not installed"
        return row
    sub = maps[:ref_n].numpy()
    sub_gt = [g.numpy() for g in gts[:ref_n]]
    start = time.perf_counter()
    if protocol == "ornet":
        ref = ref_ornet_counts(sub, sub_gt, metrics.ornet_thresholds().tolist(), scale=224 / sub.shape[2])[0][
            None
        ]
    else:
        multi = protocol == "maxboxacc_v2"
        ref = ref_wsoleval_counts(
            sub, sub_gt, multi=multi, iou_thresholds=(0.3, 0.5, 0.7) if multi else (0.5,)
        )
    ref_s = time.perf_counter() - start
    check = metrics.BoxAccuracy(protocol).update(maps_dev[:ref_n], gts[:ref_n]).compute()  # type: ignore[arg-type]
    got = np.stack([c.numpy() for c in check.counts.values()])
    row["reference_images"] = ref_n
    row["reference_ms_per_image"] = ref_s * 1e3 / ref_n
    row["speedup"] = row["reference_ms_per_image"] / row["lowcam_ms_per_image"]
    row["counts_equal"] = bool(np.array_equal(got, ref))
    return row


def threads_under_load(n: int, before_n: int, repeats: int, out: Path, name: str | None) -> None:
    """MaxBoxAccV2 over ``n`` noisy maps: torch's default threads against one, idle and beside a busy core.

    Three settings: torch's default thread count with ``cpu_threads=None`` (what every release before the
    ``cpu_threads`` option did; timed once on the first ``before_n`` maps only, as it is several times
    slower), the same with the library's default ``cpu_threads=1``, and torch set to one thread for the whole
    process (the target: the default must stay within 1.5× of it under load). Times are compared per map.
    The competing process is a Python loop spinning on one core.
    """
    maps = wsoleval_maps("noisy", n, seed=1)
    gts = gt_boxes(n, 224.0, seed=1)
    default_threads = torch.get_num_threads()
    settings: list[tuple[str, int, int | None]] = [
        (f"torch default ({default_threads} threads), cpu_threads=None (before)", default_threads, None),
        (f"torch default ({default_threads} threads), cpu_threads=1 (library default)", default_threads, 1),
        ("torch.set_num_threads(1)", 1, None),
    ]
    rows: list[dict[str, Any]] = []
    for load in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load else None
        times: list[list[float]] = [[] for _ in settings]
        loads: list[list[float]] = [[] for _ in settings]
        try:
            time.sleep(0.5 if load else 0.0)
            for _, threads, cpu in settings:  # warm-up
                torch.set_num_threads(threads)
                metrics.BoxAccuracy("maxboxacc_v2", cpu_threads=cpu).update(maps[:8], gts[:8])
            # the settings take turns, so that the other processes' load drifts over all of them alike
            for rep in range(repeats):
                for i, (_, threads, cpu) in enumerate(settings):
                    if i == 0 and rep > 0:
                        continue  # the slow setting runs once
                    m = min(n, before_n) if i == 0 else n
                    torch.set_num_threads(threads)
                    loads[i].append(os.getloadavg()[0])
                    start = time.perf_counter()
                    metrics.BoxAccuracy("maxboxacc_v2", cpu_threads=cpu).update(maps[:m], gts[:m])
                    times[i].append(time.perf_counter() - start)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
            torch.set_num_threads(default_threads)
        for i, (label, threads, cpu) in enumerate(settings):
            m = min(n, before_n) if i == 0 else n
            row = {
                "competing_process": load,
                "setting": label,
                "torch_threads": threads,
                "cpu_threads": cpu,
                "n": m,
                "runs_s": times[i],
                "median_s": statistics.median(times[i]),
                "ms_per_map": statistics.median(times[i]) * 1e3 / m,
                "min_s": min(times[i]),
                "max_s": max(times[i]),
                "runs": len(times[i]),
                "load_avg_1min": statistics.mean(loads[i]),
            }
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    for row in rows:
        one = next(
            r["ms_per_map"]
            for r in rows
            if r["competing_process"] == row["competing_process"] and r["torch_threads"] == 1
        )
        row["vs_one_thread"] = row["ms_per_map"] / one
    env = environment("cpu")
    table = [
        [
            "yes" if r["competing_process"] else "no",
            r["setting"],
            r["n"],
            r["runs"],
            f"{r['median_s']:.2f} ({r['min_s']:.2f}–{r['max_s']:.2f})",
            f"{r['ms_per_map']:.1f}",
            f"{r['vs_one_thread']:.2f}×",
            f"{r['load_avg_1min']:.2f}",
        ]
        for r in rows
    ]
    md = "\n".join(
        [
            f"# lowcam.metrics on a busy CPU ({env['device']})",
            "",
            f"MaxBoxAccV2 over {n} noisy 224×224 score maps (the benchmark's noisy kind; the slow 'before' "
            f"setting on the first {min(n, before_n)}, once), torch {env['torch']}, {env['date']}, commit "
            f"{env['commit']}, median of the runs (min–max in brackets; the settings take turns run by run), "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}. The competing process is a Python "
            "loop spinning on one core. The machine is a shared 2-core x86_64 box on which other agents were "
            "running tests and builds at the same time, so the mean load average (1 min, before each run) is "
            "given, and absolute times vary from run to run.",
            "",
            markdown_table(
                [
                    "competing process",
                    "setting",
                    "maps",
                    "runs",
                    "seconds",
                    "ms/map",
                    "vs one thread",
                    "load avg",
                ],
                table,
            ),
            "",
            "`python benchmarks/bench_metrics.py --threads-under-load` reproduces this table.",
        ]
    )
    write_results(out / (name or "metrics_threads"), {"environment": env, "rows": rows}, md)
    print(md)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=None, help="maps per case (default 1000; 120 with threads)")
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
    parser.add_argument(
        "--threads-under-load",
        action="store_true",
        help="time MaxBoxAccV2 on --n noisy maps (default 120) with default threads vs one, idle and loaded",
    )
    parser.add_argument(
        "--before-n",
        type=int,
        default=None,
        help="maps for the slow cpu_threads=None setting (threads mode; default --n)",
    )
    parser.add_argument("--protocols", default="maxboxacc,maxboxacc_v2,ornet")
    parser.add_argument("--maps", default="smooth,noisy")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--name", default=None, help="file stem under --out (default metrics_cpu or metrics_cuda)"
    )
    args = parser.parse_args()
    if args.threads_under_load:
        n = args.n or 120
        threads_under_load(n, args.before_n or n, 1 if args.quick else 3, Path(args.out), args.name)
        return
    args.n = args.n or 1000
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
