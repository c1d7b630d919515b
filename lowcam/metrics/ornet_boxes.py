"""Protocol "ornet": one box over all foreground pixels of an activation map, for every threshold at once."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lowcam._checks import check_batch_of_maps

__all__ = ["boxes_all_pixels"]


def boxes_all_pixels(
    maps: Tensor, thresholds: Tensor | Sequence[float], *, scale: float | tuple[float, float]
) -> Tensor:
    """Protocol "ornet": one box over all pixels above each threshold, for every threshold at once.

    Foreground is ``map > τ`` compared in float64 (NaN is background). The box is
    ``[min_x·s_x, min_y·s_y, max_x·s_x, max_y·s_y]`` over all foreground pixels, connected or not (no
    ``+ s`` on the far side); with no foreground it is ``[0, 0, W·s_x, H·s_y]``. The boxes come from the
    maps' row and column maxima, so the maps are read once for all thresholds.

    Args:
        maps: ``(B, H, W)`` or ``(B, 1, H, W)`` floating tensor.
        thresholds: ``(T,)`` thresholds (converted to float64).
        scale: ``s`` (e.g. 224 / 56 = 4), or ``(s_x, s_y)``.

    Returns:
        ``(T, B, 4)`` float64 boxes.

    Example:
        >>> import torch
        >>> m = torch.zeros(1, 4, 4)
        >>> m[0, 1, 2] = 0.7
        >>> m[0, 3, 0] = 0.4
        >>> boxes_all_pixels(m, [0.3, 0.5, 0.9], scale=4.0)[:, 0].tolist()
        [[0.0, 4.0, 8.0, 12.0], [8.0, 4.0, 8.0, 4.0], [0.0, 0.0, 16.0, 16.0]]
    """
    maps = check_batch_of_maps("maps", maps, allow_empty_batch=True)
    sx, sy = (
        (float(scale), float(scale))
        if isinstance(scale, (int, float))
        else (float(scale[0]), float(scale[1]))
    )
    thr = torch.as_tensor(thresholds, dtype=torch.float64, device=maps.device).reshape(-1)
    return _boxes_all_pixels(maps, thr, sx, sy, nan_free=False)


def _max_along(x: Tensor, dim: int) -> Tensor:
    """``x.amax(dim)`` (NaN propagates) by halving: two overlapping halves at a time, one vectorised pass each.

    Faster on the CPU than ``amax`` over a short dimension; the overlap is harmless to a maximum. Other
    devices use ``amax`` (one kernel instead of ``log2`` of them).
    """
    if x.device.type != "cpu":
        return x.amax(dim)
    while x.shape[dim] > 1:
        n = x.shape[dim]
        half = (n + 1) // 2
        x = torch.maximum(x.narrow(dim, 0, half), x.narrow(dim, n - half, half))
    return x.squeeze(dim)


def _boxes_all_pixels(maps: Tensor, thr: Tensor, sx: float, sy: float, *, nan_free: bool) -> Tensor:
    """:func:`boxes_all_pixels` of checked ``(B, H, W)`` maps and ``(T,)`` float64 thresholds on their device.

    With ``nan_free`` (the caller knows that the maps hold no NaN) the NaN-to-background copy is skipped.
    The first foreground column at ``τ`` is the number of columns whose running maximum (from the left) is at
    most ``τ``, the last one the number of columns whose running maximum from the right is above ``τ``,
    minus one: binary searches in the running maxima (the same for rows).
    """
    m = maps if nan_free else torch.nan_to_num(maps, nan=float("-inf"))
    b, h, w = m.shape
    t = thr.numel()
    query = thr.view(1, -1).expand(b, -1).contiguous()  # (B, T)

    def first_last(profile: Tensor, size: int) -> tuple[Tensor, Tensor]:
        # profile: (B, size) maxima; first and last index above each threshold, (T, B) each
        p = profile.to(torch.float64)
        first = torch.searchsorted(p.cummax(1).values, query, right=True)  # count of prefix maxima <= τ
        suffix = p.flip(1).cummax(1).values  # nondecreasing: maxima of the last 1, 2, … entries
        last = (size - 1) - torch.searchsorted(suffix, query, right=True)
        return first.T, last.T

    x0, x1 = first_last(_max_along(m, 1), w)
    y0, y1 = first_last(_max_along(m, 2), h)
    any_fg = x0 < w
    x0, y0, x1, y1 = (v.to(torch.float64) for v in (x0, y0, x1, y1))  # int64 * float would give float32
    box = torch.stack([x0 * sx, y0 * sy, x1 * sx, y1 * sy], 2)
    empty = torch.tensor([0.0, 0.0, w * sx, h * sy], dtype=torch.float64, device=maps.device)
    return torch.where(any_fg.view(t, b, 1), box, empty)
