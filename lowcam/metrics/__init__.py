"""Exact, batched WSOL evaluation: GT-known / Top-1 / Top-5 Loc, MaxBoxAcc, MaxBoxAccV2 and PxAP.

Two protocol families, both reproduced count for count (docs/metrics.md is their specification):

- ``"ornet"`` (the ORNet code): :class:`LocalizationAccuracy` (GT-known / Top-1 / Top-5 Loc), one box over
  all pixels of the raw activation map above each of 19 thresholds (:func:`boxes_all_pixels`), IoU without
  ``+1``, ``IoU > 0.5``.
- ``"wsoleval"`` (the wsolevaluation code, Choe et al., CVPR 2020): score maps prepared by
  :func:`prepare_scoremap`; :class:`MaxBoxAcc` (``version=1``: MaxBoxAcc, ``version=2``: MaxBoxAccV2), boxes
  of OpenCV's contours at 1000 thresholds (:func:`contour_boxes`), IoU with ``+1``, ``IoU ≥ δ``; and
  :class:`PxAP`.

:class:`LocalizationAccuracy`, :class:`MaxBoxAcc` and :class:`PxAP` are :class:`CountingMetric` s: they
accumulate integer counts batch by batch, sum them over ``torch.distributed`` processes inside ``compute()``,
move with ``.to()`` and save with ``state_dict()``; :func:`localization_accuracy` and :func:`max_box_acc` are
their one-shot forms, and :class:`BoxAccuracy` picks a box metric by protocol name. ``compute()`` returns a
typed result (:class:`BoxAccuracyResult`, :class:`PxAPResult`) with flat float ``scalars()`` for loggers,
``to_dict()`` for JSON and a ``plot()`` (matplotlib, the ``plot`` extra). The package depends on torch only.

Example:
    >>> import torch
    >>> from lowcam import metrics
    >>> cams = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
    >>> maps = metrics.prepare_scoremap(cams, size=28)
    >>> gt = [torch.tensor([[4, 4, 20, 20]]), torch.tensor([[0, 0, 27, 27]])]
    >>> out = metrics.MaxBoxAcc(version=2).update(maps, gt).compute()
    >>> sorted(out.acc), out.n
    ([0.3, 0.5, 0.7], 2)
"""

from __future__ import annotations

from lowcam.metrics.accuracy import BoxAccuracy, BoxProtocol
from lowcam.metrics.base import CountingMetric
from lowcam.metrics.baselines import center_gaussian
from lowcam.metrics.contours import ContourBoxes, contour_boxes
from lowcam.metrics.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WSOLBatch,
    WSOLDataset,
    WSOLSample,
    collate_wsol,
)
from lowcam.metrics.frames import ornet_gt_boxes, wsoleval_gt_boxes
from lowcam.metrics.iou import box_iou
from lowcam.metrics.localization import LocalizationAccuracy, localization_accuracy
from lowcam.metrics.maxboxacc import MaxBoxAcc, max_box_acc
from lowcam.metrics.metadata import DataError, MaskRef, WSOLMetadata, read_mask, read_wsol_metadata
from lowcam.metrics.ornet_boxes import boxes_all_pixels
from lowcam.metrics.picture import plot_localization, plot_localization_grid
from lowcam.metrics.pxap import PxAP, resize_nearest
from lowcam.metrics.results import BoxAccuracyResult, PxAPResult
from lowcam.metrics.run import EvalProtocol, evaluate_model
from lowcam.metrics.scoremap import ornet_thresholds, prepare_scoremap, quantize_scoremap, wsoleval_thresholds
from lowcam.metrics.scoremap_writer import ScoremapWriter, write_scoremaps
from lowcam.metrics.single import BoxFamily, box_from_map

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BoxAccuracy",
    "BoxAccuracyResult",
    "BoxFamily",
    "BoxProtocol",
    "ContourBoxes",
    "CountingMetric",
    "DataError",
    "EvalProtocol",
    "LocalizationAccuracy",
    "MaskRef",
    "MaxBoxAcc",
    "PxAP",
    "PxAPResult",
    "ScoremapWriter",
    "WSOLBatch",
    "WSOLDataset",
    "WSOLMetadata",
    "WSOLSample",
    "box_from_map",
    "box_iou",
    "boxes_all_pixels",
    "center_gaussian",
    "collate_wsol",
    "contour_boxes",
    "evaluate_model",
    "localization_accuracy",
    "max_box_acc",
    "ornet_gt_boxes",
    "ornet_thresholds",
    "plot_localization",
    "plot_localization_grid",
    "prepare_scoremap",
    "quantize_scoremap",
    "read_mask",
    "read_wsol_metadata",
    "resize_nearest",
    "write_scoremaps",
    "wsoleval_gt_boxes",
    "wsoleval_thresholds",
]
