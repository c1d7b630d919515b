"""Shared timing helpers for the benchmarks: medians and quantiles, peak memory, run metadata."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile ``q`` in [0, 1] of ``values``."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_fn(
    fn: Callable[[], object],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    min_time_s: float = 0.0,
) -> dict[str, float]:
    """Time ``fn()`` and report milliseconds (median, 20 % and 80 % quantiles) and peak CUDA memory.

    Each repeat is synchronised on the device before and after. ``min_time_s`` keeps repeating until that
    much time was spent (at least ``repeats`` runs). Peak memory is the CUDA allocator's peak during the
    timed runs above what was allocated before them (0 on CPU, where torch exposes no allocator peak).
    """
    dev = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(dev)
    base = 0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time_s:
        synchronize(dev)
        start = time.perf_counter()
        fn()
        synchronize(dev)
        times.append((time.perf_counter() - start) * 1e3)
    peak = torch.cuda.max_memory_allocated(dev) - base if dev.type == "cuda" else 0
    return {
        "median_ms": statistics.median(times),
        "p20_ms": quantile(times, 0.2),
        "p80_ms": quantile(times, 0.8),
        "runs": float(len(times)),
        "peak_mem_mb": peak / 2**20,
    }


def git_commit() -> str:
    """The current commit (with ``-dirty`` when the tree has changes), or ``"unknown"``."""
    try:
        root = Path(__file__).resolve().parent.parent
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(device: torch.device | str) -> dict[str, Any]:
    """What the numbers were measured on: device name, versions, commit, date."""
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    try:
        import triton

        triton_version = str(triton.__version__)
    except ImportError:
        triton_version = "not installed"
    return {
        "device": name,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_results(path_stem: Path, payload: dict[str, Any], markdown: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` atomically (temp file, then rename)."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(payload, indent=2, sort_keys=True)), (".md", markdown)):
        target = path_stem.with_suffix(suffix)
        tmp = target.with_suffix(suffix + ".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, target)


def write_and_print(path_stem: Path, payload: dict[str, Any], markdown: str) -> None:
    """:func:`write_results`, then print ``markdown``: how a benchmark's command line ends."""
    write_results(path_stem, payload, markdown)
    print(markdown)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
