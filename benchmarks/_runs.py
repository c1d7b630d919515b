"""What the localization benchmarks share: the validation split, one cached run of the pipeline or of the
plug-in pair as a subprocess, parallel runs and the command line (``--work``, ``--seeds``, ``--variants``,
``--jobs``, ``--threads``, ``--quick``)."""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

import torch  # noqa: E402
from ornet.config import load_config  # noqa: E402
from ornet.distributed import DistInfo  # noqa: E402
from ornet.files import atomic_write_text  # noqa: E402
from ornet.logs import RunLog  # noqa: E402
from ornet.runtime import Context, holdout_split, load_data  # noqa: E402

__all__ = [
    "ROOT", "SEEDS", "SELECTION_SEED", "VAL_FRACTION", "Settings", "cached", "flat", "ornet_row", "parallel",
    "parse_runs", "plugin_run", "read_table", "run_context", "run_key", "run_script", "runs_parser",
    "write_validation_split",
]  # fmt: skip

VAL_FRACTION = 0.25
SEEDS = (0, 1, 2)
SELECTION_SEED = 0


@dataclasses.dataclass(frozen=True)
class Settings:
    work: Path
    threads: int
    quick: bool
    #: the plug-in pair's model and data arguments (here: the from-scratch ResNet-18 at 64 px)
    plugin: tuple[str, ...] = ("--backbone", "resnet18", "--scratch")


def read_table(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def run_context(run: Path, data: Path) -> Context:
    """A one-process CPU :class:`~ornet.runtime.Context` of a finished ``examples/train_ornet.py`` run: its own
    ``config.yaml``, its folder, ``data`` as its data root, nothing logged; for reading the run's checkpoints
    with the pipeline's loaders (``ornet.stages.load_coarse``, ``load_fine_parts``: complete, strict)."""
    cfg = load_config(run / "config.yaml", {"data.root": str(data), "output_dir": str(run)})
    train, test = load_data(cfg)
    return Context(cfg, DistInfo(0, 1, 0, torch.device("cpu")), train, test, RunLog(run, enabled=False))


def write_validation_split(source: Path, target: Path, fraction: float = VAL_FRACTION) -> tuple[int, int]:
    """A CUB-format copy of ``source``'s training images, the last ``fraction`` of each class marked as
    the evaluation ("test") split; ``source``'s test images are left out. Images are hard links (copies
    where links fail). Returns ``(train, validation)`` image counts."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    images = {i: path for i, path in read_table(source / "images.txt")}
    labels = {i: c for i, c in read_table(source / "image_class_labels.txt")}
    split = {i: s for i, s in read_table(source / "train_test_split.txt")}
    boxes = {row[0]: row[1:] for row in read_table(source / "bounding_boxes.txt")}
    train_ids = [i for i in images if split[i] == "1"]
    count = lambda n: max(1, round(n * fraction))  # noqa: E731
    held = set(holdout_split(train_ids, count, groups=[labels[i] for i in train_ids])[1])
    for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt"):
        rows = {
            "images.txt": lambda i: f"{i} {images[i]}",
            "image_class_labels.txt": lambda i: f"{i} {labels[i]}",
            "train_test_split.txt": lambda i: f"{i} {0 if i in held else 1}",
            "bounding_boxes.txt": lambda i: f"{i} {' '.join(boxes[i])}",
        }[name]
        (target / name).write_text("".join(rows(i) + "\n" for i in train_ids))
    if (source / "head_boxes.txt").is_file():  # the birds' heads (examples/birds.py), for map diagnostics
        heads = {row[0]: row[1:] for row in read_table(source / "head_boxes.txt")}
        (target / "head_boxes.txt").write_text("".join(f"{i} {' '.join(heads[i])}\n" for i in train_ids))
    shutil.copyfile(source / "classes.txt", target / "classes.txt")
    for i in train_ids:
        src, dst = source / "images" / images[i], target / "images" / images[i]
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return len(train_ids) - len(held), len(held)


def run_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def run_script(command: list[str], log: Path, threads: int, timeout: float = 3600) -> float:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "examples"), env.get("PYTHONPATH", "")])
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        result = subprocess.run(
            [sys.executable, *command],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}; see {log}")
    return time.perf_counter() - started


def flat(overrides: dict[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in overrides.items():
        out += [key if key.startswith("--") else f"--{key}", value]
    return out


def ornet_row(metrics: dict[str, Any], row: str) -> dict[str, Any]:
    entry = metrics[row]
    result = {
        "gt_known": float(entry["ornet"]["gt_known"]),
        "maxboxacc_v2": float(entry["maxboxacc_v2"]["value"]),
    }
    if "map_size" in entry:
        result["map_size"] = list(entry["map_size"])
    return result


def cached(cache: Path, out: Path, produce: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``produce()``'s result, computed once: written to ``cache`` atomically (a killed run leaves no
    half-written cache), read back on later calls; ``out``, the run's folder, starts empty."""
    if not cache.exists():
        if out.exists():
            shutil.rmtree(out)
        atomic_write_text(cache, json.dumps(produce()))
    loaded: dict[str, Any] = json.loads(cache.read_text())
    return loaded


def _plugin_args(
    data: Path, out: Path, seed: int, settings: Settings, overrides: dict[str, str]
) -> list[str]:
    args = [
        "benchmarks/plugin_arms.py", "--data", str(data), "--seeds", str(seed), "--out", str(out),
        "--num-threads", str(settings.threads), "--no-progress", *settings.plugin,
    ]  # fmt: skip
    if settings.quick:
        args += ["--epochs", "1"]
    return args + flat(overrides)


def plugin_run(
    variant: str, data: Path, tag: str, overrides: dict[str, str], seed: int, settings: Settings
) -> dict[str, Any]:
    """One seed of both arms of ``cam_with_lowcam.py``; ``{"plain": {...}, "lowcam": {...}}``."""
    out = (
        settings.work / variant / f"plugin-{tag}-{run_key({**overrides, 'args': settings.plugin})}-seed{seed}"
    )

    def produce() -> dict[str, Any]:
        seconds = run_script(
            _plugin_args(data, out, seed, settings, overrides), out / "bench.log", settings.threads
        )
        results = json.loads((out / "results.json").read_text())
        rows: dict[str, Any] = {"seconds": seconds}
        for arm in ("plain", "lowcam"):
            (entry,) = results[arm]["per_seed"]
            rows[arm] = {"gt_known": float(entry["gt_known"]), "maxboxacc_v2": float(entry["maxboxacc_v2"])}
            if "map_size" in results.get("config", {}):
                rows[arm]["map_size"] = results["config"]["map_size"]
        if "center_gaussian" in results:
            rows["center_gaussian"] = results["center_gaussian"]
        return rows

    return cached(out.with_suffix(".json"), out, produce)


def parallel(tasks: Sequence[Callable[[], Any]], jobs: int) -> list[Any]:
    if jobs <= 1:
        return [task() for task in tasks]
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda task: task(), tasks))


def runs_parser(
    doc: str | None, variants: Sequence[str], default: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """The command line the localization benchmarks share: ``--work``, ``--out``, ``--seeds``,
    ``--variants`` (default: ``default``, else all of ``variants``), ``--jobs``, ``--threads`` and
    ``--quick``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="data sets, runs and the result cache")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--variants", nargs="+", default=list(variants if default is None else default))
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1)")
    parser.add_argument(
        "--quick", action="store_true", help="one epoch per stage: a smoke test, not a result"
    )
    return parser


def parse_runs(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, variants: Sequence[str]
) -> argparse.Namespace:
    """Parse the command line of :func:`runs_parser`; a ``--variants`` name not in ``variants`` is an
    argparse error."""
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in variants]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; expected some of {sorted(variants)}")
    return args
