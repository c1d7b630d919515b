"""``center_gaussian``: the data-free baseline map of a WSOL table."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["center_gaussian"]


def center_gaussian(
    batch: int,
    height: int,
    width: int | None = None,
    *,
    sigma: float = 0.25,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``batch`` copies of a Gaussian centred in the image: the data-free baseline of a WSOL table.

    A method whose maps do not beat this one has learned nothing about *where* the object is that the
    data set's centre bias does not already give (wsolevaluation's sanity baseline, Choe et al.,
    CVPR 2020)::

        map[b, y, x] = exp(−((y − c_y)² / (2 σ_y²) + (x − c_x)² / (2 σ_x²)))
        c_y = (H − 1) / 2,  c_x = (W − 1) / 2,  σ_y = sigma · H,  σ_x = sigma · W

    Values are in ``[0, 1]``: 1 at the centre pixel of an odd side, ``exp(−1 / (32 σ_y²)…)`` below 1 on an
    even side (the centre falls between pixels); with the default ``sigma`` the smallest value is
    ``exp(−4) ≈ 0.018``, while a small ``sigma`` or a half-precision ``dtype`` underflows far pixels to 0.
    Its level sets are centred ellipses of the image's aspect ratio, so a metric that sweeps the
    threshold (MaxBoxAcc, MaxBoxAccV2, PxAP) sees the same family of boxes for any ``sigma`` that does not
    underflow (only which sizes the threshold grid samples); a fixed-threshold protocol (``"ornet"``'s
    boxes) depends on it.

    Args:
        batch: number of maps ``B`` (≥ 0).
        height: ``H`` (≥ 1).
        width: ``W`` (≥ 1); ``None``: ``height``.
        sigma: the standard deviation as a fraction of each side (> 0; default 0.25).
        device: where the maps live (default: torch's default device).
        dtype: a floating dtype (default float32).

    Returns:
        ``(B, H, W)`` maps in ``[0, 1]``.

    Raises:
        ValueError: a size below its minimum or ``sigma`` not a positive finite number.
        TypeError: a non-integer size or a non-floating ``dtype``.

    Example:
        >>> from lowcam.metrics import center_gaussian
        >>> maps = center_gaussian(2, 5)
        >>> maps.shape, maps[0, 2, 2].item(), bool((maps[0] > 0).all())
        (torch.Size([2, 5, 5]), 1.0, True)
    """
    width = height if width is None else width
    for name, value, least in (("batch", batch, 0), ("height", height, 1), ("width", width, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int; got {type(value).__name__}")
        if value < least:
            raise ValueError(f"{name} must be >= {least}; got {value}")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not 0 < float(sigma) < math.inf:
        raise ValueError(f"sigma must be a positive finite number; got {sigma!r}")
    sigma = float(sigma)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype; got {dtype}")
    y = torch.arange(height, device=device, dtype=torch.float64)
    x = torch.arange(width, device=device, dtype=torch.float64)
    gy = ((y - (height - 1) / 2) / (sigma * height)).square() / 2
    gx = ((x - (width - 1) / 2) / (sigma * width)).square() / 2
    single = torch.exp(-(gy[:, None] + gx[None, :])).to(dtype)
    return single.expand(batch, height, width).clone()
