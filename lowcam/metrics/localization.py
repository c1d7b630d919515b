"""``LocalizationAccuracy``: GT-known / Top-1 / Top-5 Loc as the ORNet code computes them (protocol "ornet")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lowcam.metrics._inputs import BoxFrame, check_gt_boxes, check_maps, check_thresholds, check_values
from lowcam.metrics.accuracy import _BoxMetric, _check_iou_thresholds, _compute
from lowcam.metrics.base import _valid_mask
from lowcam.metrics.iou import box_iou
from lowcam.metrics.ornet_boxes import _boxes_all_pixels
from lowcam.metrics.results import BoxAccuracyResult
from lowcam.metrics.scoremap import ornet_thresholds

__all__ = ["LocalizationAccuracy", "localization_accuracy"]


def _check_classes(
    logits: object, targets: object, b: int, device: torch.device
) -> tuple[Tensor | None, Tensor | None]:
    """``(top1, top5)`` ``(B,)`` bool hits of checked ``logits`` and ``targets`` on ``device``, or Nones.

    Reads ``targets`` (one synchronisation, next to the value check of the maps): a class outside
    ``[0, C)`` is an error, as in torchmetrics, not a miss.
    """
    if (logits is None) != (targets is None):
        raise ValueError("logits and targets must be given together")
    if logits is None or targets is None:
        return None, None
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != b or logits.shape[1] == 0:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must have shape (B, C) = ({b}, C) with C >= 1, got {shape}")
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be an integer tensor of shape ({b},), got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor of class indices, got {targets.dtype}")
    if targets.shape != (b,):
        raise ValueError(f"targets must have shape ({b},), got {tuple(targets.shape)}")
    c = logits.shape[1]
    logits, targets = logits.to(device), targets.to(device)
    bad = (targets < 0) | (targets >= c)
    if b > 0 and bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"targets[{i}] is {int(targets[i])}; expected class indices in [0, {c}) (logits have C = {c})"
        )
    top1 = logits.argmax(1) == targets
    top5 = (logits.topk(min(5, c), 1).indices == targets.view(-1, 1)).any(1)
    return top1, top5


def _update(
    state: dict[str, Tensor],
    maps: Tensor,
    gt: Tensor,
    thresholds: Tensor,
    deltas: Tensor,
    image_size: int,
    *,
    nan_free: bool,
    keep: Tensor | None,
    top1: Tensor | None,
    top5: Tensor | None,
) -> None:
    """Add a checked batch to the counts ``state`` (in place): a pure function of its arguments.

    ``maps`` ``(B, H, W)``, ``gt`` ``(B, K, 4)`` float64, ``thresholds`` ``(T,)`` and ``deltas`` ``(D,)``
    float64, ``keep``, ``top1``, ``top5`` ``(B,)`` bool or None, all on one device.
    """
    b, h, w = maps.shape
    sx, sy = image_size / w, image_size / h
    boxes = _boxes_all_pixels(maps, thresholds, sx, sy, nan_free=nan_free)  # (T, B, 4)
    iou = box_iou(boxes.unsqueeze(2), gt.unsqueeze(0), plus_one=False).amax(2)  # (T, B)
    hit = iou.unsqueeze(2) > deltas  # (T, B, D), strict
    if keep is not None:
        hit = hit & keep.view(1, b, 1)
    state["correct"] += hit.sum(1).T
    counted = torch.tensor(b, device=maps.device) if keep is None else keep.sum()
    state["n"] += counted
    if top1 is not None and top5 is not None:
        state["top1"] += (hit & top1.view(1, b, 1)).sum(1).T
        state["top5"] += (hit & top5.view(1, b, 1)).sum(1).T
        state["n_classes"] += counted


class LocalizationAccuracy(_BoxMetric):
    """GT-known Loc, Top-1 Loc and Top-5 Loc as the ORNet code computes them, accumulated as integer counts.

    Maps are raw activation maps (e.g. 56×56 sigmoid outputs); foreground ``map > τ`` for the 19 thresholds
    ``τ = 0.05, …, 0.95``; one box over all foreground pixels (connected or not,
    :func:`~lowcam.metrics.boxes_all_pixels`) scaled by ``image_size / W``; correct iff ``IoU > δ`` (no
    ``+1``, strict) with any GT box. Reports GT-known Loc and, when ``logits`` and ``targets`` are given,
    Top-1 / Top-5 Loc, all at the τ with the best GT-known Loc, as accuracies in percent (the reference
    prints errors). docs/metrics.md gives every convention.

    The state (:class:`~lowcam.metrics.CountingMetric`) is ``(D, T)`` int64 counts per IoU threshold δ and
    map threshold τ, on the maps' device; ``compute()`` sums it over ``torch.distributed`` processes and
    returns a :class:`~lowcam.metrics.BoxAccuracyResult`. :func:`localization_accuracy` is the one-shot form.

    Args:
        thresholds: map thresholds τ in ``[0, 1]``; default the 19 above.
        iou_thresholds: distinct IoU thresholds δ (a bare number is one); default ``(0.5,)``.
        image_size: the side of the image the GT boxes live in (224): ``s = image_size / W``. A box must
            overlap the ``image_size × image_size`` frame (it may leave it, as boxes near the border of a
            centre crop do).
        process_group: the ``torch.distributed`` group that ``compute()`` / ``sync()`` sum over.
        sync_on_compute: sum over the processes inside ``compute()`` (when ``torch.distributed`` is
            initialised).

    Example:
        >>> import torch
        >>> maps = torch.zeros(1, 4, 4)
        >>> maps[0, 1:3, 1:3] = 0.9
        >>> metric = LocalizationAccuracy(image_size=16)  # boxes in a 16 x 16 image: s = 16 / 4
        >>> out = metric.update(maps, [torch.tensor([[4.0, 4.0, 8.0, 8.0]])]).compute()
        >>> out.gt_known, out.scalars()["threshold@0.5"]
        (100.0, 0.05)
    """

    protocol = "ornet"

    def __init__(
        self,
        *,
        thresholds: Tensor | Sequence[float] | None = None,
        iou_thresholds: Sequence[float] | Tensor | float | None = None,
        image_size: int = 224,
        process_group: Any = None,
        sync_on_compute: bool = True,
    ) -> None:
        self.thresholds = check_thresholds("thresholds", thresholds, ornet_thresholds())
        self.iou_thresholds = _check_iou_thresholds(iou_thresholds, (0.5,))
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.image_size = image_size
        self._classes: bool | None = None
        super().__init__(process_group=process_group, sync_on_compute=sync_on_compute)

    def _config(self) -> dict[str, Tensor]:
        return {**super()._config(), "image_size": torch.tensor(self.image_size, dtype=torch.int64)}

    def reset(self) -> None:
        """Forget every image seen (the device is kept)."""
        self._classes = None
        super().reset()

    def _after_load(self) -> None:
        n, n_classes = int(self._state["n"]), int(self._state["n_classes"])
        self._classes = None if n == 0 else n_classes > 0

    def update(
        self,
        maps: Tensor,
        gt_boxes: Sequence[Tensor] | Tensor,
        *,
        logits: Tensor | None = None,
        targets: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> LocalizationAccuracy:
        """Count a batch.

        Args:
            maps: ``(B, H, W)`` or ``(B, 1, H, W)`` floating raw activation maps. Values must be finite or NaN
                (NaN is background). Any strides. ``B = 0`` counts nothing.
            gt_boxes: one ``(K_i, 4)`` tensor of ``(x0, y0, x1, y1)`` boxes per image (several boxes: any may
                match) in the ``image_size`` frame, or a ``(B, K, 4)`` tensor, on any device. An all-zero row
                is rejected (it is what zero padding looks like); so is a box that does not overlap the
                frame. When every box of the batch lies in the maps' own ``W × H`` frame, which is much
                smaller than ``image_size``, a ``UserWarning`` says that they may be in the wrong frame.
            logits: ``(B, C)`` class scores of the whole images (for Top-1 / Top-5 Loc), on any device.
            targets: ``(B,)`` integer classes in ``[0, C)``, with ``logits``.
            valid: ``(B,)`` bool, the images to count (None: all). Use it to leave out the duplicates that a
                ``DistributedSampler`` pads the last batches with (docs/metrics.md shows how).

        Returns:
            ``self``.

        Raises:
            TypeError: an argument of the wrong type (e.g. bool or float targets).
            ValueError: a wrong shape, a ``gt_boxes`` list of the wrong length, a box with ``x0 > x1`` or
                ``y0 > y1``, all zero or outside the frame, an infinite map value, a target outside
                ``[0, C)``; the message names the image.
        """
        maps = check_maps("maps", maps)
        b, h, w = maps.shape
        device = maps.device
        s = float(self.image_size)
        small = (
            (w, h, f"every GT box of this batch lies in the maps' own {w} x {h} frame, but protocol 'ornet' "
             f"expects boxes in the {self.image_size} x {self.image_size} image (image_size): are they in "
             "map coordinates?")
            if self.image_size >= 2 * max(h, w)
            else None
        )  # fmt: skip
        frame = BoxFrame(s, s, "overlap", f"{self.image_size} x {self.image_size} image (image_size)", small)
        gt = check_gt_boxes("gt_boxes", gt_boxes, b, device, frame)
        keep = _valid_mask("valid", valid, b, device)
        nan_free = check_values("maps", maps, unit_interval=False)
        self._check_same_classes(logits is not None and targets is not None)
        top1, top5 = _check_classes(logits, targets, b, device)
        self._classes = top1 is not None
        if b == 0:
            return self
        self._prepare_update(device)
        deltas = torch.tensor(self.iou_thresholds, dtype=torch.float64, device=device)
        _update(
            self._state,
            maps,
            gt,
            self.thresholds.to(device),
            deltas,
            self.image_size,
            nan_free=nan_free,
            keep=keep,
            top1=top1,
            top5=top5,
        )
        return self

    def _check_same_classes(self, given: bool) -> None:
        if self._classes is True and not given:
            raise ValueError("logits and targets were given to earlier updates: give them to every update")
        if self._classes is False and given:
            raise ValueError("earlier updates had no logits and targets: give them to every update or none")


def localization_accuracy(
    maps: Tensor,
    gt_boxes: Sequence[Tensor] | Tensor,
    *,
    logits: Tensor | None = None,
    targets: Tensor | None = None,
    valid: Tensor | None = None,
    thresholds: Tensor | Sequence[float] | None = None,
    iou_thresholds: Sequence[float] | Tensor | float | None = None,
    image_size: int = 224,
) -> BoxAccuracyResult:
    """GT-known / Top-1 / Top-5 Loc of one batch: :class:`LocalizationAccuracy` in one call (no
    ``torch.distributed`` sum). The arguments are those of the class and its ``update``.

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 4, 4)
        >>> maps[:, 1:3, 1:3] = 0.9
        >>> gt = [torch.tensor([[4.0, 4.0, 8.0, 8.0]]), torch.tensor([[8.0, 8.0, 15.0, 15.0]])]
        >>> localization_accuracy(maps, gt, image_size=16).gt_known
        50.0
    """
    metric = LocalizationAccuracy(
        thresholds=thresholds, iou_thresholds=iou_thresholds, image_size=image_size, sync_on_compute=False
    )
    metric.update(maps, gt_boxes, logits=logits, targets=targets, valid=valid)
    return _compute(
        metric._state, metric.protocol, metric.thresholds, metric.iou_thresholds, "localization_accuracy"
    )
