"""``BoxAccuracy``: GT-known / Top-1 / Top-5 Loc ("ornet"), MaxBoxAcc and MaxBoxAccV2 ("wsoleval")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import torch
from torch import Tensor

from lowcam.metrics._inputs import check_gt_boxes, check_maps, check_thresholds, check_values
from lowcam.metrics.base import CountingMetric, cpu_threads, valid_mask
from lowcam.metrics.contours import NUM_CUTS, contour_intervals
from lowcam.metrics.iou import box_iou
from lowcam.metrics.ornet_boxes import all_pixel_boxes
from lowcam.metrics.results import BoxAccuracyResult
from lowcam.metrics.scoremap import ornet_thresholds, quantize_scoremap, wsoleval_thresholds

__all__ = ["BoxAccuracy", "BoxProtocol"]

BoxProtocol: TypeAlias = Literal["ornet", "maxboxacc", "maxboxacc_v2"]
_PROTOCOLS = ("ornet", "maxboxacc", "maxboxacc_v2")


def _check_iou_thresholds(value: object, protocol: str) -> tuple[float, ...]:
    """The IoU thresholds δ as a tuple of distinct floats in ``[0, 1]`` (a bare number is one δ)."""
    if value is None:
        return (0.3, 0.5, 0.7) if protocol == "maxboxacc_v2" else (0.5,)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, Tensor):
        value = value.reshape(-1).tolist()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise TypeError(
            f"iou_thresholds must be a number or a sequence of numbers in [0, 1], got {type(value).__name__}"
        )
    if any(not isinstance(d, (int, float)) or isinstance(d, bool) for d in value):
        raise TypeError(f"iou_thresholds must hold numbers in [0, 1], got {list(value)!r}")
    deltas = tuple(float(d) for d in value)
    if not deltas or any(not 0.0 <= d <= 1.0 for d in deltas):
        raise ValueError(f"iou_thresholds must be a non-empty list of numbers in [0, 1], got {list(value)!r}")
    if len(set(deltas)) != len(deltas):
        raise ValueError(f"iou_thresholds must be distinct (one accuracy per δ), got {list(value)!r}")
    return deltas


class BoxAccuracy(CountingMetric):
    """Box localisation accuracy over a split, accumulated batch by batch as integer counts.

    Protocols (docs/metrics.md gives every convention):

    - ``"ornet"``: maps are raw activation maps (e.g. 56×56 sigmoid outputs); foreground ``map > τ`` for the
      19 thresholds ``τ = 0.05, …, 0.95``; one box over all foreground pixels scaled by
      ``image_size / W``; correct iff ``IoU > δ`` (no ``+1``, strict). Reports GT-known Loc and, when
      ``logits`` and ``targets`` are given, Top-1 / Top-5 Loc, all at the τ with the best GT-known Loc, as
      accuracies in percent (the reference prints errors).
    - ``"maxboxacc"`` and ``"maxboxacc_v2"``: maps are score maps in ``[0, 1]`` (see
      :func:`~lowcam.metrics.prepare_scoremap`); ``u8 = floor(255·map)``, cut ``k = int(τ·max(u8))`` for
      ``τ = 0, 0.001, …, 0.999``; boxes of OpenCV's contours of ``u8 > k`` (the largest one for
      ``"maxboxacc"``, all of them for ``"maxboxacc_v2"``); correct iff ``IoU ≥ δ`` with ``+1``.
      ``acc(δ) = max over τ`` of the share of correct images; the value is the mean of ``acc(δ)`` over
      ``δ ∈ {0.5}`` (MaxBoxAcc) or ``{0.3, 0.5, 0.7}`` (MaxBoxAccV2).

    An image counts as correct when its box (any of its boxes for MaxBoxAccV2) matches any of its GT boxes.
    The state (:class:`~lowcam.metrics.CountingMetric`) is ``(D, T)`` int64 correct counts per IoU threshold
    δ and map threshold τ, on the maps' device; memory does not grow with the number of images.
    ``compute()`` sums it over ``torch.distributed`` processes and returns a
    :class:`~lowcam.metrics.BoxAccuracyResult`.

    Args:
        protocol: ``"ornet"``, ``"maxboxacc"`` or ``"maxboxacc_v2"``.
        thresholds: map thresholds τ in ``[0, 1]``; default as above.
        iou_thresholds: distinct IoU thresholds δ (a bare number is one); default ``(0.5,)``, or
            ``(0.3, 0.5, 0.7)`` for MaxBoxAccV2.
        image_size: "ornet" only, the side of the image the boxes live in (224): ``s = image_size / W``.
        chunk_size: images processed together by the contour protocols (bounds the memory); ``None``
            picks 8 on the CPU, where larger chunks gain nothing, and 128 on other devices, where each
            chunk costs a fixed number of kernel launches and host synchronisations (a few per Borůvka
            round) that larger chunks amortise. Not tuned on a GPU yet; peak memory grows about linearly
            with it.
        cpu_threads: torch intra-op threads for the contour protocols on the CPU (restored afterwards);
            ``None`` keeps torch's setting. The default 1 avoids a several-fold slowdown of their many small
            ops on a busy machine (benchmarks/results/metrics_threads.md).
        process_group: the ``torch.distributed`` group that ``compute()`` / ``sync()`` sum over.
        sync_on_compute: sum over the processes inside ``compute()`` (when ``torch.distributed`` is
            initialised).

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 8, 8, dtype=torch.float64)
        >>> maps[0, 2:6, 2:6] = 1.0
        >>> maps[1, 0:2, 0:2] = 1.0
        >>> gt = [torch.tensor([[2, 2, 6, 6]]), torch.tensor([[4, 4, 7, 7]])]
        >>> metric = BoxAccuracy("maxboxacc")
        >>> _ = metric.update(maps, gt)
        >>> out = metric.compute()
        >>> out.value, out.n, out.counts[0.5][:3].tolist()
        (50.0, 2, [1, 1, 1])
        >>> out.scalars()
        {'value': 50.0, 'n': 2.0, 'acc@0.5': 50.0, 'threshold@0.5': 0.0}
    """

    def __init__(
        self,
        protocol: BoxProtocol = "maxboxacc_v2",
        *,
        thresholds: Tensor | Sequence[float] | None = None,
        iou_thresholds: Sequence[float] | float | None = None,
        image_size: int = 224,
        chunk_size: int | None = None,
        cpu_threads: int | None = 1,
        process_group: Any = None,
        sync_on_compute: bool = True,
    ) -> None:
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, got {protocol!r}")
        self.protocol: BoxProtocol = protocol
        default_thr = ornet_thresholds() if protocol == "ornet" else wsoleval_thresholds()
        self.thresholds = check_thresholds("thresholds", thresholds, default_thr)
        self.iou_thresholds = _check_iou_thresholds(iou_thresholds, protocol)
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        if cpu_threads is not None and (not isinstance(cpu_threads, int) or cpu_threads <= 0):
            raise ValueError(f"cpu_threads must be a positive int or None, got {cpu_threads!r}")
        self.image_size = image_size
        self.chunk_size = chunk_size
        self.cpu_threads = cpu_threads
        self._classes: bool | None = None
        super().__init__(process_group=process_group, sync_on_compute=sync_on_compute)

    # -- state ---------------------------------------------------------------------------------------------

    def _empty_state(self) -> dict[str, Tensor]:
        d, t = len(self.iou_thresholds), self.thresholds.numel()
        zeros = torch.zeros(d, t, dtype=torch.int64)
        return {
            "correct": zeros,  # (D, T) images whose box matches at (δ, τ)
            "top1": zeros.clone(),  # ... and whose top-1 class is right ("ornet" with logits)
            "top5": zeros.clone(),  # ... and whose class is in the top 5
            "n": torch.zeros((), dtype=torch.int64),  # images counted
            "n_classes": torch.zeros((), dtype=torch.int64),  # images counted with logits and targets
        }

    def reset(self) -> None:
        """Forget every image seen (the device is kept)."""
        self._classes = None
        super().reset()

    def _after_load(self) -> None:
        n, n_classes = int(self._state["n"]), int(self._state["n_classes"])
        self._classes = None if n == 0 else n_classes > 0

    # -- update --------------------------------------------------------------------------------------------

    def update(
        self,
        maps: Tensor,
        gt_boxes: Sequence[Tensor] | Tensor,
        *,
        logits: Tensor | None = None,
        targets: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> BoxAccuracy:
        """Count a batch.

        Args:
            maps: ``(B, H, W)`` or ``(B, 1, H, W)`` floating maps: raw activation maps ("ornet") or score
                maps in ``[0, 1]`` (the others; a map holding a NaN counts as all zeros, as the reference's
                normalisation makes it). Values must be finite or NaN. Any strides. ``B = 0`` counts nothing.
            gt_boxes: one ``(K_i, 4)`` tensor of ``(x0, y0, x1, y1)`` boxes per image (several boxes: any may
                match), in the maps' pixel frame for "wsoleval" and in the ``image_size`` frame for "ornet",
                or a ``(B, K, 4)`` tensor. An all-zero row is rejected: it is what zero padding looks like,
                and it would match the box of an empty map (pad by repeating a real box, or pass a list).
            logits: ``(B, C)`` class scores of the whole images ("ornet", for Top-1 / Top-5 Loc).
            targets: ``(B,)`` true classes, with ``logits``.
            valid: ``(B,)`` bool, the images to count (None: all). Use it to leave out the duplicates that a
                ``DistributedSampler`` pads the last batches with (docs/metrics.md shows how).

        Returns:
            ``self``.

        Raises:
            TypeError: an argument of the wrong type.
            ValueError: a wrong shape, a ``gt_boxes`` list of the wrong length, a box with ``x0 > x1`` or
                ``y0 > y1`` or all zero, an infinite value, or (contour protocols) a value outside ``[0, 1]``;
                the message names the image.
        """
        maps = check_maps("maps", maps)
        b = maps.shape[0]
        device = maps.device
        gt = check_gt_boxes("gt_boxes", gt_boxes, b, device)
        keep = valid_mask("valid", valid, b, device)
        nan_free = check_values("maps", maps, unit_interval=self.protocol != "ornet")
        top1, top5 = self._check_classes(logits, targets, b, device)
        if b == 0:
            return self
        self._prepare_update(device)
        deltas = torch.tensor(self.iou_thresholds, dtype=torch.float64, device=device)
        thr = self.thresholds.to(device)
        state = self._state
        if self.protocol == "ornet":
            _, h, w = maps.shape
            sx, sy = self.image_size / w, self.image_size / h
            boxes = all_pixel_boxes(maps, thr, sx, sy, nan_free=nan_free)  # (T, B, 4)
            iou = box_iou(boxes.unsqueeze(2), gt.unsqueeze(0), plus_one=False).amax(2)  # (T, B)
            hit = iou.unsqueeze(2) > deltas  # (T, B, D), strict
            if keep is not None:
                hit = hit & keep.view(1, b, 1)
            state["correct"] += hit.sum(1).T
            if top1 is not None and top5 is not None:
                state["top1"] += (hit & top1.view(1, b, 1)).sum(1).T
                state["top5"] += (hit & top5.view(1, b, 1)).sum(1).T
        else:
            chunk = self.chunk_size or (8 if device.type == "cpu" else 128)
            with cpu_threads(self.cpu_threads, device):
                for start in range(0, b, chunk):  # chunks bound the memory
                    stop = min(start + chunk, b)
                    u8 = quantize_scoremap(maps[start:stop], nan_free=nan_free)
                    part = None if keep is None else keep[start:stop]
                    state["correct"] += self._count_contours(u8, gt[start:stop], thr, deltas, part)
        counted = torch.tensor(b, device=device) if keep is None else keep.sum()
        state["n"] += counted
        if top1 is not None:
            state["n_classes"] += counted
        return self

    def _check_classes(
        self, logits: Tensor | None, targets: Tensor | None, b: int, device: torch.device
    ) -> tuple[Tensor | None, Tensor | None]:
        if (logits is None) != (targets is None):
            raise ValueError("logits and targets must be given together")
        if logits is None or targets is None:
            if self._classes:
                raise ValueError(
                    "logits and targets were given to earlier updates: give them to every update"
                )
            self._classes = False
            return None, None
        if self.protocol != "ornet":
            raise ValueError(f"logits and targets are used by protocol 'ornet' only, not {self.protocol!r}")
        if self._classes is False:
            raise ValueError("earlier updates had no logits and targets: give them to every update or none")
        if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != b:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"logits must have shape (B, C) = ({b}, C), got {shape}")
        if not isinstance(targets, Tensor) or targets.shape != (b,) or targets.is_floating_point():
            shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"targets must be an integer tensor of shape ({b},), got {shape}")
        self._classes = True
        logits, targets = logits.to(device), targets.to(device)
        top1 = logits.argmax(1) == targets
        top5 = (logits.topk(min(5, logits.shape[1]), 1).indices == targets.view(-1, 1)).any(1)
        return top1, top5

    def _count_contours(
        self, u8: Tensor, gt: Tensor, thr: Tensor, deltas: Tensor, keep: Tensor | None
    ) -> Tensor:
        """``(D, T)`` correct counts of a chunk of 8-bit maps (of the images with ``keep``, when given).

        Each contour box comes with the interval of cuts where it is a contour (:func:`contour_intervals`).
        Whether some box matches at cut ``k`` is whether ``k`` lies in the interval of a matching box: a
        difference array (+1 at ``lo``, −1 at ``hi``) summed over the cuts counts the matching boxes alive.
        """
        b = u8.shape[0]
        d = deltas.numel()
        iv = contour_intervals(u8, largest_only=self.protocol == "maxboxacc")
        iou = box_iou(iv.boxes.unsqueeze(1), gt.index_select(0, iv.image), plus_one=True).amax(1)  # (E,)
        hit = (iou.unsqueeze(1) >= deltas).to(torch.int64)  # (E, D)
        slots = NUM_CUTS + 1  # cuts 0..255; 255 never has foreground
        base = iv.image * slots
        diff = torch.zeros(b * slots, d, dtype=torch.int64, device=u8.device)
        diff.index_add_(0, base + iv.lo, hit).index_add_(0, base + iv.hi, -hit)
        alive = diff.view(b, slots, d).cumsum(1) > 0  # (B, slots, D): a matching box at the cut
        empty_box = torch.zeros(1, 1, 4, dtype=torch.float64, device=u8.device)
        empty_hit = box_iou(empty_box, gt, plus_one=True).amax(1).unsqueeze(1) >= deltas  # (B, D)
        top = u8.reshape(b, -1).amax(1)
        cuts = torch.floor(thr.view(1, -1) * top.to(torch.float64).view(-1, 1)).to(torch.int64)  # int(τ·max)
        found = alive.gather(1, cuts.unsqueeze(2).expand(-1, -1, d))  # (B, T, D)
        has = (cuts < top.view(-1, 1)).unsqueeze(2)  # foreground at the cut: {u8 > k} is not empty
        correct = torch.where(has, found, empty_hit.view(b, 1, d))
        if keep is not None:
            correct = correct & keep.view(b, 1, 1)
        return correct.sum(0).T

    # -- compute -------------------------------------------------------------------------------------------

    def compute(self) -> BoxAccuracyResult:
        """The accuracies, in percent, at the best threshold of the split (one τ per δ), over all processes.

        Under ``torch.distributed`` (and ``sync_on_compute``) this sums the counts over the processes first:
        call it on every rank; every rank gets the same result.

        Returns:
            A :class:`~lowcam.metrics.BoxAccuracyResult`: ``value``, ``acc`` / ``threshold`` per δ, the
            accuracy ``curve`` over the thresholds, ``counts``, ``n`` and, for "ornet", ``gt_known``,
            ``top1_loc`` and ``top5_loc`` (None without logits); also readable as a ``dict``
            (``result["acc"][0.5]``).

        Raises:
            RuntimeError: no image was seen (on any process).
            ValueError: some processes or updates gave logits and targets and others did not.
        """
        state = self._global_state()
        n = int(state["n"])
        if n == 0:
            raise RuntimeError("BoxAccuracy.compute() called before any update()")
        n_classes = int(state["n_classes"])
        if 0 < n_classes < n:
            raise ValueError(
                f"logits and targets were given for {n_classes} of {n} images (over all processes): give them "
                "to every update or none"
            )
        with_classes = n_classes > 0
        return BoxAccuracyResult.from_counts(
            self.protocol,
            self.thresholds,
            self.iou_thresholds,
            state["correct"],
            n,
            top1_counts=state["top1"] if with_classes else None,
            top5_counts=state["top5"] if with_classes else None,
        )
