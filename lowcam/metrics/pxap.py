"""``PxAP``: pixel average precision of score maps against segmentation masks (OpenImages protocol)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lowcam.metrics._inputs import check_maps, check_thresholds, check_values
from lowcam.metrics.base import CountingMetric, _valid_mask
from lowcam.metrics.results import PxAPResult
from lowcam.metrics.scoremap import wsoleval_thresholds

__all__ = ["PxAP", "resize_nearest"]

_MaskInput = Tensor | Sequence[Tensor]


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
    name: str, masks: _MaskInput, b: int, size: tuple[int, int], device: torch.device
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


class PxAP(CountingMetric):
    """Pixel average precision (PxAP, Choe et al. 2020) accumulated over a split as integer histograms.

    Scores (float64) fall into the bins of edges ``[τ_0, …, τ_{T−1}, 1, 2, 3]`` (left-closed;
    ``τ_i = i · 0.001`` by default), separately for foreground pixels (union of the instance masks
    ``> 0.5``) and background pixels; ignored pixels (ignore mask ``> 0.5``, minus the foreground) count on
    neither side. With ``tp``, ``fp`` the cumulative sums from the top bin, ``precision = tp / (tp + fp)``
    and ``recall = tp / N_pos``, ``PxAP = 100 · Σ_i precision[i] · (recall[i] − recall[i−1])`` over the bins
    where ``tp + fp > 0``. Masks of another size than the maps are resized with OpenCV's nearest rule.
    Scores below the first threshold fall in no bin (as in ``np.histogram``): they count on neither side (the
    state counts them apart, so that ``compute()`` can say why no foreground pixel was counted).

    The state (:class:`~lowcam.metrics.CountingMetric`) is the two ``(T + 2,)`` int64 histograms;
    ``compute()`` sums them over ``torch.distributed`` processes and returns a
    :class:`~lowcam.metrics.PxAPResult`.

    Args:
        thresholds: the score thresholds (bin edges below 1, strictly increasing); default
            ``np.arange(0, 1, 0.001)``.
        process_group: the ``torch.distributed`` group that ``compute()`` / ``sync()`` sum over.
        sync_on_compute: sum over the processes inside ``compute()`` (when ``torch.distributed`` is
            initialised).

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[0.9, 0.8], [0.2, 0.1]]], dtype=torch.float64)
        >>> masks = torch.tensor([[[1, 1], [0, 0]]])
        >>> PxAP().update(maps, masks).compute().value
        100.0
    """

    higher_is_better = True

    def __init__(
        self,
        *,
        thresholds: Tensor | Sequence[float] | None = None,
        process_group: Any = None,
        sync_on_compute: bool = True,
    ) -> None:
        taus = check_thresholds("thresholds", thresholds, wsoleval_thresholds())
        if not bool((taus[1:] > taus[:-1]).all()) or float(taus[-1]) >= 1.0:
            raise ValueError(f"thresholds must increase strictly and stay below 1, got {taus.tolist()!r:.80}")
        self.thresholds = taus
        self.edges = torch.cat([taus, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)])
        super().__init__(process_group=process_group, sync_on_compute=sync_on_compute)

    def _empty_state(self) -> dict[str, Tensor]:
        return {
            "hist": torch.zeros(2, self.edges.numel() - 1, dtype=torch.int64),  # foreground, background
            "below": torch.zeros(2, dtype=torch.int64),  # pixels below the first threshold, in no bin
            "n": torch.zeros((), dtype=torch.int64),
        }

    def _config(self) -> dict[str, Tensor]:
        return {"thresholds": self.thresholds.clone()}

    @property
    def _hist(self) -> Tensor:
        """The local ``(2, T + 2)`` histograms (foreground, background)."""
        return self._state["hist"]

    def update(
        self,
        maps: Tensor,
        masks: _MaskInput,
        ignore: _MaskInput | None = None,
        *,
        valid: Tensor | None = None,
    ) -> PxAP:
        """Count a batch.

        Args:
            maps: ``(B, H, W)`` or ``(B, 1, H, W)`` score maps in ``[0, 1]`` (a map holding a NaN counts as all
                zeros).
            masks: per image, the instance masks: a ``(B, h, w)`` / ``(B, N, h, w)`` tensor or a list of
                ``(h_i, w_i)`` / ``(N_i, h_i, w_i)`` tensors.
            ignore: per image, the ignore mask, in the same forms, or None.
            valid: ``(B,)`` bool, the images to count (None: all), e.g. to leave out a
                ``DistributedSampler``'s padded duplicates (docs/metrics.md).

        Returns:
            ``self``.
        """
        maps = check_maps("maps", maps)
        check_values("maps", maps, unit_interval=True)
        b, h, w = maps.shape
        device = maps.device
        keep = _valid_mask("valid", valid, b, device)
        if b == 0:
            return self
        fg = _masks_to_bool("masks", masks, b, (h, w), device)
        counted = torch.ones_like(fg)
        if ignore is not None:
            counted = ~(_masks_to_bool("ignore", ignore, b, (h, w), device) & ~fg)
        if keep is not None:
            counted = counted & keep.view(b, 1, 1)
        scores = maps.to(torch.float64)
        nan = torch.isnan(scores).flatten(1).any(1).view(b, 1, 1)
        scores = torch.where(nan, torch.zeros_like(scores), scores)
        edges = self.edges.to(device)
        bins = torch.searchsorted(edges, scores.contiguous(), right=True) - 1
        below = counted & (bins < 0)  # below the first edge: in no bin, as in np.histogram
        counted = counted & ~below
        self._prepare_update(device)
        # one histogram of (bin, class) pairs, class 0 foreground, 1 background, 2 not counted
        side = torch.where(counted, (~fg).to(torch.int64), 2).reshape(-1)
        nbins = self._state["hist"].shape[1]
        pairs = torch.bincount(bins.clamp(min=0).reshape(-1) * 3 + side, minlength=3 * nbins).view(nbins, 3)
        self._state["hist"] += pairs[:, :2].T
        self._state["below"] += torch.stack([(below & fg).sum(), (below & ~fg).sum()])
        self._state["n"] += b if keep is None else keep.sum()
        return self

    def compute(self) -> PxAPResult:
        """PxAP in percent, with the precision and recall curves (from the top bin down), over all processes.

        Under ``torch.distributed`` (and ``sync_on_compute``) this sums the histograms over the processes
        first: call it on every rank; every rank gets the same result.

        Returns:
            A :class:`~lowcam.metrics.PxAPResult`: ``value`` (percent), ``precision`` and ``recall``
            (``(T + 2,)`` float64) and ``n`` (images).

        Raises:
            RuntimeError: no image was evaluated, or no foreground pixel was counted (the masks hold none,
                or every foreground score lies below the first threshold; the reference raises too).
        """
        return _compute(self._global_state(), self.thresholds)

    def _check_counts(self, state: Mapping[str, Tensor]) -> str | None:
        if bool(state["n"] == 0) and bool((state["hist"] > 0).any() | (state["below"] > 0).any()):
            return "state_dict['hist'] holds pixels but state_dict['n'] is 0"
        return None


def _compute(state: Mapping[str, Tensor], thresholds: Tensor) -> PxAPResult:
    """The PxAP result of a (global, CPU) state: a pure function of it."""
    hist, n_t = state["hist"], state["n"]
    if int(n_t) == 0:
        raise RuntimeError(
            "PxAP.compute(): no image was evaluated (update() was not called, or only with empty batches or "
            "with valid=False for every image)"
        )
    pos, neg = hist[0], hist[1]
    tp = pos.flip(0).cumsum(0).to(torch.float64)
    fp = neg.flip(0).cumsum(0).to(torch.float64)
    n_pos = float(pos.sum())
    if n_pos <= 0:
        below = int(state["below"][0])
        if below > 0:
            raise RuntimeError(
                f"PxAP: the masks hold {below} foreground pixels, but all their scores lie below the first "
                f"threshold {float(thresholds[0]):g}, where they fall in no bin (as in the reference, which "
                "raises too): start the thresholds at 0"
            )
        raise RuntimeError(f"PxAP: no foreground pixel in the masks of the {int(n_t)} evaluated images")
    nonzero = (tp + fp) != 0
    precision = tp / torch.where(nonzero, tp + fp, torch.ones_like(tp))
    recall = tp / n_pos
    terms = precision[1:] * (recall[1:] - recall[:-1])
    value = float(torch.where(nonzero[1:], terms, torch.zeros_like(terms)).sum()) * 100.0
    return PxAPResult.from_curves(value, precision, recall, int(n_t))
