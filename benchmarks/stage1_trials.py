"""Stage 1 on the birds' validation split: is the evaluated (eval-mode) generator the trained one, and does
PreciseBN at the end of a stage help?

For each seed and setting — ``reference``; ``coarse`` (``--coarse.recalibrate_bn true``); ``both`` (and
``--fine.recalibrate_bn true``) — runs ``examples/train_ornet.py --config examples/configs/pretrained.yaml``
on the validation split of ``bench_pretrained.py``'s ``base`` variant (seed for every stage; stage 1 for 15
epochs, the config's length when these trials ran; stage 2's learning rate 0.01, the one the validation of
``pretrained.json`` chose then; ``fine.area.topk`` 4; no CAM), then
reads the stage-1 and stage-2 rows of ``metrics.json`` and measures the stage-1 network with
:func:`benchmarks.map_border.measure` (the generator's accuracy in eval and in train mode, where the maps'
highest pixels lie). Nothing here looks at a test split. Each run's record is cached in
``<work>/<setting>-seed<k>.json`` (a killed benchmark resumes).

Writes ``<out>/stage1_trials.{json,md}``.

Usage::

    python benchmarks/stage1_trials.py --work /tmp/lowcam-stage1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]


from benchmarks._localization_summary import cell  # noqa: E402
from benchmarks._runs import cached, ornet_row, parallel, run_script  # noqa: E402
from benchmarks._timing import environment, markdown_table, write_results  # noqa: E402
from benchmarks.bench_pretrained import VARIANTS, _data  # noqa: E402
from benchmarks.map_border import measure  # noqa: E402

__all__ = ["SETTINGS", "main", "markdown", "trial"]

#: setting → the overrides it adds
SETTINGS: dict[str, tuple[str, ...]] = {
    "reference": (),
    "coarse": ("--coarse.recalibrate_bn", "true"),
    "both": ("--coarse.recalibrate_bn", "true", "--fine.recalibrate_bn", "true"),
}


def trial(val: Path, out: Path, setting: str, seed: int, threads: int) -> dict[str, Any]:
    """One run and its measurements, computed once (:func:`benchmarks._runs.cached`: ``<out>.json``)."""

    def produce() -> dict[str, Any]:
        args = [
            "examples/train_ornet.py", "--config", "examples/configs/pretrained.yaml", "--data.root", str(val),
            "--output_dir", str(out), "--stage", "all", "--evaluator.seed", str(seed), "--coarse.seed", str(seed),
            "--fine.seed", str(seed), "--coarse.epochs", "15", "--fine.area.topk", "4", "--fine.optim.lr", "0.01",
            "--cam.enabled", "false",
            "--eval.pictures", "0", "--runtime.progress", "false", "--runtime.num_threads", str(threads),
            *SETTINGS[setting],
        ]  # fmt: skip
        run_script(args, out / "bench.log", threads)
        metrics = json.loads((out / "metrics.json").read_text())
        return {
            "setting": setting,
            "seed": seed,
            "stage1": ornet_row(metrics, "coarse"),
            "stage2": ornet_row(metrics, "fine"),
            "generator": measure(out, val),
        }

    return cached(out.with_suffix(".json"), out, produce)


def markdown(payload: dict[str, Any]) -> str:
    """The results as a Markdown page: one row per setting, mean ± sample std over the seeds."""
    env = payload["environment"]
    lines = [
        "# Stage 1 of the birds pipeline on a validation split: eval-mode generator and PreciseBN",
        "",
        f"{env['device']}; torch {env['torch']}, commit {env['commit']}, {env['date']}; seeds "
        f"{', '.join(map(str, payload['seeds']))}; the validation split of `base` (120 training, 40 validation "
        "images); mean ± sample std over seeds, in percent for the maps.",
        "",
    ]
    header = [
        "setting", "stage 1 MaxBoxAccV2", "stage 1 GT-known Loc", "stage 2 MaxBoxAccV2", "stage 2 GT-known Loc",
        "generator acc. (eval mode)", "generator acc. (train mode)", "p top-20 pixels on head / rest of bird / background (%)",
    ]  # fmt: skip
    rows = []
    for setting in SETTINGS:
        runs = [r for r in payload["runs"] if r["setting"] == setting]
        if not runs:
            continue
        g = [r["generator"] for r in runs]
        parts = " / ".join(
            cell([100 * x["p"][k] for x in g], 0) for k in ("top_head", "top_body", "top_background")
        )
        rows.append(
            [
                f"`{setting}`",
                *(
                    cell([r[s][m] for r in runs])
                    for s in ("stage1", "stage2")
                    for m in ("maxboxacc_v2", "gt_known")
                ),
                cell([x["accuracy_eval"] for x in g], 2),
                cell([x["accuracy_train"] for x in g], 2),
                parts if all("p" in x for x in g) else "—",
            ]
        )
    lines += [markdown_table(header, rows), ""]
    lines += [
        f"- `{s}`: {' '.join(o) if o else 'the reference (no recalibration)'}" for s, o in SETTINGS.items()
    ]
    lines += ["", f"`{payload['command']}` wrote this file."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="the data, the runs and their records")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    measured_on = environment("cpu")
    spec = next(spec for name, _, spec in VARIANTS if name == "base")
    work = args.work.resolve()
    _data("base", spec, work)
    val = work / "base" / "val_data"
    tasks = [
        lambda s=setting, k=seed: trial(val, work / f"{s}-seed{k}", s, k, args.threads)
        for setting in args.settings
        for seed in args.seeds
    ]
    payload = {
        "environment": {**measured_on, "threads_per_run": args.threads, "jobs": args.jobs},
        "command": "python benchmarks/stage1_trials.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "seeds": args.seeds,
        "settings": {s: list(SETTINGS[s]) for s in args.settings},
        "runs": parallel(tasks, args.jobs),
        "wall_seconds": time.perf_counter() - started,
    }
    text = markdown(payload)
    write_results(args.out / "stage1_trials", payload, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
