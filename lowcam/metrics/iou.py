"""Intersection over union of boxes, in the two conventions of the WSOL protocols."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_iou"]


def box_iou(boxes1: Tensor, boxes2: Tensor, *, plus_one: bool) -> Tensor:
    """Elementwise IoU of two broadcastable sets of ``(x0, y0, x1, y1)`` boxes, in float64.

    With ``plus_one=True`` (protocol "wsoleval", boxes of pixel indices, both ends inclusive):
    ``inter = max(0, min(x1) − max(x0) + 1) · max(0, min(y1) − max(y0) + 1)`` and
    ``area = (x1 − x0 + 1)·(y1 − y0 + 1)``. With ``plus_one=False`` (protocol "ornet", continuous
    coordinates): the same without the ``+ 1``. In both, ``IoU = inter / (area1 + area2 − inter)``, computed
    in float64 in this order, as the reference code does, so that comparisons with a threshold match it bit
    for bit.

    Args:
        boxes1: ``(..., 4)`` boxes, any real dtype.
        boxes2: ``(..., 4)`` boxes, broadcastable with ``boxes1``.
        plus_one: the "wsoleval" convention (``True``) or the "ornet" one (``False``).

    Returns:
        ``(...)`` float64 IoU, on the boxes' device.

    Raises:
        ValueError: the two sets of boxes are on different devices.

    Example:
        >>> import torch
        >>> a = torch.tensor([0, 0, 9, 9])
        >>> b = torch.tensor([5, 0, 14, 9])
        >>> box_iou(a, b, plus_one=True).item()  # 50 / (100 + 100 - 50)
        0.3333333333333333
        >>> box_iou(a.double(), b.double(), plus_one=False).item()  # 36 / (81 + 81 - 36)
        0.2857142857142857
    """
    if boxes1.device != boxes2.device:
        raise ValueError(
            f"boxes1 is on {boxes1.device} but boxes2 is on {boxes2.device}; expected both on one device"
        )
    a = boxes1.to(torch.float64)
    b = boxes2.to(torch.float64)
    one = 1.0 if plus_one else 0.0
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0]) + one).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1]) + one).clamp(min=0)
    inter = iw * ih
    area1 = (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one)
    area2 = (b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one)
    return inter / (area1 + area2 - inter)
