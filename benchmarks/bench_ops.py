"""Benchmark ORNet's three components: loop reference vs lowcam's torch, torch.compile and Triton backends.

For every component (weighted entropy, area loss, attentive erasing), batch size, map size and number of
classes, the script times the forward pass, the backward pass alone and the full step (forward +
backward): median and 20 %/80 % quantiles in milliseconds, and the peak CUDA memory of the full step. The
implementations:

- ``loop``: ``benchmarks/loop_reference.py``, written the way the paper's code does it (Python loops over
  samples, host syncs);
- ``torch``: lowcam with ``backend="torch"``;
- ``compile``: the same under ``torch.compile`` (compilation excluded from the timings);
- ``triton``: lowcam with ``backend="triton"`` (CUDA only: Triton's CPU interpreter is a test tool).

Results go to ``<out>.json`` and ``<out>.md`` (device, torch and Triton versions, commit). Usage::

    PYTHONPATH=. python benchmarks/bench_ops.py --quick                 # CPU, small grid
    PYTHONPATH=. python benchmarks/bench_ops.py --device cuda --out "$OUT/cuda_ops"
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lowcam
from benchmarks._timing import environment, markdown_table, quantile, synchronize, time_fn, write_results
from benchmarks.loop_reference import area_loss_loop, attentive_erasing_loop, weighted_entropy_loop

COMPONENTS = ("entropy", "area", "erasing")
IMPLS = ("loop", "torch", "compile", "triton")


@dataclass
class Case:
    """One benchmark configuration: the inputs and the forward function of one implementation."""

    forward: Callable[[], torch.Tensor]
    leaves: list[torch.Tensor]
    grad: torch.Tensor | None  # the gradient fed to backward (None: a scalar output)


def _make_inputs(
    component: str, batch: int, size: int, classes: int, device: str, dtype: torch.dtype
) -> dict[str, Any]:
    g = torch.Generator(device=device).manual_seed(0)
    p = (
        torch.sigmoid(torch.randn(batch, 1, size, size, device=device, generator=g))
        .to(dtype)
        .requires_grad_()
    )
    inputs: dict[str, Any] = {"p": p}
    if component == "area":
        inputs["class_maps"] = torch.randn(batch, classes, size, size, device=device, generator=g).to(dtype)
        inputs["class_maps"].requires_grad_()
        inputs["logits"] = torch.randn(batch, classes, device=device, generator=g)
    return inputs


def _forward_fn(component: str, impl: str, inputs: dict[str, Any]) -> Callable[[], torch.Tensor]:
    p = inputs["p"]
    if impl == "loop":
        if component == "entropy":
            return lambda: weighted_entropy_loop(p)
        if component == "area":
            return lambda: area_loss_loop(p, inputs["class_maps"], inputs["logits"])
        rng = np.random.default_rng(0)
        return lambda: attentive_erasing_loop(p, rng=rng)[0]
    backend = "triton" if impl == "triton" else "torch"
    fn: Callable[..., Any]
    if component == "entropy":
        fn = functools.partial(lowcam.weighted_entropy_loss, backend=backend)
    elif component == "area":
        fn = functools.partial(lowcam.area_loss, backend=backend)
    else:
        fn = functools.partial(_erased, backend=backend)
    if impl == "compile":
        fn = torch.compile(fn, dynamic=False)
    if component == "area":
        return lambda: fn(p, inputs["class_maps"], inputs["logits"])
    return lambda: fn(p)


def _erased(p: torch.Tensor, backend: str) -> torch.Tensor:
    return lowcam.attentive_erasing(p, backend=backend).erased  # type: ignore[arg-type]


def _backward_once(case: Case, device: str) -> float:
    """Milliseconds of one backward pass alone, after an untimed forward pass."""
    _zero(case)
    out = case.forward()
    synchronize(device)
    start = time.perf_counter()
    out.backward(case.grad)
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def _zero(case: Case) -> None:
    for leaf in case.leaves:
        leaf.grad = None


def _full_step(case: Case) -> None:
    _zero(case)
    case.forward().backward(case.grad)


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(times),
        "p20_ms": quantile(times, 0.2),
        "p80_ms": quantile(times, 0.8),
        "runs": float(len(times)),
    }


def run_config(
    component: str, batch: int, size: int, classes: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Time every implementation of one (component, size) configuration, interleaved.

    The implementations take turns within each round (forward, backward, full step), so that a load
    change on a shared machine hits all of them alike instead of biasing whichever ran at that moment.
    """
    inputs = _make_inputs(component, batch, size, classes, args.device, args.dtype)
    leaves = [t for t in inputs.values() if t.requires_grad]
    grad = torch.ones_like(inputs["p"]) if component == "erasing" else None
    cases = {impl: Case(_forward_fn(component, impl, inputs), leaves, grad) for impl in args.impls}
    first_calls: dict[str, float] = {}
    with torch.enable_grad():
        for impl, case in cases.items():  # compilation (torch.compile, Triton) stays out of the timings
            start = time.perf_counter()
            _full_step(case)
            _full_step(case)
            synchronize(args.device)
            first_calls[impl] = time.perf_counter() - start
        # The loop reference's area backward scatters into full-size zero tensors: few rounds when slow.
        slow = max(first_calls.values()) / 2 > 1.0
        rounds = max(3, args.repeats // 3) if slow else args.repeats
        for _ in range(0 if slow else args.warmup):
            for case in cases.values():
                _full_step(case)
        samples = {impl: {"forward": [], "backward": [], "full": []} for impl in cases}
        peaks = dict.fromkeys(cases, 0.0)
        start = time.perf_counter()
        done = 0
        while done < rounds or (not slow and time.perf_counter() - start < args.min_time):
            for impl, case in cases.items():
                samples[impl]["forward"].append(
                    time_fn(case.forward, device=args.device, warmup=0, repeats=1)["median_ms"]
                )
                samples[impl]["backward"].append(_backward_once(case, args.device))
                full = time_fn(functools.partial(_full_step, case), device=args.device, warmup=0, repeats=1)
                samples[impl]["full"].append(full["median_ms"])
                peaks[impl] = max(peaks[impl], full["peak_mem_mb"])
            done += 1
    rows = []
    for impl in cases:
        full_stats = _summary(samples[impl]["full"]) | {"peak_mem_mb": peaks[impl]}
        rows.append(
            {
                "component": component,
                "impl": impl,
                "batch": batch,
                "size": size,
                "classes": classes if component == "area" else None,
                "dtype": str(args.dtype).replace("torch.", ""),
                "forward": _summary(samples[impl]["forward"]),
                "backward": _summary(samples[impl]["backward"]),
                "full": full_stats,
                "first_calls_s": first_calls[impl],
            }
        )
    return rows


def _fmt(stats: dict[str, float]) -> str:
    return f"{stats['median_ms']:.3f} ({stats['p20_ms']:.3f}–{stats['p80_ms']:.3f})"


def to_markdown(env: dict[str, Any], rows: list[dict[str, Any]], checks: list[str]) -> str:
    """The results as a markdown report: environment, one table, the target checks."""
    header = [
        "component", "B", "H×W", "C", "impl", "forward ms", "backward ms", "full ms", "peak MB (full)",
        "full vs loop",
    ]  # fmt: skip
    loop_full = {
        (r["component"], r["batch"], r["size"], r["classes"]): r["full"]["median_ms"]
        for r in rows
        if r["impl"] == "loop"
    }
    table = []
    for r in rows:
        key = (r["component"], r["batch"], r["size"], r["classes"])
        ratio = loop_full.get(key)
        speedup = f"{ratio / r['full']['median_ms']:.1f}×" if ratio else "—"
        peak = f"{r['full']['peak_mem_mb']:.1f}" if env["device"].startswith("CPU") is False else "—"
        table.append(
            [
                r["component"], r["batch"], f"{r['size']}×{r['size']}", r["classes"] or "—", r["impl"],
                _fmt(r["forward"]), _fmt(r["backward"]), _fmt(r["full"]), peak, speedup,
            ]
        )  # fmt: skip
    lines = [
        "# bench_ops: ORNet components",
        "",
        f"- device: {env['device']}",
        f"- torch {env['torch']}, Triton {env['triton']}, Python {env['python']}",
        f"- commit {env['commit']}, {env['date']}",
        *[
            f"- rows resumed from an earlier run: commit {e['commit']}, {e['date']}"
            for e in env.get("earlier", [])
        ],
        f"- dtype {rows[0]['dtype'] if rows else '—'}; times in ms: median (20 %–80 % quantiles); "
        "backward = the backward pass alone; full = forward + backward",
        "- the implementations of a configuration run interleaved, round by round, so that load changes on a "
        "shared machine hit them alike; compile and Triton times exclude compilation",
        "",
        markdown_table(header, table),
        "",
        "## Targets",
        "",
        *[f"- {c}" for c in checks],
    ]
    return "\n".join(lines)


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Speed-ups of the torch backend over the loop reference at batch 64, and any slower configuration."""
    by_key = {(r["component"], r["impl"], r["batch"], r["size"], r["classes"]): r for r in rows}
    checks = []
    for component in ("erasing", "area"):
        for (comp, impl, batch, size, classes), row in sorted(by_key.items(), key=str):
            if comp != component or impl != "torch" or batch != 64:
                continue
            loop = by_key.get((comp, "loop", batch, size, classes))
            if loop is None:
                continue
            speedups = {
                phase: loop[phase]["median_ms"] / row[phase]["median_ms"] for phase in ("forward", "full")
            }
            ok = speedups["full"] >= 5
            checks.append(
                f"{component}, torch backend vs loop at B={batch}, {size}×{size}"
                + (f", C={classes}" if classes else "")
                + f": forward {speedups['forward']:.1f}×, full {speedups['full']:.1f}× "
                + ("(target ≥ 5× on the full step: met)" if ok else "(target ≥ 5× on the full step: NOT met)")
            )
    slower = []
    for (comp, impl, batch, size, classes), row in by_key.items():
        loop = by_key.get((comp, "loop", batch, size, classes))
        if impl == "loop" or loop is None:
            continue
        for phase in ("forward", "full"):
            excess = row[phase]["median_ms"] / loop[phase]["median_ms"] - 1.0
            if excess > 0:
                slower.append(f"{comp}/{impl} B={batch} {size}×{size} {phase} (+{100 * excess:.1f} %)")
    checks.append(
        "no implementation slower than the loop reference (forward and full): "
        + ("met" if not slower else "NOT met for " + ", ".join(slower))
    )
    return checks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--components", nargs="+", default=list(COMPONENTS), choices=COMPONENTS)
    parser.add_argument("--impls", nargs="+", default=None, choices=IMPLS, help="default: all that run here")
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument("--sizes", nargs="+", type=int, default=[56, 224], help="map side H = W")
    parser.add_argument("--classes", nargs="+", type=int, default=[200, 1000])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--quick", action="store_true", help="batches 16 64, maps 56, 200 classes")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--min-time", type=float, default=0.5, help="seconds of timing rounds per configuration, at least"
    )
    parser.add_argument("--max-gb", type=float, default=None, help="skip configurations with larger inputs")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default on CPU: 1, since OpenMP threads stall on a shared, loaded machine)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output stem (default benchmarks/results/<dev>_ops)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in <out>.json and skip their configurations (a run split over calls)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.sizes, args.classes = [16, 64], [56], [200]
    args.dtype = getattr(torch, args.dtype)
    if args.impls is None:
        args.impls = [i for i in IMPLS if i != "triton" or args.device.startswith("cuda")]
    if args.max_gb is None:
        args.max_gb = 4.0 if args.device == "cpu" else 0.3 * torch.cuda.mem_get_info()[0] / 2**30
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    if args.out is None:
        args.out = Path(__file__).resolve().parent / "results" / f"{torch.device(args.device).type}_ops"
    return args


def _save(args: argparse.Namespace, env: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Write the rows measured so far and the target checks; return the checks."""
    checks = check_targets(rows)
    payload = {
        "environment": env,
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": rows,
        "targets": checks,
    }
    write_results(args.out, payload, to_markdown(env, rows, checks))
    return checks


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch._dynamo.config.cache_size_limit = 256
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device)
    print(f"# {env['device']} | torch {env['torch']} | triton {env['triton']} | {env['commit']}", flush=True)
    rows: list[dict[str, Any]] = []
    json_path = args.out.with_suffix(".json")
    if args.resume and json_path.exists():
        earlier = json.loads(json_path.read_text())
        rows = earlier["results"]
        env["earlier"] = [
            *earlier["environment"].get("earlier", []),
            {k: v for k, v in earlier["environment"].items() if k != "earlier"},
        ]
        print(f"resuming: {len(rows)} rows from {json_path}", flush=True)
    done = {(r["component"], r["batch"], r["size"], r["classes"] or 0) for r in rows}
    element = torch.tensor([], dtype=args.dtype).element_size()
    for component in args.components:
        for size in args.sizes:
            for batch in args.batches:
                for classes in args.classes if component == "area" else args.classes[:1]:
                    if (component, batch, size, classes if component == "area" else 0) in done:
                        continue
                    channels = classes if component == "area" else 1
                    gigabytes = batch * channels * size * size * element * 2 / 2**30  # input + gradient
                    if gigabytes > args.max_gb:
                        print(
                            f"skip {component} B={batch} {size}² C={classes}: {gigabytes:.1f} GB", flush=True
                        )
                        continue
                    for row in run_config(component, batch, size, classes, args):
                        rows.append(row)
                        print(
                            f"{component:8s} {row['impl']:8s} B={batch:<4d} {size}² "
                            f"C={classes if component == 'area' else '-'}  fwd {_fmt(row['forward'])}  "
                            f"bwd {_fmt(row['backward'])}  full {_fmt(row['full'])}",
                            flush=True,
                        )
                    # rewritten after every configuration, so a run stopped by a time limit keeps its rows
                    checks = _save(args, env, rows)
    checks = _save(args, env, rows)
    print("\n".join(checks))
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
