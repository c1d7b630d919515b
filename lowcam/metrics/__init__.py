"""Exact, batched WSOL evaluation: GT-known / Top-1 / Top-5 Loc, MaxBoxAcc, MaxBoxAccV2 and PxAP.

Two protocols, both reproduced count for count (docs/metrics.md):

- ``"ornet"``: one box over all pixels of the raw activation map above each of 19 thresholds
  (:func:`boxes_all_pixels`), IoU without ``+1``, ``IoU > 0.5``.
- ``"wsoleval"`` (Choe et al., CVPR 2020): score maps prepared by :func:`prepare_scoremap`, boxes of OpenCV's
  contours at 1000 thresholds (:func:`contour_boxes`), IoU with ``+1``, ``IoU ≥ δ``.

:class:`BoxAccuracy` and :class:`PxAP` accumulate integer counts batch by batch and sum them over
``torch.distributed`` processes with ``sync()``. The package depends on torch only.

Example:
    >>> import torch
    >>> from lowcam import metrics
    >>> cams = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
    >>> maps = metrics.prepare_scoremap(cams, size=28)
    >>> gt = [torch.tensor([[4, 4, 20, 20]]), torch.tensor([[0, 0, 27, 27]])]
    >>> out = metrics.BoxAccuracy("maxboxacc_v2").update(maps, gt).compute()
    >>> sorted(out["acc"]), out["n"]
    ([0.3, 0.5, 0.7], 2)
"""

from __future__ import annotations

from lowcam.metrics.accuracy import BoxAccuracy, Protocol
from lowcam.metrics.boxes import ContourBoxes, boxes_all_pixels, contour_boxes
from lowcam.metrics.iou import box_iou
from lowcam.metrics.metadata import (
    DataError,
    MaskRef,
    WSOLMetadata,
    ornet_gt_boxes,
    read_mask,
    read_wsol_metadata,
    wsoleval_gt_boxes,
)
from lowcam.metrics.pxap import PxAP, resize_nearest
from lowcam.metrics.scoremap import ornet_thresholds, prepare_scoremap, quantize_scoremap, wsoleval_thresholds

__all__ = [
    "BoxAccuracy",
    "ContourBoxes",
    "DataError",
    "MaskRef",
    "Protocol",
    "PxAP",
    "WSOLMetadata",
    "box_iou",
    "boxes_all_pixels",
    "contour_boxes",
    "ornet_gt_boxes",
    "ornet_thresholds",
    "prepare_scoremap",
    "quantize_scoremap",
    "read_mask",
    "read_wsol_metadata",
    "resize_nearest",
    "wsoleval_gt_boxes",
    "wsoleval_thresholds",
]
