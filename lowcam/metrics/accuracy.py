"""``BoxAccuracy``: GT-known / Top-1 / Top-5 Loc ("ornet"), MaxBoxAcc and MaxBoxAccV2 ("wsoleval")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor

from lowcam.metrics._inputs import check_gt_boxes, check_maps, check_thresholds, check_values
from lowcam.metrics.boxes import NUM_CUTS, _boxes_all_pixels, contour_intervals
from lowcam.metrics.iou import box_iou
from lowcam.metrics.scoremap import _quantize_scoremap, ornet_thresholds, wsoleval_thresholds

__all__ = ["BoxAccuracy", "Protocol"]

Protocol = Literal["ornet", "maxboxacc", "maxboxacc_v2"]
_PROTOCOLS = ("ornet", "maxboxacc", "maxboxacc_v2")


class BoxAccuracy:
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
    The state is a ``(D, T)`` int64 tensor of correct counts per IoU threshold δ and map threshold τ, on the
    maps' device; memory does not grow with the number of images. :meth:`sync` sums it over
    ``torch.distributed`` processes.

    Args:
        protocol: ``"ornet"``, ``"maxboxacc"`` or ``"maxboxacc_v2"``.
        thresholds: map thresholds τ in ``[0, 1]``; default as above.
        iou_thresholds: IoU thresholds δ; default ``(0.5,)``, or ``(0.3, 0.5, 0.7)`` for MaxBoxAccV2.
        image_size: "ornet" only, the side of the image the boxes live in (224): ``s = image_size / W``.
        chunk_size: images processed together by the contour protocols (bounds the memory); ``None``
            picks 8 on the CPU, where larger chunks gain nothing, and 128 on other devices, where each
            chunk costs a fixed number of kernel launches and host synchronisations (a few per Borůvka
            round) that larger chunks amortise. Not tuned on a GPU yet; peak memory grows about linearly
            with it.

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 8, 8, dtype=torch.float64)
        >>> maps[0, 2:6, 2:6] = 1.0
        >>> maps[1, 0:2, 0:2] = 1.0
        >>> gt = [torch.tensor([[2, 2, 6, 6]]), torch.tensor([[4, 4, 7, 7]])]
        >>> metric = BoxAccuracy("maxboxacc")
        >>> _ = metric.update(maps, gt)
        >>> out = metric.compute()
        >>> out["value"], out["n"], out["counts"][0.5][:3].tolist()
        (50.0, 2, [1, 1, 1])
    """

    def __init__(
        self,
        protocol: Protocol = "maxboxacc_v2",
        *,
        thresholds: Tensor | Sequence[float] | None = None,
        iou_thresholds: Sequence[float] | None = None,
        image_size: int = 224,
        chunk_size: int | None = None,
    ) -> None:
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, got {protocol!r}")
        self.protocol: Protocol = protocol
        default_thr = ornet_thresholds() if protocol == "ornet" else wsoleval_thresholds()
        self.thresholds = check_thresholds("thresholds", thresholds, default_thr)
        if iou_thresholds is None:
            iou_thresholds = (0.3, 0.5, 0.7) if protocol == "maxboxacc_v2" else (0.5,)
        deltas = tuple(float(d) for d in iou_thresholds)
        if not deltas or any(not 0.0 <= d <= 1.0 for d in deltas):
            raise ValueError(
                f"iou_thresholds must be a non-empty list of numbers in [0, 1], got {iou_thresholds!r}"
            )
        self.iou_thresholds = deltas
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        self.image_size = image_size
        self.chunk_size = chunk_size
        self.reset()

    # -- state ---------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every image seen."""
        d, t = len(self.iou_thresholds), self.thresholds.numel()
        # rows: correct, top-1 correct, top-5 correct; last column of row 0 of the extra block: n
        self._state = torch.zeros(3, d, t, dtype=torch.int64)
        self._n = torch.zeros((), dtype=torch.int64)
        self._classes: bool | None = None
        self._synced: tuple[Tensor, Tensor] | None = None

    def _to(self, device: torch.device) -> None:
        if self._state.device != device:
            self._state = self._state.to(device)
            self._n = self._n.to(device)

    def sync(self) -> None:
        """Sum the counts over all ``torch.distributed`` processes (a no-op without a process group).

        Every process must call it. The local counts are kept: calling :meth:`sync` again, or after more
        updates, gives the new global sums, never double counts. :meth:`compute` uses the synced counts until
        the next :meth:`update` or :meth:`reset`.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        state = self._state
        if dist.get_backend() == "nccl" and state.device.type != "cuda":
            state = state.to(torch.device("cuda", torch.cuda.current_device()))
        flat = torch.cat([state.reshape(-1), self._n.to(state.device).reshape(1)])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        self._synced = (flat[:-1].view_as(self._state), flat[-1])

    # -- update --------------------------------------------------------------------------------------------

    def update(
        self,
        maps: Tensor,
        gt_boxes: Sequence[Tensor] | Tensor,
        *,
        logits: Tensor | None = None,
        targets: Tensor | None = None,
    ) -> BoxAccuracy:
        """Count a batch.

        Args:
            maps: ``(B, H, W)`` or ``(B, 1, H, W)`` floating maps: raw activation maps ("ornet") or score
                maps in ``[0, 1]`` (the others; a map holding a NaN counts as all zeros, as the reference's
                normalisation makes it). Values must be finite or NaN.
            gt_boxes: one ``(K_i, 4)`` tensor of ``(x0, y0, x1, y1)`` boxes per image (several boxes: any may
                match), in the maps' pixel frame for "wsoleval" and in the ``image_size`` frame for "ornet".
            logits: ``(B, C)`` class scores of the whole images ("ornet", for Top-1 / Top-5 Loc).
            targets: ``(B,)`` true classes, with ``logits``.

        Returns:
            ``self``.

        Raises:
            TypeError: an argument of the wrong type.
            ValueError: a wrong shape, a ``gt_boxes`` list of the wrong length, a box with ``x0 > x1`` or
                ``y0 > y1``, an infinite value, or (contour protocols) a value outside ``[0, 1]``; the message
                names the image.
        """
        maps = check_maps("maps", maps)
        b = maps.shape[0]
        device = maps.device
        gt = check_gt_boxes("gt_boxes", gt_boxes, b, device)
        nan_free = check_values("maps", maps, unit_interval=self.protocol != "ornet")
        top1, top5 = self._check_classes(logits, targets, b, device)
        self._to(device)
        self._synced = None
        deltas = torch.tensor(self.iou_thresholds, dtype=torch.float64, device=device)
        thr = self.thresholds.to(device)
        if self.protocol == "ornet":
            _, h, w = maps.shape
            sx, sy = self.image_size / w, self.image_size / h
            boxes = _boxes_all_pixels(maps, thr, sx, sy, nan_free=nan_free)  # (T, B, 4)
            iou = box_iou(boxes.unsqueeze(2), gt.unsqueeze(0), plus_one=False).amax(2)  # (T, B)
            hit = iou.unsqueeze(2) > deltas  # (T, B, D), strict
            self._state[0] += hit.sum(1).T
            if top1 is not None and top5 is not None:
                self._state[1] += (hit & top1.view(1, b, 1)).sum(1).T
                self._state[2] += (hit & top5.view(1, b, 1)).sum(1).T
        else:
            chunk = self.chunk_size or (8 if device.type == "cpu" else 128)
            for start in range(0, b, chunk):  # chunks bound the memory
                stop = min(start + chunk, b)
                u8 = _quantize_scoremap(maps[start:stop], nan_free=nan_free)
                self._state[0] += self._count_contours(u8, gt[start:stop], thr, deltas)
        self._n += b
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

    def _count_contours(self, u8: Tensor, gt: Tensor, thr: Tensor, deltas: Tensor) -> Tensor:
        """``(D, T)`` correct counts of a chunk of 8-bit maps.

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
        return correct.sum(0).T

    # -- compute -------------------------------------------------------------------------------------------

    def compute(self) -> dict[str, Any]:
        """The accuracies, in percent, at the best threshold of the split (one τ per δ).

        Returns:
            ``{"value", "acc": {δ: %}, "threshold": {δ: τ}, "counts": {δ: (T,) int64 tensor}, "n"}``; for
            "ornet" also ``"gt_known"``, ``"top1_loc"``, ``"top5_loc"`` (at the first δ's best τ; the Top
            entries are None without logits), and ``"top1_counts"`` / ``"top5_counts"``.

        Raises:
            RuntimeError: no image was seen.
        """
        state, n_t = self._synced if self._synced is not None else (self._state, self._n)
        n = int(n_t)
        if n == 0:
            raise RuntimeError("BoxAccuracy.compute() called before any update()")
        state = state.cpu()
        acc = state[0].to(torch.float64) * 100.0 / n  # (D, T)
        best = acc.argmax(1)  # first maximum
        taus = self.thresholds
        out: dict[str, Any] = {
            "acc": {dl: float(acc[i, best[i]]) for i, dl in enumerate(self.iou_thresholds)},
            "threshold": {dl: float(taus[best[i]]) for i, dl in enumerate(self.iou_thresholds)},
            "counts": {dl: state[0, i].clone() for i, dl in enumerate(self.iou_thresholds)},
            "n": n,
        }
        out["value"] = sum(out["acc"].values()) / len(self.iou_thresholds)
        if self.protocol == "ornet":
            j = int(best[0])
            out["gt_known"] = float(acc[0, j])
            with_classes = bool(self._classes)
            out["top1_loc"] = float(state[1, 0, j]) * 100.0 / n if with_classes else None
            out["top5_loc"] = float(state[2, 0, j]) * 100.0 / n if with_classes else None
            out["top1_counts"] = {dl: state[1, i].clone() for i, dl in enumerate(self.iou_thresholds)}
            out["top5_counts"] = {dl: state[2, i].clone() for i, dl in enumerate(self.iou_thresholds)}
        return out
