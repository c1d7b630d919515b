"""Plug lowcam into your own CAM model: the recipe, against the same model trained without lowcam.

The model is a torchvision ResNet turned into a CAM network at a fair map resolution: the stride of the
first block of ``layer4`` (``--output-stride 16``) or of ``layer3`` and ``layer4`` (``8``, the default) is
set to 1 (its strided convolution and its downsample convolution; no dilation), so a 64-pixel crop gives
8 × 8 class activation maps instead of 2 × 2. The map is the CAM of one class, min–max normalised exactly
as the "wsoleval" evaluation normalises score maps::

    cams = lowcam.cam_class_maps(features, fc.weight)      # (B, C, h, w) raw CAMs
    f    = lowcam.normalize_map(cams)                       # the class maps, each in [0, 1]
    p    = lowcam.select_class_map(f, y)                    # (B, 1, h, w): true class in training

Two arms, same data, schedule, initialisation and seeds:

- ``plain``: cross-entropy only;
- ``lowcam``: ORNet's stage-2 terms added to the cross-entropy::

    p_erased = lowcam.AttentiveErasing(min_size=4 / 56)(p)   # training only; a fraction of the map side
    z        = lowcam.Evaluator(frozen)(x, p_erased)         # frozen classifier on x · up(p_erased)
    loss     = CE(logits, y) + w_e · CE(z, y) + w_a · AreaLoss(p, f, z) + w_h · WeightedEntropyLoss(p)

  Defaults ``w_e = 0.3``, ``w_a = 0.1``, ``w_h = 1.5`` (ORNet: 1, 0.02, 1.5), from a short look at a
  held-out part of the synthetic training set (``--val-per-class``), never its test split: with ORNet's
  ``w_e = 1`` and ``w_a = 0.02`` the lowcam arm localised worse than the plain one there (GT-known
  42.5 vs 60.0 % on 40 held-out images, one seed), with ``0.3`` and ``0.1`` better on two seeds.

  The frozen evaluator of seed ``s`` is the ``plain`` arm's trained network of seed ``s``, copied and
  frozen (``lowcam.Evaluator`` keeps it in eval mode and gives it no gradient). It has the same
  architecture and saw the same data; as ORNet's stage 0, it is a trained classifier that the ``lowcam``
  arm uses and the ``plain`` arm does not. The ``lowcam`` network itself starts from the same
  initialisation as the ``plain`` one, not from the plain network's weights.

Evaluation, on the data set's test split (or, with ``--val-per-class N``, on N training images per class
held out from training, for choosing hyper-parameters), of the CAM of the ground-truth class:

- GT-known Loc, protocol "ornet": the normalised map at its own resolution, images resized to
  ``--resize`` and centre-cropped to ``--crop`` (boxes moved with them), ``BoxAccuracy("ornet")``;
- MaxBoxAccV2, protocol "wsoleval": images squashed to ``--crop``, the raw CAM through
  ``metrics.prepare_scoremap`` to ``--score-size`` (default: the crop), ``BoxAccuracy("maxboxacc_v2")``.

Usage (on the synthetic data of ``examples/synthetic.py``)::

    python examples/synthetic.py --out data/synthetic --train-per-class 50
    python examples/cam_with_lowcam.py --data data/synthetic --seeds 0 1 2 --out runs/plugin

``<out>/results.json``: ``{"plain": {"gt_known", "maxboxacc_v2", "per_seed": [{"seed", "gt_known",
"maxboxacc_v2"}, ...]}, "lowcam": {...}, "config": {...every argument..., "map_size"}}`` (percent; the
arm values are means over the seeds). ``<out>/details.json`` holds the per-epoch losses, the share of
samples erased per epoch, Top-1 Loc and classification accuracy of every arm and seed.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
import torchvision
from ornet.data import DataSplit, Sample, WSOLDataset, collate, read_cub
from ornet.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ornet_test_transform,
    train_transform,
    wsol_test_transform,
)
from torch import nn
from torch.utils.data import DataLoader

import lowcam
from lowcam import metrics

ARMS = ("plain", "lowcam")


# --------------------------------------------------------------------------------------------- model


# --8<-- [start:model]
def _unstride(block: nn.Module) -> None:
    """Set every stride-2 convolution of a ResNet block (its strided conv and its downsample) to stride 1."""
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (1, 1)


class CamResNet(nn.Module):
    """A torchvision ResNet as a CAM network: ``features → GAP → fc``, class maps from ``fc.weight``.

    ``forward(images)`` returns the logits ``(B, C)`` (so the network can serve as a
    :class:`lowcam.Evaluator`'s classifier); :meth:`forward_maps` also returns the raw CAMs
    ``(B, C, H / s, W / s)`` of :func:`lowcam.cam_class_maps`, whose spatial mean is the logit minus the bias.

    Args:
        backbone: a torchvision ResNet name (``resnet18``, ``resnet34``, ``resnet50``, ...).
        num_classes: the number of classes.
        output_stride: 8 (``layer3`` and ``layer4`` unstrided) or 16 (``layer4`` unstrided); 32 is the
            unchanged network.
        weights: ``None`` (random initialisation, nothing downloaded), a file holding a torchvision
            ``state_dict`` of this backbone (1000-class ``fc`` included or not), or a torchvision weights
            enum name such as ``IMAGENET1K_V1`` (downloaded by torchvision unless cached).
    """

    def __init__(
        self, backbone: str, num_classes: int, *, output_stride: int = 8, weights: str | None = None
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        is_file = weights is not None and Path(weights).is_file()
        net = torchvision.models.get_model(backbone, weights=None if is_file else weights)
        if is_file:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            expected = {k for k in net.state_dict() if not k.startswith("fc.")}
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            if missing or unexpected:
                raise ValueError(
                    f"weights file {weights} does not hold a {backbone}: missing {missing[:5]} "
                    f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})"
                )
            net.load_state_dict(state, strict=False)  # every tensor but fc's: checked above
        if output_stride <= 16:
            _unstride(net.layer4[0])
        if output_stride == 8:
            _unstride(net.layer3[0])
        self.output_stride = output_stride
        self.features = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
        )
        self.fc = nn.Linear(net.fc.in_features, num_classes)

    def forward_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, C), raw CAMs (B, C, h, w))``."""
        features = self.features(images)
        logits = self.fc(features.mean(dim=(2, 3)))
        return logits, lowcam.cam_class_maps(features, self.fc.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_maps(images)[0]


# --8<-- [end:model]


def map_size(crop: int, output_stride: int) -> int:
    """The side of the CAM for a ``crop``-pixel input (ResNet: each stride-2 stage rounds up)."""
    side = crop
    for _ in range(int(math.log2(output_stride))):
        side = (side + 1) // 2
    return side


# ---------------------------------------------------------------------------------------- training


# --8<-- [start:step]
class LowcamParts:
    """The lowcam arm's components: erasing, the frozen evaluator and the two map losses."""

    def __init__(
        self, args: argparse.Namespace, evaluator_net: nn.Module, generator: torch.Generator
    ) -> None:
        self.erasing = lowcam.AttentiveErasing(
            erase_prob=args.erase_prob,
            min_factor=args.min_factor,
            max_factor=args.max_factor,
            min_size=args.min_size,
        )
        self.evaluator = lowcam.Evaluator(evaluator_net, upsample=args.upsample)
        self.area = lowcam.AreaLoss(topk=args.area_topk, skip=args.area_skip)
        self.entropy = lowcam.WeightedEntropyLoss()
        self.generator = generator


def step_losses(
    model: CamResNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    args: argparse.Namespace,
    parts: LowcamParts | None,
) -> dict[str, torch.Tensor]:
    """One training step's losses: ``loss`` (what is minimised) and its terms (detached copies are logged)."""
    logits, cams = model.forward_maps(images)
    ce = F.cross_entropy(logits, labels)
    out = {"loss": ce, "ce": ce, "acc": (logits.argmax(1) == labels).float().mean()}
    if parts is None:
        return out
    f = lowcam.normalize_map(cams, args.normalize)  # class maps in [0, 1]
    p = lowcam.select_class_map(f, labels)  # (B, 1, h, w): the true class's map
    erasing = parts.erasing(p, generator=parts.generator)
    z = parts.evaluator(images, erasing.erased)  # frozen classifier on the masked image
    ce_evaluator = F.cross_entropy(z, labels)
    area = parts.area(p, f, z)
    entropy = parts.entropy(p)
    loss = ce + args.evaluator_weight * ce_evaluator + args.area_weight * area + args.entropy_weight * entropy
    erased = erasing.was_erased.float().mean()  # the share of samples erased (no host sync)
    return {
        **out,
        "loss": loss,
        "ce_evaluator": ce_evaluator,
        "area": area,
        "entropy": entropy,
        "erased": erased,
        "p_mean": p.detach().mean(),  # how much of the map is on
    }


# --8<-- [end:step]


def train(
    model: CamResNet,
    loader: Callable[[int], DataLoader[Any]],
    args: argparse.Namespace,
    seed: int,
    parts: LowcamParts | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` for ``args.epochs`` epochs of SGD with a cosine schedule; returns the epoch means.

    ``loader(epoch)`` yields the batches. The global RNG (random crops and flips) is reseeded from ``seed``
    every epoch, so both arms see the same images; erasing draws from its own generator.
    """
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    steps = max(1, args.epochs * len(loader(0)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    history: list[dict[str, float]] = []
    for epoch in range(args.epochs):
        torch.manual_seed(seed * 1000 + epoch)
        model.train()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        for images, labels, _, _ in loader(epoch):
            losses = step_losses(model, images, labels, args, parts)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            n = images.shape[0]
            count += n
            for key, value in losses.items():
                sums[key] = sums.get(key, torch.zeros(())) + value.detach().float() * n
        history.append({key: float(total) / max(count, 1) for key, total in sums.items()})
        if log is not None:
            log(
                f"epoch {epoch + 1}/{args.epochs} " + " ".join(f"{k}={v:.4f}" for k, v in history[-1].items())
            )
    return history


# -------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    model: CamResNet, ornet_loader: DataLoader[Any], wsol_loader: DataLoader[Any], args: argparse.Namespace
) -> dict[str, float]:
    """GT-known Loc and Top-1 Loc ("ornet"), MaxBoxAccV2 ("wsoleval") and classification accuracy, percent.

    Both protocols score the CAM of the ground-truth class (that is what GT-known means; the predicted
    class's map, ``select_class_map(f, logits.argmax(1))``, is what inference without labels uses, and
    Top-1 Loc counts an image only when that class is right).
    """
    model.eval()
    ornet = metrics.BoxAccuracy("ornet", image_size=args.crop)
    v2 = metrics.BoxAccuracy("maxboxacc_v2")
    correct = total = 0
    for images, labels, boxes, _ in ornet_loader:
        logits, cams = model.forward_maps(images)
        p = lowcam.normalize_map(lowcam.select_class_map(cams, labels), args.normalize)
        ornet.update(p, boxes, logits=logits, targets=labels)
        correct += int((logits.argmax(1) == labels).sum())
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
        "maxboxacc_v2": w.value,
        "top1_cls": 100.0 * correct / max(total, 1),
    }


# ------------------------------------------------------------------------------------------- driver


def split_validation(train: DataSplit, per_class: int) -> tuple[list[Sample], list[Sample]]:
    """The last ``per_class`` training images of each class held out: ``(training, validation)``."""
    by_class: dict[int, list[Sample]] = {}
    for sample in train.samples:
        by_class.setdefault(sample.label, []).append(sample)
    held = {id(s) for group in by_class.values() for s in group[len(group) - per_class :]}
    return [s for s in train.samples if id(s) not in held], [s for s in train.samples if id(s) in held]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data = parser.add_argument_group("data and output")
    data.add_argument(
        "--data", type=Path, required=True, help="a CUB-format data set (train and test splits)"
    )
    data.add_argument("--out", type=Path, required=True, help="folder for results.json and details.json")
    data.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of each arm per seed")
    data.add_argument("--resize", type=_positive(int), default=72)
    data.add_argument("--crop", type=_positive(int), default=64)
    data.add_argument(
        "--score-size",
        type=_positive(int),
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
    model.add_argument("--backbone", default="resnet18", help="a torchvision ResNet")
    model.add_argument(
        "--weights", default=None, help="state_dict file or torchvision weights name (default: none)"
    )
    model.add_argument("--output-stride", type=int, choices=(8, 16), default=8)
    model.add_argument(
        "--normalize", choices=("minmax", "peak"), default="minmax", help="lowcam.normalize_map"
    )
    schedule = parser.add_argument_group("schedule (both arms)")
    schedule.add_argument("--epochs", type=_positive(int), default=6)
    schedule.add_argument("--batch-size", type=_positive(int), default=16)
    schedule.add_argument("--lr", type=_positive(float), default=0.02, help="SGD, cosine to 0 over all steps")
    schedule.add_argument("--momentum", type=_non_negative_float, default=0.9)
    schedule.add_argument("--weight-decay", type=_non_negative_float, default=5e-4)
    arm = parser.add_argument_group("the lowcam arm")
    arm.add_argument(
        "--evaluator-weight",
        type=_non_negative_float,
        default=0.3,
        help="CE of the frozen evaluator (ORNet 1)",
    )
    arm.add_argument("--area-weight", type=_non_negative_float, default=0.1, help="AreaLoss (ORNet 0.02)")
    arm.add_argument(
        "--entropy-weight", type=_non_negative_float, default=1.5, help="WeightedEntropyLoss (ORNet 1.5)"
    )
    arm.add_argument("--area-topk", type=int, default=None, help="AreaLoss topk (default: min(25, classes))")
    arm.add_argument("--area-skip", type=int, default=1, help="AreaLoss skip (< topk)")
    arm.add_argument("--erase-prob", type=_probability, default=0.5)
    arm.add_argument("--min-factor", type=_probability, default=0.0)
    arm.add_argument("--max-factor", type=_probability, default=0.5)
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
    return args


def _prefixed(log: Callable[[str], object], prefix: str, text: str) -> None:
    log(prefix + text)


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
        train_samples, eval_samples = split_validation(train_split, args.val_per_class)
    if not train_samples or not eval_samples:
        error(
            f"{len(train_samples)} training and {len(eval_samples)} evaluation images in {args.data}: need both"
        )
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    train_set = WSOLDataset(train_samples, train_transform(args.resize, args.crop, True, mean, std))

    def loader(epoch: int, seed: int) -> DataLoader[Any]:
        return DataLoader(
            train_set,
            batch_size=args.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed * 1000 + epoch),
            collate_fn=collate,
            drop_last=len(train_set) > args.batch_size,  # a larger batch than the set still gives one batch
        )

    ornet_loader = DataLoader(
        WSOLDataset(eval_samples, ornet_test_transform(args.resize, args.crop, mean, std)),
        batch_size=50,
        collate_fn=collate,
    )
    wsol_loader = DataLoader(
        WSOLDataset(eval_samples, wsol_test_transform(args.crop, mean, std), wsol_score_size=args.score_size),
        batch_size=50,
        collate_fn=collate,
    )
    side = map_size(args.crop, args.output_stride)
    log(
        f"{len(train_samples)} training / {len(eval_samples)} evaluation images, {classes} classes, {side}×{side} maps"
    )
    scores: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    details: dict[str, Any] = {arm: [] for arm in ARMS}
    began = time.perf_counter()
    for seed in args.seeds:
        nets: dict[str, CamResNet] = {}
        for arm in ARMS:
            torch.manual_seed(seed)
            model = CamResNet(args.backbone, classes, output_stride=args.output_stride, weights=args.weights)
            parts = None
            if arm == "lowcam":
                frozen = copy.deepcopy(nets["plain"])
                parts = LowcamParts(args, frozen, torch.Generator().manual_seed(seed))
            started = time.perf_counter()
            history = train(
                model,
                functools.partial(loader, seed=seed),
                args,
                seed,
                parts,
                log=functools.partial(_prefixed, log, f"[{arm} seed {seed}] "),
            )
            result = evaluate(model, ornet_loader, wsol_loader, args)
            nets[arm] = model
            scores[arm].append(
                {"seed": seed, "gt_known": result["gt_known"], "maxboxacc_v2": result["maxboxacc_v2"]}
            )
            details[arm].append(
                {"seed": seed, **result, "seconds": time.perf_counter() - started, "history": history}
            )
            log(
                f"[{arm} seed {seed}] GT-known {result['gt_known']:.2f} MaxBoxAccV2 {result['maxboxacc_v2']:.2f}"
            )
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
    results["config"] = config
    atomic_write_text(
        args.out / "details.json",
        json.dumps({**details, "seconds": time.perf_counter() - began}, indent=2) + "\n",
    )
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    print(f"\n{config['eval_split']} split, {side}×{side} maps, seeds {args.seeds} (mean, %)")
    print(f"{'arm':<8} | GT-known Loc | MaxBoxAccV2")
    for arm in ARMS:
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
