"""Ground-truth boxes in the maps' frame, as each protocol's code moves them from the original image.

:func:`wsoleval_gt_boxes` (protocol "wsoleval": squash, scale and truncate) and :func:`ornet_gt_boxes`
(protocol "ornet": squash, centre crop, no truncation) take boxes in pixels of the original image, as
:func:`~lowcam.metrics.read_wsol_metadata` reads them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["ornet_gt_boxes", "wsoleval_gt_boxes"]


def _as_boxes(name: str, boxes: Tensor | Sequence[Sequence[float]]) -> Tensor:
    t = boxes if isinstance(boxes, Tensor) else torch.as_tensor(boxes, dtype=torch.float64)
    if t.dim() == 1 and t.shape[0] == 4:
        t = t.view(1, 4)
    if t.dim() != 2 or t.shape[1] != 4:
        raise ValueError(f"{name} must have shape (K, 4), got shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got {t.dtype}")
    return t.to(torch.float64)


def _check_image_size(image_size: Sequence[float]) -> tuple[float, float]:
    if len(image_size) != 2:
        raise ValueError(f"image_size must be (width, height), got {tuple(image_size)!r}")
    width, height = float(image_size[0]), float(image_size[1])
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise ValueError(f"image_size must be a positive (width, height), got {tuple(image_size)!r}")
    return width, height


def wsoleval_gt_boxes(
    boxes: Tensor | Sequence[Sequence[float]],
    image_size: Sequence[float],
    *,
    size: int | tuple[int, int] = 224,
) -> Tensor:
    """Ground-truth boxes in the score maps' frame, as wsolevaluation rescales them (protocol "wsoleval").

    The image is squashed to ``size`` (no crop), and each coordinate is scaled and truncated:
    ``x' = int(x · W' / W)``, ``y' = int(y · H' / H)``, the product taken before the division, in float64,
    exactly as the reference's ``resize_bbox`` does (``x · (W' / W)`` truncates differently, e.g.
    ``x = 45, W = 80``: 126 against 125). Boxes are not clipped.

    Args:
        boxes: ``(K, 4)`` or ``(4,)`` boxes ``(x0, y0, x1, y1)`` in pixels of the original image.
        image_size: ``(width, height)`` of the original image (the order of ``image_sizes.txt``).
        size: the score maps' size: a side, or ``(H', W')``.

    Returns:
        ``(K, 4)`` float64 holding whole numbers.

    Example:
        >>> wsoleval_gt_boxes([[45, 10, 79, 30]], (80, 40)).tolist()
        [[126.0, 56.0, 221.0, 168.0]]
    """
    t = _as_boxes("boxes", boxes)
    width, height = _check_image_size(image_size)
    out_h, out_w = (size, size) if isinstance(size, int) else (size[0], size[1])
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    scale = torch.tensor([out_w, out_h, out_w, out_h], dtype=torch.float64, device=t.device)
    frame = torch.tensor([width, height, width, height], dtype=torch.float64, device=t.device)
    return torch.trunc(t * scale / frame)


def ornet_gt_boxes(
    boxes: Tensor | Sequence[Sequence[float]],
    image_size: Sequence[float],
    *,
    resize: int = 256,
    crop: int = 224,
    box_format: Literal["xyxy", "xywh"] = "xyxy",
) -> Tensor:
    """Ground-truth boxes in the centre crop's frame, as the ORNet code moves them (protocol "ornet").

    The image is squashed to ``resize × resize``, then the central ``crop × crop`` window is cut (offset
    ``round((resize − crop) / 2)``, torchvision's rule: 16 for 256 → 224). Coordinates are scaled by
    ``resize / W`` (``resize / H``) and shifted by the offset, in float64: ``x' = x · (resize / W) − 16``.
    Nothing is truncated or clipped: a box may leave the crop.

    Args:
        boxes: ``(K, 4)`` or ``(4,)`` boxes in pixels of the original image, ``(x0, y0, x1, y1)``, or
            ``(x, y, w, h)`` (CUB's ``bounding_boxes.txt``) with ``box_format="xywh"``.
        image_size: ``(width, height)`` of the original image.
        resize: the side the image is squashed to.
        crop: the side of the centre crop (the evaluator's input).
        box_format: ``"xyxy"`` or ``"xywh"``.

    Returns:
        ``(K, 4)`` float64 ``(x0, y0, x1, y1)`` in the crop's pixels.

    Example:
        >>> ornet_gt_boxes([[40, 20, 200, 100]], (512, 256), box_format="xywh").tolist()
        [[4.0, 4.0, 104.0, 104.0]]
    """
    t = _as_boxes("boxes", boxes)
    width, height = _check_image_size(image_size)
    if box_format == "xywh":
        t = torch.cat([t[:, :2], t[:, :2] + t[:, 2:]], dim=1)
    elif box_format != "xyxy":
        raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    if not (isinstance(resize, int) and isinstance(crop, int) and 0 < crop <= resize):
        raise ValueError(f"resize and crop must be ints with 0 < crop <= resize, got {resize!r} and {crop!r}")
    offset = float(round((resize - crop) / 2.0))
    scale = torch.tensor([resize / width, resize / height] * 2, dtype=torch.float64, device=t.device)
    return t * scale - offset
