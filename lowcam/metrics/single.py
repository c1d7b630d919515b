"""``box_from_map``: the box a protocol draws from one map at one threshold."""

from __future__ import annotations

import math
from typing import Literal, TypeAlias

import torch
from torch import Tensor

from lowcam._checks import check_batch_of_maps
from lowcam.metrics.contours import contour_boxes
from lowcam.metrics.ornet_boxes import boxes_all_pixels
from lowcam.metrics.scoremap import quantize_scoremap

__all__ = ["BoxFamily", "box_from_map"]

BoxFamily: TypeAlias = Literal["ornet", "wsoleval"]


def box_from_map(
    scoremap: Tensor, threshold: float, *, protocol: BoxFamily = "wsoleval", image_size: int | None = None
) -> Tensor:
    """The box that a protocol draws from a map at one threshold (what the demo and the pictures show).

    - ``"wsoleval"`` (MaxBoxAcc's box): ``u8 = floor(255 · map)``, cut ``k = int(τ · max(u8))``, the
      bounding box of the largest contour of ``{u8 > k}`` (OpenCV's ``findContours`` / ``contourArea``
      conventions, ties to the first contour in OpenCV's order), clipped as the reference clips it:
      ``[x0, y0, min(x1 + 1, W − 1), min(y1 + 1, H − 1)]`` where ``x1``, ``y1`` are the contour's last pixel
      (docs/metrics.md). The map must be a score map in ``[0, 1]`` (e.g. from
      :func:`~lowcam.metrics.prepare_scoremap`); a map holding a NaN counts as all zeros. With no foreground
      the box is ``[0, 0, 0, 0]``.
    - ``"ornet"``: one box over all pixels with ``map > τ`` (connected or not, compared in float64),
      ``[min_x · s_x, min_y · s_y, max_x · s_x, max_y · s_y]`` with ``s = image_size / W`` (``/ H``), or
      ``s = 1`` without ``image_size``; with no foreground ``[0, 0, W · s_x, H · s_y]``. NaN is background.

    These are the boxes the batched metrics count (:class:`~lowcam.metrics.BoxAccuracy`, from
    :func:`~lowcam.metrics.contour_boxes` and :func:`~lowcam.metrics.boxes_all_pixels`), one threshold at a
    time.

    Args:
        scoremap: ``(H, W)`` one map, or a batch ``(B, H, W)`` / ``(B, 1, H, W)``, floating.
        threshold: ``τ`` in ``[0, 1]``.
        protocol: ``"wsoleval"`` (default) or ``"ornet"``.
        image_size: ``"ornet"`` only: the side of the image the box is scaled to (e.g. 224 for a 56 × 56
            map); None keeps the map's pixels.

    Returns:
        ``(4,)`` float64 ``(x0, y0, x1, y1)`` for one map, ``(B, 4)`` for a batch, on the map's device.

    Raises:
        TypeError: ``scoremap`` is not a floating tensor.
        ValueError: a wrong shape, a threshold outside ``[0, 1]``, an unknown protocol, or ("wsoleval") a
            value outside ``[0, 1]``.

    Example:
        >>> m = torch.zeros(8, 8, dtype=torch.float64)
        >>> m[2:5, 1:4] = 0.9  # the larger blob
        >>> m[6, 6] = 1.0  # a single brighter pixel
        >>> box_from_map(m, 0.5).tolist()  # the largest contour's box
        [1.0, 2.0, 4.0, 5.0]
        >>> box_from_map(m, 0.5, protocol="ornet").tolist()  # all pixels above τ
        [1.0, 2.0, 6.0, 6.0]
        >>> box_from_map(m, 0.5, protocol="ornet", image_size=16).tolist()
        [2.0, 4.0, 12.0, 12.0]
    """
    if not isinstance(scoremap, Tensor):
        raise TypeError(f"scoremap must be a torch.Tensor, got {type(scoremap).__name__}")
    single = scoremap.dim() == 2
    maps = check_batch_of_maps("scoremap", scoremap[None] if single else scoremap, allow_empty_batch=True)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number in [0, 1], got {type(threshold).__name__}")
    tau = float(threshold)
    if not (math.isfinite(tau) and 0.0 <= tau <= 1.0):
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if protocol not in ("ornet", "wsoleval"):
        raise ValueError(f"protocol must be 'ornet' or 'wsoleval', got {protocol!r}")
    _, h, w = maps.shape
    if protocol == "ornet":
        if image_size is not None and (
            isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0
        ):
            raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
        scale = (1.0, 1.0) if image_size is None else (image_size / w, image_size / h)
        boxes = boxes_all_pixels(maps, [tau], scale=scale)[0]
    else:
        if image_size is not None:
            raise ValueError("image_size is for protocol 'ornet'; a 'wsoleval' box is in the map's pixels")
        finite = maps[~torch.isnan(maps)]
        if finite.numel() and (bool((finite < 0).any()) or bool((finite > 1).any())):
            raise ValueError(
                f"scoremap must lie in [0, 1] for protocol 'wsoleval', got min {float(finite.min())} and max "
                f"{float(finite.max())} (prepare it with lowcam.metrics.prepare_scoremap)"
            )
        u8 = quantize_scoremap(maps)
        top = u8.reshape(u8.shape[0], -1).amax(1).to(torch.float64)
        cuts = torch.floor(tau * top).to(torch.int64).view(-1, 1)  # int(τ · max), as BoxAccuracy cuts
        boxes = contour_boxes(u8, cuts, largest_only=True).boxes.to(torch.float64)
    return boxes[0] if single else boxes
