"""Localization accuracy of ORNet, a like-for-like CAM and the plug-in pair on synthetic CUB-format sets.

What it measures, per synthetic variant (written here by ``examples/synthetic.py``'s generator, each with
its own seed, class count, object scale or clutter):

- ``ornet``: stage 2 of ``examples/train_ornet.py`` (the ORNet recipe), with ``stage1`` (its coarse map)
  and ``cam``, the pipeline's CAM baseline at the ORNet map's resolution, from the same run (same data,
  schedule and seed);
- ``plain`` and ``lowcam``: the two arms of ``benchmarks/plugin_arms.py`` (``examples/cam_with_lowcam.py``'s recipe), the same CAM network trained
  without and with lowcam's evaluator branch and map losses.

Hyper-parameters are chosen on a **validation split** of each variant: its training images, split per class
(the last ``VAL_FRACTION`` of each class's training images become the validation images), the test images
left out. Each candidate is trained on the rest of the training images with seed 0 and scored on the
validation images by the mean of GT-known Loc and MaxBoxAccV2; the best candidate is then trained on the
whole training split with every seed and reported on the test split. Nothing is chosen on a test split.

Outputs ``<out>/localization.json`` and ``<out>/localization.md`` (mean ± sample std over seeds per variant,
and over every (variant, seed) run), with the machine, versions and commit. Every run's result is cached
under ``--work`` (a killed benchmark resumes where it stopped); ``--jobs`` runs that many trainings at once
with ``--threads`` threads each.

Usage::

    python benchmarks/bench_localization.py --work /tmp/lowcam-loc --out benchmarks/results
    python benchmarks/bench_localization.py --quick --work /tmp/loc-quick --out /tmp/loc-quick  # smoke test
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from benchmarks._localization_summary import markdown, selection_score, summarise  # noqa: E402
from benchmarks._runs import (  # noqa: E402
    SELECTION_SEED,
    VAL_FRACTION,
    Settings,
    cached,
    flat,
    ornet_row,
    parallel,
    parse_runs,
    plugin_run,
    run_key,
    run_script,
    runs_parser,
    write_validation_split,
)
from benchmarks._timing import environment, write_results  # noqa: E402
from lowcam.data import ShapesSpec, write_shapes  # noqa: E402

#: The variants: (name, what differs, spec). 256 training images each: with fewer, the schedule of
#: examples/configs/synthetic.yaml does not train the classifiers (chance-level accuracy on 120 images), and
#: on objects of 15-35 % of the image side it stays at chance even with 256.
VARIANTS: tuple[tuple[str, str, ShapesSpec], ...] = (
    ("base", "4 classes, the demo's generator settings", ShapesSpec(classes=4, train_per_class=64, test_per_class=24, seed=101)),
    ("classes-8", "8 classes", ShapesSpec(classes=8, train_per_class=32, test_per_class=12, seed=202)),
    (
        "small-objects",
        "objects 20-45 % of the shorter side (demo: 30-70 %)",
        ShapesSpec(classes=4, train_per_class=64, test_per_class=24, min_object=0.2, max_object=0.45, seed=303),
    ),
    (
        "cluttered",
        "40 distractors per image (demo: 12)",
        ShapesSpec(classes=4, train_per_class=64, test_per_class=24, clutter=40, seed=404),
    ),
)  # fmt: skip

#: ORNet stage-2 candidates (overrides of examples/configs/synthetic.yaml), chosen on validation.
ORNET_GRID: tuple[dict[str, str], ...] = (
    {"fine.optim.lr": "0.0003"},
    {"fine.optim.lr": "0.0001"},
    {"fine.optim.lr": "0.001"},
)
#: Plug-in candidates (options of examples/cam_with_lowcam.py for the lowcam arm), chosen on validation.
PLUGIN_GRID: tuple[dict[str, str], ...] = (
    {"--evaluator-weight": "0.3", "--area-weight": "0.1"},
    {"--evaluator-weight": "0.3", "--area-weight": "0.3"},
)


# ----------------------------------------------------------------------------------------- data sets


def prepare_variant(name: str, spec: ShapesSpec, settings: Settings) -> tuple[Path, Path]:
    """Write the variant's data set and its validation split (reused while the spec is the same)."""
    base = settings.work / name
    data, val = base / "data", base / "val_data"
    done = base / "data.done"
    written = json.dumps(dataclasses.asdict(spec))
    if not done.exists() or done.read_text() != written:  # new or changed: no cached run survives
        if base.exists():
            shutil.rmtree(base)
        write_shapes(data, spec)
        write_validation_split(data, val)
        done.write_text(written)
    return data, val


# ---------------------------------------------------------------------------------------------- runs


def _ornet_args(data: Path, out: Path, seed: int, settings: Settings, cam: bool) -> list[str]:
    args = [
        "examples/train_ornet.py", "--config", "examples/configs/synthetic.yaml",
        "--output_dir", str(out), "--data.root", str(data),
        "--evaluator.seed", str(seed), "--coarse.seed", str(seed), "--fine.seed", str(seed), "--cam.seed", str(seed),
        "--cam.enabled", "true" if cam else "false",
        "--eval.pictures", "0", "--runtime.progress", "false", "--runtime.num_threads", str(settings.threads),
    ]  # fmt: skip
    if settings.quick:
        args += ["--evaluator.epochs", "1", "--coarse.epochs", "1", "--fine.epochs", "1", "--cam.epochs", "1"]
    return args


def ornet_validation(variant: str, val: Path, settings: Settings) -> list[dict[str, Any]]:
    """Score every ORNet candidate on the validation split; stages 0 and 1 are trained once and shared."""
    base = settings.work / variant / "ornet-val"
    shared = base / "shared"
    scores = []
    for k, overrides in enumerate(ORNET_GRID):
        out = base / f"candidate-{run_key(overrides)}"
        args = _ornet_args(val, out, SELECTION_SEED, settings, cam=False) + flat(overrides)

        def produce(
            out: Path = out,
            args: list[str] = args,
            overrides: dict[str, str] = overrides,
            first: bool = k == 0,
        ) -> dict[str, Any]:
            if first:
                seconds = run_script([*args, "--stage", "all"], out / "bench.log", settings.threads)
                if shared.exists():
                    shutil.rmtree(shared)
                shutil.copytree(out, shared)
            else:
                shutil.copytree(shared, out)
                restart = [*args, "--stage", "all", "--restart-from", "fine"]
                seconds = run_script(restart, out / "bench.log", settings.threads)
            metrics = json.loads((out / "metrics.json").read_text())
            return {"overrides": overrides, "fine": ornet_row(metrics, "fine"), "seconds": seconds}

        scores.append(cached(out.with_suffix(".json"), out, produce))
    return scores


def ornet_final(
    variant: str, data: Path, overrides: dict[str, str], seed: int, settings: Settings
) -> dict[str, Any]:
    """One seed of the chosen ORNet setting on the full training split; the test split's rows."""
    out = settings.work / variant / f"ornet-{run_key(overrides)}-seed{seed}"

    def produce() -> dict[str, Any]:
        args = _ornet_args(data, out, seed, settings, cam=True) + flat(overrides)
        seconds = run_script([*args, "--stage", "all"], out / "bench.log", settings.threads)
        metrics = json.loads((out / "metrics.json").read_text())
        rows = {"ornet": "fine", "stage1": "coarse", "cam": "cam"}
        return {**{name: ornet_row(metrics, row) for name, row in rows.items()}, "seconds": seconds}

    return cached(out.with_suffix(".json"), out, produce)


# --------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = runs_parser(__doc__, [name for name, _, _ in VARIANTS])
    parser.add_argument("--no-plugin", action="store_true", help="skip the plug-in pair")
    parser.add_argument("--no-ornet", action="store_true", help="skip the ORNet pipeline")
    known = {name: (what, spec) for name, what, spec in VARIANTS}
    args = parse_runs(parser, argv, list(known))
    settings = Settings(args.work.resolve(), args.threads, args.quick)
    started = time.perf_counter()
    measured_on = environment("cpu")  # the commit the runs start from (later edits do not change it)
    roots = {}
    for name in args.variants:
        _what, spec = known[name]
        if args.quick:
            spec = dataclasses.replace(spec, train_per_class=8, test_per_class=4)
        roots[name] = prepare_variant(name, spec, settings)
        print(f"[{name}] data in {roots[name][0]}", flush=True)

    chosen: dict[str, dict[str, Any]] = {name: {} for name in args.variants}
    compute_seconds: list[float] = []
    validation: dict[str, dict[str, Any]] = {name: {} for name in args.variants}

    def ornet_select(name: str) -> None:
        scores = ornet_validation(name, roots[name][1], settings)
        validation[name]["ornet"] = scores
        compute_seconds.extend(float(s.get("seconds", 0.0)) for s in scores)
        best = max(scores, key=lambda s: selection_score(s["fine"]))
        chosen[name]["ornet"] = best["overrides"]
        print(
            f"[{name}] ORNet validation: "
            + "; ".join(f"{s['overrides']} {selection_score(s['fine']):.2f}" for s in scores),
            flush=True,
        )

    def plugin_select(name: str, overrides: dict[str, str]) -> Callable[[], dict[str, Any]]:
        return lambda: plugin_run(name, roots[name][1], "val", overrides, SELECTION_SEED, settings)

    tasks: list[Callable[[], Any]] = []
    if not args.no_ornet:
        tasks += [lambda name=name: ornet_select(name) for name in args.variants]
    plugin_keys = []
    if not args.no_plugin:
        for name in args.variants:
            for overrides in PLUGIN_GRID:
                plugin_keys.append((name, overrides))
                tasks.append(plugin_select(name, overrides))
    results = parallel(tasks, args.jobs)
    plugin_scores = results[len(results) - len(plugin_keys) :]
    for name in args.variants:
        candidates = [(o, r) for (n, o), r in zip(plugin_keys, plugin_scores) if n == name]
        if candidates:
            validation[name]["lowcam"] = [
                {"overrides": o, "lowcam": r["lowcam"], "plain": r["plain"]} for o, r in candidates
            ]
            best_overrides, _ = max(candidates, key=lambda c: selection_score(c[1]["lowcam"]))
            compute_seconds.extend(float(r.get("seconds", 0.0)) for _, r in candidates)
            chosen[name]["lowcam"] = best_overrides
            print(
                f"[{name}] plug-in validation: "
                + "; ".join(f"{o} {selection_score(r['lowcam']):.2f}" for o, r in candidates),
                flush=True,
            )

    finals: list[tuple[str, str, int]] = []
    final_tasks: list[Callable[[], Any]] = []
    for name in args.variants:
        data = roots[name][0]
        for seed in args.seeds:
            if not args.no_ornet:
                finals.append((name, "ornet", seed))
                final_tasks.append(
                    lambda n=name, d=data, s=seed: ornet_final(n, d, chosen[n]["ornet"], s, settings)
                )
            if not args.no_plugin:
                finals.append((name, "plugin", seed))
                final_tasks.append(
                    lambda n=name, d=data, s=seed: plugin_run(n, d, "test", chosen[n]["lowcam"], s, settings)
                )
    final_results = parallel(final_tasks, args.jobs)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in args.variants}
    map_sizes: dict[str, Any] = {}
    for (name, _kind, seed), rows in zip(finals, final_results):
        compute_seconds.append(float(rows.get("seconds", 0.0)))
        for method, row in rows.items():
            if method == "seconds":
                continue
            runs[name].setdefault(method, []).append({**row, "seed": seed})
            if "map_size" in row:
                map_sizes[method] = row["map_size"]
    payload = {
        "environment": measured_on,
        "command": "python benchmarks/bench_localization.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "seeds": args.seeds,
        "quick": args.quick,
        "variant_notes": {name: known[name][0] for name in args.variants},
        "specs": {name: dataclasses.asdict(known[name][1]) for name in args.variants},
        "grids": {"ornet": list(ORNET_GRID), "lowcam": list(PLUGIN_GRID)},
        "selection": {
            "seed": SELECTION_SEED,
            "val_fraction": VAL_FRACTION,
            "score": "mean of GT-known Loc and MaxBoxAccV2",
        },
        "validation": validation,
        "chosen": chosen,
        "runs": runs,
        "map_sizes": map_sizes,
        "summary": summarise(runs),
        "wall_seconds": time.perf_counter() - started,
        "training_seconds": sum(compute_seconds),
    }
    payload["environment"]["threads_per_run"] = args.threads
    payload["environment"]["jobs"] = args.jobs
    text = markdown(payload)
    write_results(args.out / "localization", payload, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
