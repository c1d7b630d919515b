"""A frozen classifier that scores images masked by activation maps (ORNet's evaluator)."""

from __future__ import annotations

import copy as _copy
from typing import Literal, TypeAlias

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import Self

from lowcam._checks import check_int, check_map, check_same_sizes, check_shape, check_tensor

__all__ = ["Evaluator", "UpsampleMode"]

UpsampleMode: TypeAlias = Literal["nearest", "nearest-exact", "bilinear", "bicubic", "area"]
_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")


class Evaluator(nn.Module):
    r"""Wrap any image classifier as ORNet's frozen evaluator.

    **Warning: the classifier is frozen in place.** ``Evaluator(net)`` sets ``requires_grad=False`` on
    ``net``'s own parameters and (by default) holds ``net`` in eval mode: if ``net`` is also trained
    elsewhere (a backbone shared with your model), it silently stops training. Pass ``copy=True`` to
    freeze a deep copy and leave ``net`` as it was.

    ``forward(images, maps)`` returns :math:`\mathrm{classifier}(x \odot \mathrm{up}(m))`, where
    :math:`\mathrm{up}` resizes the ``(B, 1, h, w)`` maps to the images' size. The classifier's parameters
    are frozen (``requires_grad=False``, and used detached in ``forward``, so they never get a gradient even
    if a parent module switches ``requires_grad`` back on), but the gradient flows through it to ``maps``.
    ``forward(images)`` classifies the plain images (the inference path of ORNet: the class comes from the
    whole, unmasked image).

    Mode handling: with ``follow_parent_mode=False`` (lowcam's default) the classifier is held in eval
    mode whatever ``train()`` is called with — BatchNorm statistics stay fixed and dropout is off, as one
    expects of a frozen model. ``follow_parent_mode=True`` reproduces the reference code, where the frozen
    evaluator follows ``train()``/``eval()``: its BN running statistics still move and its dropout is on
    during training. Specification: ``docs/method.md`` (section "Evaluator").

    The maps follow lowcam's map contract: ``(B, 1, h, w)`` with values in ``[0, 1]`` (the image is
    multiplied by them), e.g. the generator's activation or :func:`lowcam.normalize_map` of a CAM.

    Args:
        classifier: any module mapping ``(B, 3, H, W)`` images to ``(B, C)`` logits.
        upsample: interpolation mode for the maps: ``"nearest"`` (reference), ``"nearest-exact"``,
            ``"bilinear"``, ``"bicubic"`` or ``"area"`` (:func:`torch.nn.functional.interpolate`'s modes);
            ``"bilinear"`` and ``"bicubic"`` use ``align_corners=False``.
        follow_parent_mode: follow ``train()``/``eval()`` (reference) or stay in eval mode (default).
        copy: freeze a deep copy of ``classifier`` (``True``) instead of ``classifier`` itself (default).

    Shape:
        - ``images``: ``(B, 3, H, W)``; ``maps``: ``(B, 1, h, w)`` or ``None``.
        - Output: ``(B, C)`` logits.

    Example:
        >>> classifier = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> evaluator = Evaluator(classifier)
        >>> maps = torch.rand(2, 1, 4, 4, requires_grad=True)
        >>> logits = evaluator(torch.randn(2, 3, 16, 16), maps)
        >>> logits.sum().backward()
        >>> maps.grad is not None, classifier[0].weight.grad is None
        (True, True)
        >>> evaluator.topk(torch.randn(2, 3, 16, 16), k=2).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        classifier: nn.Module,
        *,
        upsample: UpsampleMode = "nearest",
        follow_parent_mode: bool = False,
        copy: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
        if upsample not in _MODES:
            raise ValueError(f"upsample must be one of {_MODES}, got {upsample!r}")
        if not isinstance(copy, bool):
            raise TypeError(f"copy must be a bool, got {type(copy).__name__}")
        self.classifier = _copy.deepcopy(classifier) if copy else classifier
        self.upsample: UpsampleMode = upsample
        self.follow_parent_mode = follow_parent_mode
        self.classifier.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        if not self.follow_parent_mode:
            self.classifier.eval()
        return self

    def mask(self, images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Return ``images * up(maps)``, the maps resized to the images' size."""
        check_map("maps", maps, shape="(B, 1, h, w)")
        check_same_sizes("maps", maps, (0,), "images", images, (0,))
        align = False if self.upsample in ("bilinear", "bicubic") else None
        resized = F.interpolate(maps, size=images.shape[-2:], mode=self.upsample, align_corners=align)
        return images * resized.to(images.dtype)

    def forward(self, images: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor("images", images)
        check_shape("images", images, "(B, channels, H, W)", 4)
        inputs = images if maps is None else self.mask(images, maps)
        # The parameters enter detached, so they get no gradient even if something (a parent's
        # requires_grad_(True), say) switched them back on; the gradient still reaches ``maps``.
        frozen = {name: param.detach() for name, param in self.classifier.named_parameters()}
        logits: torch.Tensor = torch.func.functional_call(self.classifier, frozen, (inputs,), strict=False)
        return logits

    @torch.no_grad()
    def topk(self, images: torch.Tensor, k: int = 5, maps: torch.Tensor | None = None) -> torch.Tensor:
        """Indices ``(B, k)`` of the ``k`` best classes, best first (ties follow :func:`torch.topk`).

        Raises:
            ValueError: ``k < 1``, or ``k`` larger than the number of classes ``C`` of the logits.
        """
        check_int("k", k, minimum=1)
        logits: torch.Tensor = self(images, maps)
        if logits.dim() != 2:
            raise ValueError(
                f"the classifier must return logits of shape (B, C), got shape {tuple(logits.shape)}"
            )
        if k > logits.shape[1]:
            raise ValueError(f"k must be <= the number of classes C={logits.shape[1]}, got k={k}")
        return torch.topk(logits, k, dim=1).indices

    @torch.no_grad()
    def predict(self, images: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """The top-1 class ``(B,)`` of each image."""
        logits: torch.Tensor = self(images, maps)
        return logits.argmax(dim=1)

    def extra_repr(self) -> str:
        return f"upsample={self.upsample!r}, follow_parent_mode={self.follow_parent_mode}"
