"""``evaluate_model``: a model's maps over a split in wsolevaluation's layout, evaluated in one call."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lowcam.metrics.dataset import WSOLBatch, WSOLDataset, collate_wsol
from lowcam.metrics.frames import wsoleval_gt_boxes
from lowcam.metrics.maxboxacc import MaxBoxAcc
from lowcam.metrics.pxap import PxAP
from lowcam.metrics.results import BoxAccuracyResult, PxAPResult
from lowcam.metrics.scoremap import prepare_scoremap, wsoleval_thresholds
from lowcam.metrics.scoremap_writer import ScoremapWriter

__all__ = ["EvalProtocol", "evaluate_model"]

EvalProtocol: TypeAlias = Literal["maxboxacc", "maxboxacc_v2", "pxap"]
_PROTOCOLS = ("maxboxacc", "maxboxacc_v2", "pxap")


def _check_protocol(protocol: object, dataset: WSOLDataset) -> EvalProtocol:
    masks = dataset.localization == "masks"
    if protocol is None:
        return "pxap" if masks else "maxboxacc_v2"
    if protocol not in _PROTOCOLS:
        raise ValueError(f"protocol must be one of {_PROTOCOLS} or None, got {protocol!r}")
    if masks != (protocol == "pxap"):
        kind = "masks" if masks else "boxes"
        raise ValueError(
            f"protocol {protocol!r} does not fit the data set's {kind} ({dataset.dataset_name}): use "
            f"{'pxap' if masks else 'maxboxacc or maxboxacc_v2'}"
        )
    return protocol  # type: ignore[return-value]  # checked above


def _maps_of(
    map_fn: Callable[[Any, Tensor], Tensor], batch: WSOLBatch, device: torch.device | None
) -> Tensor:
    images, labels = batch.images, batch.labels
    if device is not None:
        images = images.to(device) if isinstance(images, Tensor) else [i.to(device) for i in images]
        labels = labels.to(device)
    maps = map_fn(images, labels)
    if not isinstance(maps, Tensor):
        raise TypeError(f"map_fn must return a torch.Tensor of maps, got {type(maps).__name__}")
    b = len(batch.image_ids)
    if maps.dim() == 4 and maps.shape[1] != 1:
        raise ValueError(
            f"map_fn must return one map per image, (B, h, w) or (B, 1, h, w), got shape {tuple(maps.shape)} "
            "(several channels: select the label's map, e.g. with lowcam.select_class_map)"
        )
    if maps.dim() not in (3, 4) or maps.shape[0] != b:
        raise ValueError(
            f"map_fn must return (B, h, w) or (B, 1, h, w) maps with B = {b}, got shape {tuple(maps.shape)}"
        )
    return maps.detach()


def evaluate_model(
    map_fn: Callable[[Any, Tensor], Tensor],
    dataset: WSOLDataset,
    *,
    protocol: EvalProtocol | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    cam_curve_interval: float = 0.001,
    iou_thresholds: Sequence[float] | None = None,
    scoremap_size: int = 224,
    scoremap_root: str | os.PathLike[str] | None = None,
) -> BoxAccuracyResult | PxAPResult:
    """Run ``map_fn`` over a split and evaluate its maps with the wsolevaluation protocol, in one call.

    For each batch of the :class:`~lowcam.metrics.WSOLDataset` (in order, ``batch_size`` images):
    ``maps = map_fn(images, labels)`` (raw maps of the labels' class, ``(B, h, w)`` or ``(B, 1, h, w)``,
    e.g. a :class:`lowcam.ClassActivationMapper`); then, as wsolevaluation's inference does,
    :func:`~lowcam.metrics.prepare_scoremap` resizes each map bicubically to ``scoremap_size`` and min–max
    normalises it (float64), the GT boxes move into that frame with
    :func:`~lowcam.metrics.wsoleval_gt_boxes`, and the counts go into
    :class:`~lowcam.metrics.MaxBoxAcc` (``"maxboxacc"``, ``"maxboxacc_v2"``) or
    :class:`~lowcam.metrics.PxAP` (``"pxap"``, masks resized with OpenCV's nearest rule). Memory is that of
    one batch. The model's mode and grad mode are the caller's: call ``model.eval()`` and wrap the call in
    :func:`torch.no_grad`.

    With ``scoremap_root``, the score maps that were evaluated (float64, ``scoremap_size`` square) are also
    written as ``<scoremap_root>/<image_id>.npy`` by a :class:`~lowcam.metrics.ScoremapWriter`: the folder
    appears complete, with its manifest, only once the whole split is evaluated, and ``lowcam-eval`` on it
    gives the same numbers (``--cam_curve_interval`` equal to ``cam_curve_interval``; MaxBoxAccV2 is
    ``--multi_contour_eval --multi_iou_eval``).

    Args:
        map_fn: ``(images, labels) -> maps``; images and labels as the dataset gives them, on ``device``.
        dataset: the split.
        protocol: ``"maxboxacc"``, ``"maxboxacc_v2"`` or ``"pxap"``; default MaxBoxAccV2 for boxes, PxAP for
            masks.
        batch_size: images per call of ``map_fn``.
        num_workers: ``DataLoader`` worker processes for reading images.
        device: where images and labels go before ``map_fn`` (None: left on the CPU); the metric counts on
            the maps' device.
        cam_curve_interval: the score-map threshold step: thresholds ``np.arange(0, 1, step)`` (0.001, the
            papers'; ``lowcam-eval``'s default, like wsolevaluation's script, is 0.01).
        iou_thresholds: the IoU thresholds δ of the box protocols; default 0.5 (MaxBoxAcc) or 0.3, 0.5, 0.7
            (MaxBoxAccV2).
        scoremap_size: the side of the score maps (224 in wsolevaluation).
        scoremap_root: where to write the score maps, or None.

    Returns:
        The metric's result: a :class:`~lowcam.metrics.BoxAccuracyResult` (``.value`` in percent, ``.acc``
        and ``.threshold`` per δ) or a :class:`~lowcam.metrics.PxAPResult`.

    Raises:
        ValueError: a bad argument, a protocol that does not fit the data set, an empty split, or maps of the
            wrong shape from ``map_fn``.
        DataError: a problem in the data (file and line named).

    Example:
        >>> import tempfile, pathlib, torch
        >>> from PIL import Image
        >>> from lowcam.metrics import WSOLDataset, evaluate_model
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> meta = root / "metadata" / "CUB" / "test"
        >>> meta.mkdir(parents=True)
        >>> (root / "dataset" / "CUB").mkdir(parents=True)
        >>> Image.new("RGB", (40, 30), "red").save(root / "dataset" / "CUB" / "a.png")
        >>> for name, text in [("image_ids", "a.png"), ("class_labels", "a.png,0"),
        ...                    ("image_sizes", "a.png,40,30"), ("localization", "a.png,0,0,20,15")]:
        ...     _ = (meta / f"{name}.txt").write_text(text + "\\n")
        >>> def map_fn(images, labels):  # bright in the top-left quarter
        ...     maps = torch.zeros(len(images), 8, 8)
        ...     maps[:, :4, :4] = 1.0
        ...     return maps
        >>> data = WSOLDataset(root / "dataset", root / "metadata", "CUB", "test")
        >>> result = evaluate_model(map_fn, data, protocol="maxboxacc")
        >>> result.value, result.n
        (100.0, 1)
    """
    if not isinstance(dataset, WSOLDataset):
        raise TypeError(f"dataset must be a lowcam.metrics.WSOLDataset, got {type(dataset).__name__}")
    if not callable(map_fn):
        raise TypeError(f"map_fn must be callable, got {type(map_fn).__name__}")
    chosen = _check_protocol(protocol, dataset)
    for name, value in (("batch_size", batch_size), ("scoremap_size", scoremap_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
    if len(dataset) == 0:
        raise ValueError(f"the split {dataset.metadata.ids_path} lists no image: nothing to evaluate")
    thresholds = wsoleval_thresholds(cam_curve_interval)
    metric: MaxBoxAcc | PxAP
    if chosen == "pxap":
        if iou_thresholds is not None:
            raise ValueError("iou_thresholds are for the box protocols, not 'pxap'")
        metric = PxAP(thresholds=thresholds)
    else:
        version: Literal[1, 2] = 1 if chosen == "maxboxacc" else 2
        metric = MaxBoxAcc(version=version, thresholds=thresholds, iou_thresholds=iou_thresholds)
    target = torch.device(device) if device is not None else None
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_wsol)
    # the score maps are written as a unit: committed once every map is in, removed on any exception
    with ScoremapWriter(scoremap_root) if scoremap_root is not None else contextlib.nullcontext() as writer:
        for batch in loader:
            maps = prepare_scoremap(_maps_of(map_fn, batch, target), size=scoremap_size)
            if writer is not None:
                writer.write_batch(batch.image_ids, maps)
            if isinstance(metric, PxAP):
                metric.update(maps, batch.masks or [], batch.ignore)
            else:
                gt = [
                    wsoleval_gt_boxes(boxes, tuple(size.tolist()), size=scoremap_size).to(maps.device)
                    for boxes, size in zip(batch.boxes, batch.sizes)
                ]
                metric.update(maps, gt)
        result = metric.compute()
    return result
