"""The summary of ``bench_localization.py``'s runs: the selection score, mean ± std per variant and over
all runs, the targets, and the Markdown it writes (its report and the README's table)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks._timing import markdown_table

__all__ = ["METHODS", "cell", "markdown", "mean_std", "readme_table", "selection_score", "summarise"]


def selection_score(row: dict[str, Any]) -> float:
    """What validation maximises: the mean of GT-known Loc and MaxBoxAccV2."""
    return (float(row["gt_known"]) + float(row["maxboxacc_v2"])) / 2


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(values: Sequence[float], digits: int = 1) -> str:
    """A table cell: ``mean ± sample std`` of ``values`` with ``digits`` decimals."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


METHODS = (
    ("ornet", "ORNet stage 2 (examples/train_ornet.py)"),
    ("cam", "CAM, ORNet's map resolution (same run)"),
    ("stage1", "ORNet stage 1 map (same run)"),
    ("plain", "plug-in pair: CAM without lowcam"),
    ("lowcam", "plug-in pair: CAM + lowcam"),
)


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """``runs[variant][method]`` = per-seed rows → per-variant and overall mean ± std, and the targets."""
    summary: dict[str, Any] = {"variants": {}, "overall": {}}
    pooled: dict[str, dict[str, list[float]]] = {}
    for variant, methods in runs.items():
        entry: dict[str, Any] = {}
        for method, rows in methods.items():
            per_metric = {m: [float(r[m]) for r in rows] for m in ("gt_known", "maxboxacc_v2")}
            entry[method] = {m: dict(zip(("mean", "std"), mean_std(v))) for m, v in per_metric.items()}
            if rows and "map_size" in rows[0]:
                entry[method]["map_size"] = rows[0]["map_size"]
            for m, v in per_metric.items():
                pooled.setdefault(method, {}).setdefault(m, []).extend(v)
        summary["variants"][variant] = entry
    for method, per_metric in pooled.items():
        summary["overall"][method] = {
            m: dict(zip(("mean", "std"), mean_std(v))) for m, v in per_metric.items()
        }

    def gap(a: str, b: str, metric: str, where: dict[str, Any]) -> float:
        return float(where[a][metric]["mean"] - where[b][metric]["mean"])

    variants = summary["variants"]
    overall = summary["overall"]
    targets: dict[str, Any] = {}
    if "ornet" in overall and "cam" in overall:
        per_variant = {v: gap("ornet", "cam", "gt_known", e) for v, e in variants.items()}
        targets["ornet_vs_cam_gt_known"] = {
            "mean_gap": gap("ornet", "cam", "gt_known", overall),
            "per_variant_gap": per_variant,
            "target": "mean gap >= 10 and ahead on every variant",
            "met": gap("ornet", "cam", "gt_known", overall) >= 10
            and all(g > 0 for g in per_variant.values()),
        }
    if "lowcam" in overall and "plain" in overall:
        block: dict[str, Any] = {"target": "mean gap >= 5 on both metrics and ahead on >= 3 of 4 variants"}
        met = True
        for metric in ("gt_known", "maxboxacc_v2"):
            per_variant = {v: gap("lowcam", "plain", metric, e) for v, e in variants.items()}
            mean_gap = gap("lowcam", "plain", metric, overall)
            block[metric] = {"mean_gap": mean_gap, "per_variant_gap": per_variant}
            met = met and mean_gap >= 5 and sum(g > 0 for g in per_variant.values()) >= 3
        block["met"] = met
        targets["lowcam_vs_plain"] = block
    summary["targets"] = targets
    return summary


def markdown(payload: dict[str, Any]) -> str:
    env, summary = payload["environment"], payload["summary"]
    lines = [
        f"# Localization on synthetic CUB-format variants ({env['device']})",
        "",
        f"torch {env['torch']}, Python {env['python']}, commit {env['commit']}, {env['date']}; "
        f"{len(payload['seeds'])} seeds per variant ({', '.join(map(str, payload['seeds']))}), "
        f"{payload['training_seconds'] / 60:.1f} min of training runs ({payload['environment']['jobs']} at "
        f"once, {payload['environment']['threads_per_run']} thread(s) each). Mean ± sample std over seeds, in percent, on each "
        "variant's test split; hyper-parameters chosen on a validation split of its training images "
        "(see `benchmarks/bench_localization.py`).",
        "",
    ]
    header = ["variant", "metric", *[label for _, label in METHODS]]
    rows = []
    for variant, entry in [*summary["variants"].items(), ("all runs", summary["overall"])]:
        for metric, name in (("gt_known", "GT-known Loc"), ("maxboxacc_v2", "MaxBoxAccV2")):
            cells = []
            for method, _ in METHODS:
                if method in entry:
                    stat = entry[method][metric]
                    cells.append(f"{stat['mean']:.2f} ± {stat['std']:.2f}")
                else:
                    cells.append("—")
            rows.append([variant if metric == "gt_known" else "", name, *cells])
    lines.append(markdown_table(header, rows))
    lines += [
        "",
        "Map sizes (on the crop): " + ", ".join(f"{m}: {s}" for m, s in payload.get("map_sizes", {}).items()),
    ]
    lines += ["", "Variants:"]
    lines += [f"- `{name}`: {what}" for name, what in payload["variant_notes"].items()]
    lines += ["", "Chosen on validation (seed 0):"]
    for variant, chosen in payload["chosen"].items():
        lines.append(f"- `{variant}`: ORNet {chosen.get('ornet', '—')}; lowcam {chosen.get('lowcam', '—')}")
    lines += ["", "Targets:"]
    t = summary["targets"]
    if "ornet_vs_cam_gt_known" in t:
        o = t["ornet_vs_cam_gt_known"]
        per = ", ".join(f"{v} {g:+.2f}" for v, g in o["per_variant_gap"].items())
        lines.append(
            f"- ORNet stage 2 − CAM, GT-known Loc: {o['mean_gap']:+.2f} on the mean ({per}); target "
            f"{o['target']}: {'met' if o['met'] else 'NOT met'}."
        )
    if "lowcam_vs_plain" in t:
        p = t["lowcam_vs_plain"]
        for metric, name in (("gt_known", "GT-known Loc"), ("maxboxacc_v2", "MaxBoxAccV2")):
            per = ", ".join(f"{v} {g:+.2f}" for v, g in p[metric]["per_variant_gap"].items())
            lines.append(f"- lowcam − plain, {name}: {p[metric]['mean_gap']:+.2f} on the mean ({per}).")
        lines.append(f"- plug-in target ({p['target']}): {'met' if p['met'] else 'NOT met'}.")
    lines += ["", f"`{payload['command']}` wrote this table."]
    return "\n".join(lines)


def readme_table(payload: dict[str, Any]) -> str:
    """The all-runs table as the README shows it (a test checks that the README holds exactly this)."""
    overall = payload["summary"]["overall"]
    sizes = payload.get("map_sizes", {})
    rows = []
    for method, label in METHODS:
        if method not in overall:
            continue
        size = "×".join(str(v) for v in sizes.get(method, [])) or "?"
        stats = overall[method]
        rows.append(
            [
                label,
                size,
                f"{stats['gt_known']['mean']:.2f} ± {stats['gt_known']['std']:.2f}",
                f"{stats['maxboxacc_v2']['mean']:.2f} ± {stats['maxboxacc_v2']['std']:.2f}",
            ]
        )
    return markdown_table(["method", "map", "GT-known Loc", "MaxBoxAccV2"], rows)
