"""``PxAP``: pixel average precision of score maps against segmentation masks (OpenImages protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from lowcam.metrics._inputs import check_maps, check_thresholds, check_values
from lowcam.metrics.scoremap import wsoleval_thresholds

__all__ = ["PxAP", "resize_nearest"]

MaskInput = Tensor | Sequence[Tensor]


def resize_nearest(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize the last two dimensions with OpenCV's ``INTER_NEAREST`` rule.

    Output pixel ``d`` reads source pixel ``min(floor(d · (1.0 / (out_len / src_len))), src_len − 1)``, in
    float64, along each axis (what ``cv2.resize(..., interpolation=cv2.INTER_NEAREST)`` does).

    Args:
        mask: ``(..., h, w)`` tensor of any dtype.
        size: ``(H, W)``.

    Returns:
        ``(..., H, W)``, same dtype.

    Example:
        >>> import torch
        >>> resize_nearest(torch.tensor([[1, 2, 3]]), (1, 4)).tolist()
        [[1, 1, 2, 3]]
    """
    h, w = mask.shape[-2], mask.shape[-1]
    out_h, out_w = size

    def index(out_len: int, src_len: int) -> Tensor:
        scale = 1.0 / (out_len / src_len)
        pos = torch.floor(torch.arange(out_len, dtype=torch.float64, device=mask.device) * scale)
        return pos.to(torch.int64).clamp(max=src_len - 1)

    return mask.index_select(-2, index(out_h, h)).index_select(-1, index(out_w, w))


def _masks_to_bool(
    name: str, masks: MaskInput, b: int, size: tuple[int, int], device: torch.device
) -> Tensor:
    """``(B, H, W)`` bool: per image, the union over instances of ``mask > 0.5`` after nearest resizing."""
    entries: Sequence[Tensor]
    if isinstance(masks, Tensor):
        if masks.dim() not in (3, 4) or masks.shape[0] != b or masks.numel() == 0:
            raise ValueError(
                f"{name} must have shape (B, h, w) or (B, N, h, w) with B = {b}, got shape {tuple(masks.shape)}"
            )
        m = masks.unsqueeze(1) if masks.dim() == 3 else masks
        return (resize_nearest(m.to(device), size).to(torch.float64) > 0.5).any(1)
    if isinstance(masks, Sequence) and not isinstance(masks, (str, bytes)):
        entries = masks
    else:
        raise TypeError(f"{name} must be a tensor or a list of tensors, got {type(masks).__name__}")
    if len(entries) != b:
        raise ValueError(f"{name} has {len(entries)} entries for a batch of {b} maps; expected one per image")
    out = []
    for i, m in enumerate(entries):  # a list holds masks of their own sizes: one resize per image
        if not isinstance(m, Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(m).__name__}")
        if m.dim() == 2:
            m = m.unsqueeze(0)
        if m.dim() != 3 or min(m.shape) == 0:
            raise ValueError(f"{name}[{i}] must have shape (h, w) or (N, h, w), got shape {tuple(m.shape)}")
        m = resize_nearest(m.to(device), size)
        out.append((m.to(torch.float64) > 0.5).any(0))
    return torch.stack(out)


class PxAP:
    """Pixel average precision (PxAP, Choe et al. 2020) accumulated over a split as integer histograms.

    Scores (float64) fall into the bins of edges ``[τ_0, …, τ_{T−1}, 1, 2, 3]`` (left-closed;
    ``τ_i = i · 0.001`` by default), separately for foreground pixels (union of the instance masks
    ``> 0.5``) and background pixels; ignored pixels (ignore mask ``> 0.5``, minus the foreground) count on
    neither side. With ``tp``, ``fp`` the cumulative sums from the top bin, ``precision = tp / (tp + fp)``
    and ``recall = tp / N_pos``, ``PxAP = 100 · Σ_i precision[i] · (recall[i] − recall[i−1])`` over the bins
    where ``tp + fp > 0``. Masks of another size than the maps are resized with OpenCV's nearest rule.

    Args:
        thresholds: the score thresholds (bin edges below 1); default ``np.arange(0, 1, 0.001)``.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[0.9, 0.8], [0.2, 0.1]]], dtype=torch.float64)
        >>> masks = torch.tensor([[[1, 1], [0, 0]]])
        >>> PxAP().update(maps, masks).compute()["value"]
        100.0
    """

    def __init__(self, *, thresholds: Tensor | Sequence[float] | None = None) -> None:
        taus = check_thresholds("thresholds", thresholds, wsoleval_thresholds())
        if not bool((taus[1:] > taus[:-1]).all()) or float(taus[-1]) >= 1.0:
            raise ValueError("thresholds must increase strictly and stay below 1")
        self.edges = torch.cat([taus, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)])
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._hist = torch.zeros(2, self.edges.numel() - 1, dtype=torch.int64)
        self._n = torch.zeros((), dtype=torch.int64)
        self._synced: tuple[Tensor, Tensor] | None = None

    def update(self, maps: Tensor, masks: MaskInput, ignore: MaskInput | None = None) -> PxAP:
        """Count a batch.

        Args:
            maps: ``(B, H, W)`` or ``(B, 1, H, W)`` score maps in ``[0, 1]`` (a map holding a NaN counts as all
                zeros).
            masks: per image, the instance masks: a ``(B, h, w)`` / ``(B, N, h, w)`` tensor or a list of
                ``(h_i, w_i)`` / ``(N_i, h_i, w_i)`` tensors.
            ignore: per image, the ignore mask, in the same forms, or None.

        Returns:
            ``self``.
        """
        maps = check_maps("maps", maps)
        check_values("maps", maps, unit_interval=True)
        b, h, w = maps.shape
        device = maps.device
        fg = _masks_to_bool("masks", masks, b, (h, w), device)
        keep = torch.ones_like(fg)
        if ignore is not None:
            keep = ~(_masks_to_bool("ignore", ignore, b, (h, w), device) & ~fg)
        scores = maps.to(torch.float64)
        nan = torch.isnan(scores).flatten(1).any(1).view(b, 1, 1)
        scores = torch.where(nan, torch.zeros_like(scores), scores)
        edges = self.edges.to(device)
        bins = torch.searchsorted(edges, scores.reshape(-1), right=True) - 1
        if self._hist.device != device:
            self._hist, self._n = self._hist.to(device), self._n.to(device)
        # one histogram of (bin, class) pairs, class 0 foreground, 1 background, 2 ignored
        side = torch.where(keep, (~fg).to(torch.int64), 2).reshape(-1)
        nbins = self._hist.shape[1]
        pairs = torch.bincount(bins * 3 + side, minlength=3 * nbins).view(nbins, 3)
        self._hist += pairs[:, :2].T
        self._n += b
        self._synced = None
        return self

    def sync(self) -> None:
        """Sum the histograms over all ``torch.distributed`` processes (no-op without a process group)."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        state = self._hist
        if dist.get_backend() == "nccl" and state.device.type != "cuda":
            state = state.to(torch.device("cuda", torch.cuda.current_device()))
        flat = torch.cat([state.reshape(-1), self._n.to(state.device).reshape(1)])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        self._synced = (flat[:-1].view_as(self._hist), flat[-1])

    def compute(self) -> dict[str, Any]:
        """PxAP in percent, with the precision and recall curves (from the top bin down).

        Returns:
            ``{"value": float, "precision": (T + 2,) float64, "recall": (T + 2,) float64, "n": images}``.

        Raises:
            RuntimeError: no positive pixel, or no pixel at all, was seen.
        """
        hist, n_t = self._synced if self._synced is not None else (self._hist, self._n)
        hist = hist.cpu()
        pos, neg = hist[0], hist[1]
        tp = pos.flip(0).cumsum(0).to(torch.float64)
        fp = neg.flip(0).cumsum(0).to(torch.float64)
        n_pos = float(pos.sum())
        if n_pos <= 0:
            raise RuntimeError("PxAP: no positive ground-truth pixel in the evaluated set")
        nonzero = (tp + fp) != 0
        precision = tp / torch.where(nonzero, tp + fp, torch.ones_like(tp))
        recall = tp / n_pos
        terms = precision[1:] * (recall[1:] - recall[:-1])
        value = float(torch.where(nonzero[1:], terms, torch.zeros_like(terms)).sum()) * 100.0
        return {"value": value, "precision": precision, "recall": recall, "n": int(n_t)}
