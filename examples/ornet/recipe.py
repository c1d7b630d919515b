"""ORNet (Xie et al., ICCV 2021) as a recipe of public lowcam calls: one function per stage's loss.

Stage 0 fine-tunes a classifier (the *evaluator*); stage 1 trains a ResNet split after its stem with
lowcam's ``LowLevelActivationGenerator`` on the stem feature; stage 2 refines the generator's map ``p``
through the frozen evaluator::

    p, f      = generator(stem(x))                      # activation map (B,1,h,w), class maps (B,C,h,w)
    p_erased  = AttentiveErasing(p)                     # training only
    logits    = Evaluator(x, p_erased)                  # frozen classifier on x · upsample(p_erased)
    loss      = CE(logits, y) + 0.02 · AreaLoss(p, f, logits) + 1.5 · WeightedEntropyLoss(p)

Every lowcam component is built here, from its config section (``fine.erasing``, ``fine.area``,
``fine.entropy``, ``quirks``) and ``runtime.backend``. Set-up, loops and checkpoints live in
:mod:`ornet.stages`, :mod:`ornet.training` and :mod:`ornet.runtime`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import lowcam
from ornet.config import Config, LossWeights

Losses = dict[str, torch.Tensor]


class FineParts(NamedTuple):
    """Stage 2's lowcam components and the loss weights."""

    erasing: lowcam.AttentiveErasing
    area: lowcam.AreaLoss
    entropy: lowcam.WeightedEntropyLoss
    weights: LossWeights


def fine_parts(cfg: Config) -> FineParts:
    """Stage 2's components, each from its config section (the section *is* the component's params)."""
    f, backend = cfg.fine, cfg.runtime.backend
    return FineParts(
        lowcam.AttentiveErasing(params=f.erasing, backend=backend),  # type: ignore[arg-type]
        lowcam.AreaLoss(params=f.area, backend=backend),  # type: ignore[arg-type]
        lowcam.WeightedEntropyLoss(params=f.entropy, backend=backend),  # type: ignore[arg-type]
        f.loss_weights,
    )


def frozen_evaluator(classifier: nn.Module, cfg: Config) -> lowcam.Evaluator:
    """The stage-0 classifier wrapped as ORNet's evaluator (``quirks.upsample``,
    ``quirks.follow_parent_mode``)."""
    q = cfg.quirks
    return lowcam.Evaluator(classifier, upsample=q.upsample, follow_parent_mode=q.follow_parent_mode)  # type: ignore[arg-type]


def generator(in_channels: int, num_classes: int, base_width: int) -> lowcam.LowLevelActivationGenerator:
    """ORNet's activation map generator on the low-level feature."""
    return lowcam.LowLevelActivationGenerator(in_channels, num_classes, base_width=base_width)


def _classification(logits: torch.Tensor, labels: torch.Tensor) -> Losses:
    return {
        "loss": F.cross_entropy(logits.float(), labels),
        "acc": (logits.argmax(1) == labels).float().mean(),
    }


def evaluator_loss(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Losses:
    """Stage 0: cross-entropy of the evaluator classifier."""
    return _classification(classifier(images), labels)


def coarse_loss(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Losses:
    """Stage 1: CE(generator logits) + CE(logits of the ResNet body on stem(x) · p)."""
    out = net(images)
    ce_generator = F.cross_entropy(out.generator.logits.float(), labels)
    ce_main = F.cross_entropy(out.logits.float(), labels)
    return {"loss": ce_generator + ce_main, "ce_generator": ce_generator, "ce_main": ce_main}


def fine_loss(
    net: nn.Module, evaluator: nn.Module, parts: FineParts, images: torch.Tensor, labels: torch.Tensor
) -> Losses:
    """Stage 2: the map through attentive erasing and the frozen evaluator, plus the two map losses."""
    out = net(images)
    p = out.activation.float()
    erased, _ = parts.erasing(p)
    logits = evaluator(images, erased).float()
    ce = F.cross_entropy(logits, labels)
    area = parts.area(p, out.class_maps.float(), logits)
    entropy = parts.entropy(p)
    loss = ce + parts.weights.area * area + parts.weights.entropy * entropy
    return {"loss": loss, "ce": ce, "area": area, "entropy": entropy}


def cam_loss(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Losses:
    """The CAM baseline: an ordinary classifier's cross-entropy."""
    logits, _ = net(images)
    return _classification(logits, labels)


def ornet_maps(
    net: nn.Module, evaluator: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference: the activation map (the box) and the evaluator's logits on the whole image (the class)."""
    return net(images).activation.float(), evaluator(images).float()
