"""Which map does ORNet's stage-2 objective reward, on the birds?

Stage 2 trains the map ``p`` to minimise ``CE(evaluator(x · erase(p))) + w_area · AreaLoss + w_entropy ·
WeightedEntropyLoss(p)`` with the evaluator frozen. This script scores fixed candidate maps under that
objective, with the trained evaluator of a run of ``examples/train_ornet.py`` on an ``examples/birds.py``
data set: the whole image, the bird's silhouette, its box, the head alone, the bird without its head, the
background, the centre Gaussian, and the run's own stage-1 and stage-2 maps. Silhouettes are redrawn from
the birds' seeds (:func:`lowcam.data.render_bird_masks`; each one's tight box is checked against
``bounding_boxes.txt``), taken through the evaluation transform and averaged onto the map's grid.

Per candidate: the evaluator's cross-entropy and accuracy on ``x · p`` (no erasing) and, averaged over
``--draws`` seeded draws, on ``x · erase(p)`` (attentive erasing in training mode, as stage 2 sees it), the
map's term of the area loss (``mean p``; its class-map terms are left out: they depend on ``p`` only
through the ranking of the evaluator's logits on the erased image), the weighted
entropy, and the objective ``CE(erased) + w_area · mean p + w_entropy · entropy`` with the run's weights.
The lowest objective is the map stage 2 is pushed towards; if that is not the bird, stage 2 cannot grow a
map into an object map on this data, whatever its schedule.

Usage (one run, printed; or every finished run of a ``bench_pretrained.py --work`` folder, written to
``<out>/stage2_objective.{json,md}``)::

    python benchmarks/stage2_objective.py --run RUN --data DATA --variant base
    python benchmarks/stage2_objective.py --work /tmp/lowcam-pre --out benchmarks/results
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from ornet import recipe  # noqa: E402
from ornet.config import Config  # noqa: E402
from ornet.stages import build_evaluator, load_fine_parts  # noqa: E402
from ornet.training import checkpoint_path, load_model  # noqa: E402

import lowcam  # noqa: E402
from benchmarks._localization_summary import cell  # noqa: E402
from benchmarks._runs import read_table, run_context  # noqa: E402
from benchmarks._timing import environment, markdown_table, write_results  # noqa: E402
from benchmarks.bench_pretrained import DEFAULT_VARIANTS, VARIANTS  # noqa: E402
from lowcam.data import (  # noqa: E402
    BirdSpec,
    SampleDataset,
    collate_samples,
    ornet_test_transform,
    render_bird_masks,
    tight_box,
)

__all__ = [
    "CANDIDATES", "bird_masks", "bird_window", "main", "markdown", "masked_evaluator", "measure", "score",
]  # fmt: skip

#: the candidate maps, in the order of the table
CANDIDATES = ("whole image", "bird", "bird box", "head", "bird without head", "background", "centre Gaussian")


def bird_masks(data: Path, spec: BirdSpec, paths: Sequence[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bird, head)`` boolean ``(N, size, size)`` masks of the birds at ``paths`` (images of ``data``),
    redrawn from ``spec`` and each image's id; raises ``ValueError`` when a redrawn bird's tight box is
    not the one ``bounding_boxes.txt`` lists (the spec is not the data's)."""
    ids = {path: i for i, path in read_table(data / "images.txt")}
    labels = {i: c for i, c in read_table(data / "image_class_labels.txt")}
    boxes = {row[0]: tuple(float(v) for v in row[1:]) for row in read_table(data / "bounding_boxes.txt")}
    birds, heads = [], []
    for path in paths:
        image_id = ids[path.relative_to(data / "images").as_posix()]
        rng = np.random.default_rng([spec.seed, int(image_id)])
        _, bird, head = render_bird_masks(int(labels[image_id]) - 1, spec, rng)
        if tight_box(bird) != boxes[image_id]:
            raise ValueError(
                f"spec: image {image_id} redraws with box {tight_box(bird)}, bounding_boxes.txt has "
                f"{boxes[image_id]}"
            )
        birds.append(torch.from_numpy(bird.copy()))
        heads.append(torch.from_numpy(head.copy()))
    return torch.stack(birds), torch.stack(heads)


def _span(inside: torch.Tensor) -> torch.Tensor:
    """``(N, L)`` booleans → ``True`` from each row's first ``True`` to its last (a box's extent)."""
    return (inside.cumsum(1) > 0) & (inside.flip(1).cumsum(1).flip(1) > 0)


def _to_map(masks: torch.Tensor, cfg: Config, size: int) -> torch.Tensor:
    """Masks in image pixels → ``(N, 1, size, size)`` in [0, 1]: the evaluation transform's resize and
    centre crop, then each map pixel's covered fraction."""
    x = F.interpolate(masks[:, None].float(), size=(cfg.data.resize, cfg.data.resize), mode="bilinear")
    top = round((cfg.data.resize - cfg.data.crop) / 2)  # the transform's CenterCrop offset (torchvision's)
    x = x[..., top : top + cfg.data.crop, top : top + cfg.data.crop]
    return F.adaptive_avg_pool2d(x, size).clamp(0, 1)


def score(
    evaluator: torch.nn.Module,
    parts: recipe.FineParts,
    images: torch.Tensor,
    labels: torch.Tensor,
    p: torch.Tensor,
    draws: int,
) -> dict[str, float]:
    """One candidate map ``p`` (``(N, 1, h, w)``) under stage 2's objective (see the module's text)."""
    with torch.no_grad(), torch.random.fork_rng():  # seeded draws, the caller's RNG left as it was
        plain = evaluator(images, p).float()
        ce_erased, acc_erased = [], []
        parts.erasing.train()
        for k in range(draws):
            torch.manual_seed(k)
            erased, _ = parts.erasing(p)
            logits = evaluator(images, erased).float()
            ce_erased.append(F.cross_entropy(logits, labels).item())
            acc_erased.append((logits.argmax(1) == labels).double().mean().item())
        area = p.mean().item()
        entropy = parts.entropy(p).item()
    ce = float(np.mean(ce_erased))
    return {
        "ce": F.cross_entropy(plain, labels).item(),
        "acc": (plain.argmax(1) == labels).double().mean().item(),
        "ce_erased": ce,
        "acc_erased": float(np.mean(acc_erased)),
        "area": area,
        "entropy": entropy,
        "objective": ce + parts.weights.area * area + parts.weights.entropy * entropy,
        "area_weight": parts.weights.area,
    }


def masked_evaluator(
    classifier: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: Config,
    size: int,
    epochs: int,
    seed: int = 0,
) -> lowcam.Evaluator:
    """A copy of ``classifier`` fine-tuned to classify masked images, frozen as stage 2's evaluator: for
    ``epochs`` passes over ``images`` (batches of 16, Adam 1e-4), each image is kept whole with probability
    one half and otherwise multiplied by a random box (each side 20–100 % of the ``size`` × ``size`` map,
    anywhere in it) upsampled as the evaluator upsamples maps. Not part of ORNet: a probe of what the
    objective would reward if the evaluator could classify the masked images stage 2 shows it."""
    net = copy.deepcopy(classifier).train()
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # dropout draws from the global RNG: seeded here, restored after
        torch.manual_seed(seed)
        _fit_masked(net, optimizer, generator, images, labels, cfg, size, epochs)
    return recipe.frozen_evaluator(net, cfg).eval()


def _fit_masked(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: Config,
    size: int,
    epochs: int,
) -> None:
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for batch in order.split(16):
            b = len(batch)
            sides = (torch.rand(b, 2, generator=generator) * 0.8 + 0.2) * size
            corner = torch.rand(b, 2, generator=generator) * (size - sides)
            grid = torch.arange(size, dtype=torch.float32) + 0.5
            inside_y = (grid >= corner[:, :1]) & (grid <= corner[:, :1] + sides[:, :1])
            inside_x = (grid >= corner[:, 1:]) & (grid <= corner[:, 1:] + sides[:, 1:])
            box = (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]
            whole = torch.rand(b, generator=generator) < 0.5
            maps = torch.where(whole[:, None, None, None], torch.ones_like(box), box)
            smooth = cfg.quirks.upsample in ("bilinear", "bicubic")
            up = F.interpolate(
                maps,
                size=images.shape[-2:],
                mode=cfg.quirks.upsample,
                align_corners=False if smooth else None,
            )
            loss = F.cross_entropy(net(images[batch] * up), labels[batch])
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()


def measure(
    run: Path, data: Path, spec: BirdSpec, images: int = 48, draws: int = 4, masked_epochs: int = 0
) -> dict[str, Any]:
    """Every candidate's :func:`score` on the first ``images`` training images of ``data``, with the
    evaluator (and the stage-1/stage-2 networks, where present) of ``run``; with ``masked_epochs`` also
    under :func:`masked_evaluator` (fine-tuned on every training image of ``data``), as ``maps_masked``."""
    ctx = run_context(run, data)
    cfg, split = ctx.cfg, ctx.train
    evaluator = recipe.frozen_evaluator(load_model(ctx, "evaluator", build_evaluator(ctx)), cfg).eval()
    parts = recipe.fine_parts(cfg)
    transform = ornet_test_transform(cfg.data.resize, cfg.data.crop)  # ImageNet's statistics
    samples = split.samples[:images]
    x, labels, _, _ = next(
        iter(DataLoader(SampleDataset(samples, transform), batch_size=images, collate_fn=collate_samples))
    )
    size = cfg.data.crop // 4  # the generator's map: the stride-4 feature
    bird, head = bird_masks(data, spec, [s.path for s in samples])
    bird_map, head_map = _to_map(bird, cfg, size), _to_map(head, cfg, size)
    maps = {
        "whole image": torch.ones_like(bird_map),
        "bird": bird_map,
        "bird box": _to_map(_span(bird.any(2))[:, :, None] & _span(bird.any(1))[:, None, :], cfg, size),
        "head": head_map,
        "bird without head": (bird_map - head_map).clamp(0, 1),
        "background": 1 - bird_map,
        "centre Gaussian": lowcam.metrics.center_gaussian(len(x), size, size)[:, None],
    }
    for stage, name in (("coarse", "stage 1 map"), ("fine", "stage 2 map")):
        if checkpoint_path(ctx, stage).is_file():  # the pipeline's loader: complete checkpoints only, strict
            net, _ = load_fine_parts(ctx, stage)
            with torch.no_grad():
                maps[name] = net.eval()(x).activation.float()
    result: dict[str, Any] = {
        "images": len(x),
        "draws": draws,
        "weights": [parts.weights.area, parts.weights.entropy],
        "maps": {name: score(evaluator, parts, x, labels, p, draws) for name, p in maps.items()},
    }
    if masked_epochs > 0:
        loader = DataLoader(
            SampleDataset(split.samples, transform), batch_size=len(split.samples), collate_fn=collate_samples
        )
        every, every_labels, _, _ = next(iter(loader))
        probe = masked_evaluator(evaluator.classifier, every, every_labels, cfg, size, masked_epochs)
        result["masked_epochs"] = masked_epochs
        result["maps_masked"] = {name: score(probe, parts, x, labels, p, draws) for name, p in maps.items()}
    return result


def bird_window(maps: dict[str, dict[str, float]], name: str = "bird") -> tuple[float, float] | None:
    """The area weights ``w >= 0`` at which map ``name`` has the lowest objective of the fixed maps
    (``CANDIDATES``), each objective taken as ``ce_erased + w_entropy · entropy + w · mean p`` (linear in
    ``w``): ``(low, high)``, or ``None`` when no weight makes it the lowest."""
    fixed = {n: maps[n] for n in CANDIDATES if n in maps}
    intercept = {n: m["objective"] - m["area_weight"] * m["area"] for n, m in fixed.items()}
    low, high = 0.0, float("inf")
    for other, m in fixed.items():
        if other == name:
            continue
        # name beats other  <=>  intercept[name] + w a[name] < intercept[other] + w a[other]
        gain, slope = intercept[other] - intercept[name], fixed[name]["area"] - m["area"]
        if slope == 0:
            if gain <= 0:
                return None
        elif slope > 0:
            high = min(high, gain / slope)
        else:
            low = max(low, gain / slope)
    return (low, high) if low < high else None


#: (key, column title, decimals) of the results table; accuracies in percent
_COLUMNS = (
    ("ce", "CE", 2), ("acc", "top-1 (%)", 0), ("ce_erased", "CE, erased", 2),
    ("acc_erased", "top-1, erased (%)", 0), ("area", "mean p", 2), ("entropy", "weighted entropy", 3),
    ("objective", "objective", 2),
)  # fmt: skip


def _value(scores: dict[str, float], key: str) -> float:
    """A table's value of ``key``: accuracies in percent."""
    return scores[key] * (100 if key.startswith("acc") else 1)


def _order(names: list[str]) -> list[str]:
    """The table's row order: :data:`CANDIDATES`, then the run's own maps (a JSON file sorts its keys)."""
    rank = {n: k for k, n in enumerate((*CANDIDATES, "stage 1 map", "stage 2 map"))}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


def _rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    names = _order([n for n in runs[0]["maps"] if all(n in r["maps"] for r in runs)])
    return [
        [
            n,
            *(cell([_value(r["maps"][n], k) for r in runs], d) for k, _, d in _COLUMNS),
        ]
        for n in names
    ]


def _per_variant(groups: dict[str, list[dict[str, Any]]], key: str) -> list[str]:
    """The objective of each map per variant under the evaluator of ``key`` (``maps``/``maps_masked``), then
    per variant the lowest map and :func:`bird_window`."""
    runs = [r for group in groups.values() for r in group]
    names = _order([n for n in runs[0][key] if all(n in r[key] for r in runs)])
    table = [[n, *(cell([r[key][n]["objective"] for r in g], 2) for g in groups.values())] for n in names]
    lines = [markdown_table(["map p", *(f"`{v}`" for v in groups)], table), ""]
    for v, group in groups.items():
        best = [min(r[key], key=lambda n, r=r: r[key][n]["objective"]) for r in group]
        found = [w for w in (bird_window(r[key]) for r in group) if w is not None]
        lines.append(
            f"- `{v}`: lowest objective "
            + ", ".join(f"{n} ({best.count(n)} of {len(group)})" for n in dict.fromkeys(best))
            + f"; an area weight at which the bird's silhouette would beat every other fixed map in {len(found)} of "
            f"{len(group)} runs"
            + (" (" + ", ".join(f"{lo:.2f}–{hi:.2f}" for lo, hi in found) + ")" if found else "")
            + "."
        )
    return lines


def markdown(payload: dict[str, Any]) -> str:
    """The results as a Markdown page: every term per map over the lead variants' runs (mean ± sample std),
    the objective per variant, and per variant the map with the lowest objective and :func:`bird_window`."""
    env, runs = payload["environment"], payload["runs"]
    w_area, w_entropy = runs[0]["weights"]
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    lead = [r for r in runs if r["variant"] in DEFAULT_VARIANTS] or runs
    lines = [
        "# Which map does stage 2's objective reward? Fixed maps under the trained evaluator",
        "",
        f"{env['device']}; torch {env['torch']}, commit {env['commit']}, {env['date']}; every finished run of "
        f"`{payload['work']}` ({len(runs)} runs); per run its first {runs[0]['images']} training images, "
        f"erasing drawn {runs[0]['draws']} times per map. Objective = CE(evaluator(x · erase(p))) + {w_area} · mean p + "
        f"{w_entropy} · weighted entropy(p) (the area loss's class-map terms are left out: they depend on p "
        "only through the ranking of the evaluator's logits).",
        "",
        f"Every term, mean ± sample std over the {len(lead)} runs of {', '.join(f'`{v}`' for v in dict.fromkeys(r['variant'] for r in lead))}:",
        "",
        markdown_table(["map p", *(title for _, title, _ in _COLUMNS)], _rows(lead)),
        "",
        "The objective per variant (mean ± sample std over its seeds):",
        "",
    ]
    groups = {v: [r for r in runs if r["variant"] == v] for v in variants}
    lines += _per_variant(groups, "maps")
    if all("maps_masked" in r for r in runs):
        lines += [
            "",
            f"With the evaluator fine-tuned for {runs[0]['masked_epochs']} epochs on masked training images "
            "(`masked_evaluator`: each image whole or multiplied by a random box; a probe, not ORNet), the "
            "objective per variant:",
            "",
            *_per_variant(groups, "maps_masked"),
        ]
    lines += [
        "",
        "The objective is linear in the area weight (the other terms as they are), so `bird_window` gives the "
        "weights, if any, at which the bird's silhouette has the lowest objective of the fixed maps.",
        "",
        f"`{payload['command']}` wrote this file.",
    ]
    return "\n".join(lines)


def _runs_of(work: Path) -> list[tuple[str, int, Path]]:
    """``(variant, seed, run)`` of every finished run of ``bench_pretrained.py`` under ``work``."""
    found = []
    for name, _, _ in VARIANTS:
        for run in sorted((work / name).glob("*-seed*")):
            if run.is_dir() and (run / "metrics.json").is_file():
                found.append((name, int(run.name.rsplit("-seed", 1)[1]), run))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="an output_dir of train_ornet.py (print its table)")
    parser.add_argument("--data", type=Path, help="the birds data set the run trained on")
    parser.add_argument("--variant", default="base", choices=[name for name, _, _ in VARIANTS])
    parser.add_argument("--work", type=Path, help="a bench_pretrained.py --work folder: every finished run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="with --work")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--draws", type=int, default=4, help="erasing draws per candidate")
    parser.add_argument(
        "--masked-epochs",
        type=int,
        default=0,
        help="also score under masked_evaluator trained this long (0: no)",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if (args.run is None) == (args.work is None) or (args.run is not None and args.data is None):
        parser.error("give either --run and --data, or --work")
    torch.set_num_threads(args.threads)
    specs = {name: spec for name, _, spec in VARIANTS}
    if args.work is not None:
        runs = [
            {
                "variant": v,
                "seed": k,
                **measure(run, args.work / v / "data", specs[v], args.images, args.draws, args.masked_epochs),
            }
            for v, k, run in _runs_of(args.work)
        ]
        if not runs:
            parser.error(f"--work: no finished run under {args.work}")
        payload = {
            "environment": environment("cpu"),
            "command": "python benchmarks/stage2_objective.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "work": str(args.work),
            "runs": runs,
        }
        text = markdown(payload)
        write_results(args.out / "stage2_objective", payload, text)
        print(text)
        return 0
    m = measure(args.run, args.data, specs[args.variant], args.images, args.draws, args.masked_epochs)
    w_area, w_entropy = m["weights"]
    print(
        f"{args.run}: {m['images']} training images, {m['draws']} erasing draws; objective = CE(erased) + "
        f"{w_area} · mean p + {w_entropy} · entropy"
    )
    for key, title in (
        ("maps", "the run's evaluator"),
        ("maps_masked", "the evaluator fine-tuned on masked images"),
    ):
        if key not in m:
            continue
        print(f"under {title}:")
        rows = [[n, *(f"{_value(sc, k):.{d}f}" for k, _, d in _COLUMNS)] for n, sc in m[key].items()]
        print(markdown_table(["map p", *(t for _, t, _ in _COLUMNS)], rows))
        window = bird_window(m[key])
        print(
            "the bird's silhouette wins at no area weight"
            if window is None
            else f"the bird's silhouette wins at area weights {window[0]:.2f}–{window[1]:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
