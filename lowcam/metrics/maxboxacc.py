"""``MaxBoxAcc``: MaxBoxAcc (``version=1``) and MaxBoxAccV2 (``version=2``) of the "wsoleval" protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from lowcam.metrics._inputs import BoxFrame, check_gt_boxes, check_maps, check_thresholds, check_values
from lowcam.metrics.accuracy import BoxProtocol, _BoxMetric, _check_iou_thresholds, _compute
from lowcam.metrics.base import _cpu_threads, _valid_mask
from lowcam.metrics.contours import _NUM_CUTS, _contour_intervals
from lowcam.metrics.iou import box_iou
from lowcam.metrics.results import BoxAccuracyResult
from lowcam.metrics.scoremap import quantize_scoremap, wsoleval_thresholds

__all__ = ["MaxBoxAcc", "max_box_acc"]

#: Peak bytes the contour engine needs per map pixel (measured: 300 to 450; a 4096² map took 2.7 GB).
_CONTOUR_BYTES_PER_PIXEL = 450
#: Memory one chunk of maps may take in the contour engine: on the CPU, and on other devices.
_CHUNK_BYTES = {"cpu": 512 * 2**20, "other": 4 * 2**30}


def _default_chunk(h: int, w: int, device: torch.device) -> int:
    """Maps per chunk when ``chunk_size=None``: at most 8 on the CPU (larger chunks gain nothing there) and
    128 elsewhere (fewer launches and synchronisations), and no more than the memory budget of the device
    allows at :data:`_CONTOUR_BYTES_PER_PIXEL` bytes per pixel; at least one map."""
    cpu = device.type == "cpu"
    budget = _CHUNK_BYTES["cpu" if cpu else "other"]
    by_memory = budget // (_CONTOUR_BYTES_PER_PIXEL * max(1, h * w))
    return max(1, min(8 if cpu else 128, by_memory))


def _count_contours(
    u8: Tensor, gt: Tensor, thresholds: Tensor, deltas: Tensor, keep: Tensor | None, *, largest_only: bool
) -> Tensor:
    """``(D, T)`` correct counts of a chunk of 8-bit maps (of the images with ``keep``, when given).

    Each contour box comes with the interval of cuts where it is a contour (``_contour_intervals``). Whether
    some box matches at cut ``k`` is whether ``k`` lies in the interval of a matching box: a difference array
    (+1 at ``lo``, −1 at ``hi``) summed over the cuts counts the matching boxes alive.
    """
    b = u8.shape[0]
    d = deltas.numel()
    iv = _contour_intervals(u8, largest_only=largest_only)
    iou = box_iou(iv.boxes.unsqueeze(1), gt.index_select(0, iv.image), plus_one=True).amax(1)  # (E,)
    hit = (iou.unsqueeze(1) >= deltas).to(torch.int64)  # (E, D)
    slots = _NUM_CUTS + 1  # cuts 0..255; 255 never has foreground
    base = iv.image * slots
    diff = torch.zeros(b * slots, d, dtype=torch.int64, device=u8.device)
    diff.index_add_(0, base + iv.lo, hit).index_add_(0, base + iv.hi, -hit)
    alive = diff.view(b, slots, d).cumsum(1) > 0  # (B, slots, D): a matching box at the cut
    empty_box = torch.zeros(1, 1, 4, dtype=torch.float64, device=u8.device)
    empty_hit = box_iou(empty_box, gt, plus_one=True).amax(1).unsqueeze(1) >= deltas  # (B, D)
    top = u8.reshape(b, -1).amax(1)
    cuts = torch.floor(thresholds.view(1, -1) * top.to(torch.float64).view(-1, 1)).to(
        torch.int64
    )  # int(τ·max)
    found = alive.gather(1, cuts.unsqueeze(2).expand(-1, -1, d))  # (B, T, D)
    has = (cuts < top.view(-1, 1)).unsqueeze(2)  # foreground at the cut: {u8 > k} is not empty
    correct = torch.where(has, found, empty_hit.view(b, 1, d))
    if keep is not None:
        correct = correct & keep.view(b, 1, 1)
    return correct.sum(0).T


def _update(
    state: dict[str, Tensor],
    maps: Tensor,
    gt: Tensor,
    thresholds: Tensor,
    deltas: Tensor,
    *,
    largest_only: bool,
    nan_free: bool,
    keep: Tensor | None,
    chunk: int,
) -> None:
    """Add a checked batch to the counts ``state`` (in place), ``chunk`` maps at a time: a pure function of
    its arguments. ``maps`` ``(B, H, W)`` in ``[0, 1]`` or NaN, ``gt`` ``(B, K, 4)`` float64,
    ``thresholds`` ``(T,)`` and ``deltas`` ``(D,)`` float64, ``keep`` ``(B,)`` bool or None, one device."""
    b = maps.shape[0]
    for start in range(0, b, chunk):  # chunks bound the memory
        stop = min(start + chunk, b)
        u8 = quantize_scoremap(maps[start:stop], nan_free=nan_free)
        part = None if keep is None else keep[start:stop]
        state["correct"] += _count_contours(
            u8, gt[start:stop], thresholds, deltas, part, largest_only=largest_only
        )
    state["n"] += torch.tensor(b, device=maps.device) if keep is None else keep.sum()


class MaxBoxAcc(_BoxMetric):
    """MaxBoxAcc (``version=1``) or MaxBoxAccV2 (``version=2``) of wsolevaluation (Choe et al., CVPR 2020),
    accumulated batch by batch as integer counts.

    Maps are score maps in ``[0, 1]`` (see :func:`~lowcam.metrics.prepare_scoremap`); ``u8 = floor(255·map)``,
    cut ``k = int(τ·max(u8))`` for ``τ = 0, 0.001, …, 0.999``; boxes of OpenCV's contours of ``u8 > k``
    (the largest one for version 1, all of them for version 2, :func:`~lowcam.metrics.contour_boxes`);
    correct iff ``IoU ≥ δ`` with ``+1`` for any of the image's boxes against any of its GT boxes.
    ``acc(δ) = max over τ`` of the share of correct images; the value is the mean of ``acc(δ)`` over
    ``δ ∈ {0.5}`` (version 1) or ``{0.3, 0.5, 0.7}`` (version 2). docs/metrics.md gives every convention.

    The state (:class:`~lowcam.metrics.CountingMetric`) is ``(D, T)`` int64 correct counts per IoU
    threshold δ and map threshold τ, on the maps' device; memory does not grow with the number of images.
    ``compute()`` sums it over ``torch.distributed`` processes and returns a
    :class:`~lowcam.metrics.BoxAccuracyResult`. :func:`max_box_acc` is the one-shot form.

    Args:
        version: 1 (MaxBoxAcc, the largest contour's box) or 2 (MaxBoxAccV2, every contour's box).
        thresholds: map thresholds τ in ``[0, 1]``; default as above.
        iou_thresholds: distinct IoU thresholds δ (a bare number is one); default ``(0.5,)`` for version 1,
            ``(0.3, 0.5, 0.7)`` for version 2.
        boxes_outside: ``"error"`` (default) rejects a GT box outside the maps' ``W × H`` pixel frame
            (``0 ≤ x0 ≤ x1 ≤ W``, the far edge included: the reference's rescaling maps a box that reaches
            the image's edge there); ``"keep"`` evaluates it as the reference does (e.g. a box that reaches
            beyond its image in the metadata).
        chunk_size: images processed together (bounds the memory); ``None`` picks at most 8 on the CPU,
            where larger chunks gain nothing, and 128 on other devices, where each chunk costs a fixed number
            of kernel launches and host synchronisations, and fewer when the maps are large: the contour
            engine needs up to about 450 bytes per pixel, and a chunk stays within 512 MiB on the CPU and
            4 GiB elsewhere (a single map larger than that is still one chunk).
        cpu_threads: torch intra-op threads on the CPU (restored afterwards); ``None`` keeps torch's setting.
            The default 1 avoids a several-fold slowdown of the many small ops on a busy machine
            (benchmarks/results/metrics_threads.md).
        process_group: the ``torch.distributed`` group that ``compute()`` / ``sync()`` sum over.
        sync_on_compute: sum over the processes inside ``compute()`` (when ``torch.distributed`` is
            initialised).

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 8, 8, dtype=torch.float64)
        >>> maps[0, 2:6, 2:6] = 1.0
        >>> maps[1, 0:2, 0:2] = 1.0
        >>> gt = [torch.tensor([[2, 2, 6, 6]]), torch.tensor([[4, 4, 7, 7]])]
        >>> metric = MaxBoxAcc(version=1)
        >>> _ = metric.update(maps, gt)
        >>> out = metric.compute()
        >>> out.value, out.n, out.counts[0.5][:3].tolist()
        (50.0, 2, [1, 1, 1])
        >>> out.scalars()
        {'value': 50.0, 'n': 2.0, 'acc@0.5': 50.0, 'threshold@0.5': 0.0}
    """

    def __init__(
        self,
        version: Literal[1, 2] = 2,
        *,
        thresholds: Tensor | Sequence[float] | None = None,
        iou_thresholds: Sequence[float] | Tensor | float | None = None,
        boxes_outside: Literal["error", "keep"] = "error",
        chunk_size: int | None = None,
        cpu_threads: int | None = 1,
        process_group: Any = None,
        sync_on_compute: bool = True,
    ) -> None:
        if version not in (1, 2) or isinstance(version, bool):
            raise ValueError(f"version must be 1 (MaxBoxAcc) or 2 (MaxBoxAccV2), got {version!r}")
        self.version: Literal[1, 2] = version
        self.protocol: BoxProtocol = "maxboxacc" if version == 1 else "maxboxacc_v2"
        self.thresholds = check_thresholds("thresholds", thresholds, wsoleval_thresholds())
        self.iou_thresholds = _check_iou_thresholds(
            iou_thresholds, (0.5,) if version == 1 else (0.3, 0.5, 0.7)
        )
        if boxes_outside not in ("error", "keep"):
            raise ValueError(f"boxes_outside must be 'error' or 'keep', got {boxes_outside!r}")
        if chunk_size is not None and (
            not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0
        ):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        if cpu_threads is not None and (
            not isinstance(cpu_threads, int) or isinstance(cpu_threads, bool) or cpu_threads <= 0
        ):
            raise ValueError(f"cpu_threads must be a positive int or None, got {cpu_threads!r}")
        self.boxes_outside = boxes_outside
        self.chunk_size = chunk_size
        self.cpu_threads = cpu_threads
        super().__init__(process_group=process_group, sync_on_compute=sync_on_compute)

    def _describe(self) -> str:
        return f"MaxBoxAcc(version={self.version})"

    def update(
        self, maps: Tensor, gt_boxes: Sequence[Tensor] | Tensor, *, valid: Tensor | None = None
    ) -> MaxBoxAcc:
        """Count a batch.

        Args:
            maps: ``(B, H, W)`` or ``(B, 1, H, W)`` floating score maps in ``[0, 1]`` (a map holding a NaN
                counts as all zeros, as the reference's normalisation makes it). Any strides. ``B = 0`` counts
                nothing.
            gt_boxes: one ``(K_i, 4)`` tensor of ``(x0, y0, x1, y1)`` boxes per image (several boxes: any may
                match) in the maps' pixel frame, or a ``(B, K, 4)`` tensor, on any device. An all-zero row is
                rejected (it is what zero padding looks like, and it would match the box of an empty map);
                so is a box outside the maps' frame, unless ``boxes_outside="keep"``.
            valid: ``(B,)`` bool, the images to count (None: all). Use it to leave out the duplicates that a
                ``DistributedSampler`` pads the last batches with (docs/metrics.md shows how).

        Returns:
            ``self``.

        Raises:
            TypeError: an argument of the wrong type.
            ValueError: a wrong shape, a ``gt_boxes`` list of the wrong length, a box with ``x0 > x1`` or
                ``y0 > y1``, all zero or outside the frame, or a map value outside ``[0, 1]``; the message
                names the image.
        """
        maps = check_maps("maps", maps)
        b, h, w = maps.shape
        device = maps.device
        rule: Literal["inside", "any"] = "inside" if self.boxes_outside == "error" else "any"
        what = f"{w} x {h} score map (MaxBoxAcc expects GT boxes in the maps' pixel frame)"
        gt = check_gt_boxes("gt_boxes", gt_boxes, b, device, BoxFrame(float(w), float(h), rule, what))
        keep = _valid_mask("valid", valid, b, device)
        nan_free = check_values("maps", maps, unit_interval=True)
        if b == 0:
            return self
        self._prepare_update(device)
        deltas = torch.tensor(self.iou_thresholds, dtype=torch.float64, device=device)
        chunk = self.chunk_size or _default_chunk(h, w, device)
        with _cpu_threads(self.cpu_threads, device):
            _update(
                self._state,
                maps,
                gt,
                self.thresholds.to(device),
                deltas,
                largest_only=self.version == 1,
                nan_free=nan_free,
                keep=keep,
                chunk=chunk,
            )
        return self


def max_box_acc(
    maps: Tensor,
    gt_boxes: Sequence[Tensor] | Tensor,
    *,
    version: Literal[1, 2] = 2,
    valid: Tensor | None = None,
    thresholds: Tensor | Sequence[float] | None = None,
    iou_thresholds: Sequence[float] | Tensor | float | None = None,
    boxes_outside: Literal["error", "keep"] = "error",
    chunk_size: int | None = None,
    cpu_threads: int | None = 1,
) -> BoxAccuracyResult:
    """MaxBoxAcc / MaxBoxAccV2 of one batch: :class:`MaxBoxAcc` in one call (no ``torch.distributed`` sum).
    The arguments are those of the class and its ``update``.

    Example:
        >>> import torch
        >>> maps = torch.zeros(1, 8, 8, dtype=torch.float64)
        >>> maps[0, 2:6, 2:6] = 1.0
        >>> max_box_acc(maps, [torch.tensor([[2, 2, 6, 6]])]).value  # the contour's box, clipped at W - 1
        100.0
    """
    metric = MaxBoxAcc(
        version,
        thresholds=thresholds,
        iou_thresholds=iou_thresholds,
        boxes_outside=boxes_outside,
        chunk_size=chunk_size,
        cpu_threads=cpu_threads,
        sync_on_compute=False,
    )
    metric.update(maps, gt_boxes, valid=valid)
    return _compute(metric._state, metric.protocol, metric.thresholds, metric.iou_thresholds, "max_box_acc")
