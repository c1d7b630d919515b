"""ORNet (Xie et al., ICCV 2021) as a recipe of public lowcam calls: one function per stage's loss.

Stage 0 fine-tunes a classifier (the *evaluator*); stage 1 trains a ResNet split after its stem with
lowcam's ``LowLevelActivationGenerator`` on the stem feature; stage 2 refines the generator's map ``p``
through the frozen evaluator::

    p, f      = generator(stem(x))                      # activation map (B,1,h,w), class maps (B,C,h,w)
    p_erased  = AttentiveErasing(p)                     # training only
    logits    = Evaluator(x, p_erased)                  # frozen classifier on x · upsample(p_erased)
    loss      = CE(logits, y) + 0.02 · AreaLoss(p, f, logits) + 1.5 · WeightedEntropyLoss(p)

Every method decision is here: every lowcam component is built from its config section
(``fine.erasing``, ``fine.area``, ``fine.entropy``, ``quirks``) and ``runtime.backend``; what stage 2
trains and freezes, which modules stay in train mode, and the ILSVRC ``layer4`` quirk of stage 1.
:mod:`ornet.models` holds the architectures only; set-up, loops and checkpoints live in
:mod:`ornet.stages`, :mod:`ornet.training` and :mod:`ornet.runtime`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import lowcam
from ornet.config import CoarseLossWeights, Config, LossWeights
from ornet.models import CoarseNet, FineNet, build_classifier, is_torchvision

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


#: Outputs of the head the reference's stage-1 ResNet keeps under ``quirks.reinit_layer4``: torchvision's
#: default ResNet head (the ImageNet classes), whatever the data set's class count.
REFERENCE_HEAD = 1000


def coarse_head(cfg: Config, num_classes: int, weights: str | None) -> int:
    """Outputs of stage 1's ResNet head (``fc``): ``num_classes``, or :data:`REFERENCE_HEAD` where
    ``quirks.reinit_layer4`` acts (pretrained ``weights``, a class count other than 200 and a torchvision
    backbone: the quirk is the reference ResNet's, a timm backbone never has it)."""
    if _reinit_layer4(cfg, num_classes, weights):
        return REFERENCE_HEAD
    return num_classes


def _reinit_layer4(cfg: Config, num_classes: int, weights: str | None) -> bool:
    q = cfg.quirks.reinit_layer4
    return q and weights is not None and num_classes != 200 and is_torchvision(cfg.model.backbone)


def saved_coarse_head(state: Mapping[str, object], num_classes: int) -> int:
    """Outputs of the head a stage-1 state dict holds (the last ``body.<i>.weight`` matrix, ``body.6`` for
    a ResNet): ``num_classes``, or :data:`REFERENCE_HEAD` for a class count other than 200 (a checkpoint
    trained with ``quirks.reinit_layer4``, or the authors'); any other size is left for the loader to
    report."""
    heads = [
        (int(match[1]), value)
        for key, value in state.items()
        if (match := re.fullmatch(r"body\.(\d+)\.weight", key))
        and isinstance(value, torch.Tensor)
        and value.dim() == 2
    ]
    head = max(heads, key=lambda item: item[0])[1] if heads else None
    rows = head.shape[0] if isinstance(head, torch.Tensor) else num_classes
    return REFERENCE_HEAD if rows == REFERENCE_HEAD and num_classes != 200 else num_classes


def coarse_net(
    cfg: Config, num_classes: int, weights: str | None = None, *, head: int | None = None
) -> CoarseNet:
    """Stage 1's network: ``model.backbone`` (loaded from ``weights``) split after its stem, with the
    generator of ``model.base_width`` and ``model.padding_mode`` for ``num_classes`` classes.

    The reference's ILSVRC quirk (``quirks.reinit_layer4``): with pretrained ``weights`` and a data set of
    other than 200 classes, ``layer4`` and ``fc`` are re-initialised instead of loaded, and ``fc`` keeps
    torchvision's default size (:data:`REFERENCE_HEAD` outputs; the reference's ``CoarseModel`` takes
    ``models.resnet50().fc``), so stage 1's main cross-entropy reads the labels ``0 … num_classes-1`` off
    1000 logits, as the reference does. ``head`` overrides the head's size (:func:`saved_coarse_head`,
    to rebuild a saved network); by default it is :func:`coarse_head`.
    """
    m = cfg.model
    outputs = coarse_head(cfg, num_classes, weights) if head is None else head
    resnet = build_classifier(m.backbone, outputs, weights)
    if _reinit_layer4(cfg, num_classes, weights):
        fresh = torchvision.models.get_model(m.backbone, weights=None, num_classes=outputs)
        resnet.layer4, resnet.fc = fresh.layer4, fresh.fc
    return CoarseNet(resnet, num_classes, m.base_width, m.padding_mode)


#: The generator blocks stage 2 trains (the last two decoder blocks and the map head); the rest is frozen.
FINE_TRAINABLE = ("up2", "up3", "map_head")


def freeze_for_fine(net: FineNet) -> list[nn.Parameter]:
    """Freeze everything of ``net`` but :data:`FINE_TRAINABLE`; return the trainable parameters."""
    net.requires_grad_(False)
    trainable: list[nn.Parameter] = []
    for name in FINE_TRAINABLE:
        block = getattr(net.generator, name)
        block.requires_grad_(True)
        trainable.extend(block.parameters())
    return trainable


def fine_frozen_modules(net: FineNet) -> list[nn.Module]:
    """The modules stage 2 does not train: the stem and the generator blocks outside
    :data:`FINE_TRAINABLE`."""
    keep = set(FINE_TRAINABLE)
    return [net.stem] + [m for n, m in net.generator.named_children() if n not in keep]


def set_fine_modes(net: FineNet, evaluator: nn.Module, parts: FineParts, cfg: Config) -> None:
    """Modes of stage 2 for each epoch: the evaluator and erasing train; the frozen modules stay in train
    mode with ``quirks.follow_parent_mode`` (the reference: BatchNorm statistics move) and are put in eval
    mode without it."""
    evaluator.train()
    parts.erasing.train()
    if not cfg.quirks.follow_parent_mode:
        for module in fine_frozen_modules(net):
            module.eval()


def recalibrate_batchnorm(
    net: CoarseNet | FineNet, batches: Iterable[torch.Tensor]
) -> tuple[list[nn.modules.batchnorm._BatchNorm], int]:
    """PreciseBN for the generator, after a stage (``coarse.recalibrate_bn``, ``fine.recalibrate_bn``;
    the reference does not): the running statistics of the generator's BatchNorm layers that are in
    training mode (the modes the stage trained in) are replaced by the average of their batch statistics
    over ``batches`` (torch's cumulative average, ``momentum=None``), every other module in eval mode;
    modes, momenta and the layers' step counts (``num_batches_tracked``) are restored, also on an error.
    Returns the layers and the number of batches.

    Why: the generator's BatchNorm has the reference's momentum 0.01, so its running statistics need
    thousands of steps to follow the weights (the paper trains stage 1 for about 26,000); after a few
    hundred they still lag, and the map the evaluation computes in eval mode is not the one training saw.

    Raises:
        ValueError: ``batches`` is empty (the statistics are left as they were).
    """
    layers = [
        m for m in net.generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    modes = {m: m.training for m in net.modules()}
    saved = [
        (m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
        for m in layers
    ]  # type: ignore[union-attr]
    count = 0
    try:
        net.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for images in batches:
                net.generator(net.stem(images))
                count += 1
        if count == 0:
            raise ValueError("recalibrate_batchnorm: batches is empty, expected at least one batch")
    except BaseException:
        for m, (_, mean, var, _) in zip(layers, saved):
            m.running_mean.copy_(mean)  # type: ignore[union-attr]
            m.running_var.copy_(var)  # type: ignore[union-attr]
        raise
    finally:
        for m, (momentum, _, _, steps) in zip(layers, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(steps)  # type: ignore[union-attr]
        for m, training in modes.items():
            m.train(training)
    return layers, count


def _classification(logits: torch.Tensor, labels: torch.Tensor) -> Losses:
    return {
        "loss": F.cross_entropy(logits.float(), labels),
        "acc": (logits.argmax(1) == labels).float().mean(),
    }


def evaluator_loss(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Losses:
    """Stage 0: cross-entropy of the evaluator classifier."""
    return _classification(classifier(images), labels)


def map_statistics(p: torch.Tensor) -> Losses:
    """What the log shows of an activation map ``p`` in [0, 1] (detached): ``map_mean`` and
    ``map_saturated``, the fraction of its pixels below 0.01 or above 0.99."""
    p = p.detach().float()
    return {"map_mean": p.mean(), "map_saturated": ((p < 0.01) | (p > 0.99)).float().mean()}


def coarse_loss(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    weights: CoarseLossWeights | None = None,
) -> Losses:
    """Stage 1: CE(generator logits) + CE(logits of the ResNet body on stem(x) · p), each weighted by
    ``coarse.loss_weights`` (reference: 1 and 1; ``None`` is the reference).

    Logged beside the loss: the generator's cross-entropy against ``ce_chance`` = ln(classes) (a
    generator whose map is class-specific ends well below it), its accuracy, and :func:`map_statistics`.
    """
    out = net(images)
    generator_logits = out.generator.logits.float()
    ce_generator = F.cross_entropy(generator_logits, labels)
    ce_main = F.cross_entropy(out.logits.float(), labels)
    w = CoarseLossWeights() if weights is None else weights
    return {
        "loss": w.generator * ce_generator + w.main * ce_main,
        "ce_generator": ce_generator,
        "ce_main": ce_main,
        "ce_chance": torch.full((), math.log(generator_logits.shape[1]), device=labels.device),
        "acc_generator": (generator_logits.argmax(1) == labels).float().mean(),
        **map_statistics(out.generator.activation),
    }


def fine_loss(
    net: nn.Module, evaluator: nn.Module, parts: FineParts, images: torch.Tensor, labels: torch.Tensor
) -> Losses:
    """Stage 2: the map through attentive erasing and the frozen evaluator, plus the two map losses.

    Logged beside the loss: the evaluator's accuracy on the erased map, :func:`map_statistics`, the region
    erasing may drop (``erasing_region``: the fraction of the map's pixels, ``erasing_region_mass``: of its
    activation) and what it dropped in it (``erased_area``, ``erased_mass``: the pixels set to 0, drawn at
    random inside the region).
    """
    out = net(images)
    p = out.activation.float()
    erased, region = parts.erasing(p)
    logits = evaluator(images, erased).float()
    ce = F.cross_entropy(logits, labels)
    area = parts.area(p, out.class_maps.float(), logits)
    entropy = parts.entropy(p)
    loss = ce + parts.weights.area * area + parts.weights.entropy * entropy
    held = p.detach()
    dropped = region & (erased.detach() == 0)  # the squashed map is >= 0.2 wherever it is kept
    return {
        "loss": loss,
        "ce": ce,
        "area": area,
        "entropy": entropy,
        "acc": (logits.argmax(1) == labels).float().mean(),
        **map_statistics(held),
        "erasing_region": region.float().mean(),
        "erasing_region_mass": (held * region).sum() / held.sum().clamp_min(1e-12),
        "erased_area": dropped.float().mean(),
        "erased_mass": (held * dropped).sum() / held.sum().clamp_min(1e-12),
    }


def cam_loss(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Losses:
    """The CAM baseline: an ordinary classifier's cross-entropy."""
    return _classification(net(images), labels)


def ornet_maps(
    net: nn.Module, evaluator: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference: the activation map (the box) and the evaluator's logits on the whole image (the class)."""
    return net(images).activation.float(), evaluator(images).float()
