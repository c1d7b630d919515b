"""Score maps as the "wsoleval" protocol prepares them, and the thresholds of both protocols."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lowcam._checks import check_batch_of_maps

__all__ = ["ornet_thresholds", "prepare_scoremap", "quantize_scoremap", "wsoleval_thresholds"]

#: A map whose range is at most this many units in the last place of its largest magnitude is constant.
_FLAT_ULPS = 64


def _flat(low: Tensor, high: Tensor) -> Tensor:
    """True where ``[low, high]`` is the range of a constant map up to rounding: ``high − low`` at most
    :data:`_FLAT_ULPS` units in the last place of ``max(|low|, |high|)`` (plus the smallest normal number).

    A bicubic resize of a constant map ripples by up to about 22 units in the last place of its value; min–max
    normalisation would stretch that noise over ``[0, 1]``. NaN compares False (not flat); an infinite range
    is not flat either.
    """
    info = torch.finfo(low.dtype)
    magnitude = torch.maximum(low.abs(), high.abs())
    return (high - low) <= magnitude * (_FLAT_ULPS * info.eps) + info.tiny


def prepare_scoremap(cams: Tensor, size: int | tuple[int, int] = 224) -> Tensor:
    """Resize class activation maps bicubically in float64 and min–max normalise each one.

    This is the inference path of the "wsoleval" protocol: each ``h × w`` map is resized to ``size`` with
    bicubic interpolation (``align_corners=False``) in float64, then ``m ← m − min(m)``,
    ``m ← m / max(m)`` in float64. A map holding a NaN, or a constant map, becomes all zeros, as in the
    reference. So does a map with an infinite value (anywhere after resizing): the reference then gives zeros
    or, when the infinity covers the whole resized map, NaN; lowcam keeps the ``[0, 1]`` contract.

    Args:
        cams: ``(B, h, w)`` or ``(B, 1, h, w)`` real tensor.
        size: the output size, an int for a square or ``(H, W)``.

    Returns:
        ``(B, H, W)`` float64 in ``[0, 1]``.

    Raises:
        TypeError: ``cams`` is not a real tensor, or ``size`` is not an int or a pair of ints.
        ValueError: ``cams`` has another shape, or ``size`` is not positive.

    Example:
        >>> import torch
        >>> cams = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
        >>> out = prepare_scoremap(cams, size=4)
        >>> out.shape, out.dtype, out.min().item(), out.max().item()
        (torch.Size([1, 4, 4]), torch.float64, 0.0, 1.0)
        >>> prepare_scoremap(torch.tensor([[[0.0, float("nan")], [1.0, 2.0]]]), size=3).sum().item()  # NaN
        0.0
        >>> prepare_scoremap(torch.tensor([[[0.0, float("inf")], [1.0, 2.0]]]), size=3).sum().item()  # inf
        0.0
    """
    cams = check_batch_of_maps("cams", cams, dtype="real", allow_empty_batch=True)
    out_size = _check_size(size)
    x = F.interpolate(cams.to(torch.float64).unsqueeze(1), size=out_size, mode="bicubic", align_corners=False)
    x = x.squeeze(1)
    flat = x.flatten(1)
    finite = torch.isfinite(flat).all(1).view(-1, 1, 1)
    low, high = flat.amin(1).view(-1, 1, 1), flat.amax(1).view(-1, 1, 1)
    return _min_max(x, low, high, finite)


def _min_max(x: Tensor, low: Tensor, high: Tensor, finite: Tensor) -> Tensor:
    """``(x − low) / (high − low)`` as the reference computes it, zeros where the map is not ``finite`` or
    is flat (:func:`_flat`); ``low``, ``high`` and ``finite`` broadcast against ``x``.

    Where ``high − low`` overflows (values beyond half the dtype's range), both are halved first: exact in
    binary floating point, so the result is the same as the unbounded arithmetic's rounded once more.
    Elsewhere the factor is 1 and the arithmetic is the reference's, bit for bit.
    """
    zero = finite.logical_not() | _flat(low, high)
    f = torch.where(torch.isfinite(high - low) | zero, 1.0, 0.5).to(x.dtype)
    span = high * f - low * f
    out = (x * f - low * f) / torch.where(zero, torch.ones_like(span), span)
    return torch.where(zero, torch.zeros_like(out), out)


def _check_size(size: object) -> tuple[int, int]:
    """``size`` as ``(H, W)``: a positive int or a pair of positive ints."""

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(size):
        pair: tuple[object, ...] = (size, size)
    elif isinstance(size, (tuple, list, torch.Size)) and len(size) == 2 and all(is_int(v) for v in size):
        pair = tuple(size)
    else:
        raise TypeError(f"size must be an int or a pair of ints (H, W), got {size!r}")
    out = (int(pair[0]), int(pair[1]))  # type: ignore[call-overload]  # ints, checked above
    if min(out) <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return out


def quantize_scoremap(scoremaps: Tensor, *, nan_free: bool = False) -> Tensor:
    """Turn score maps in ``[0, 1]`` into 8-bit images as the reference does: ``uint8(floor(m · 255))``.

    The product is taken in the maps' own dtype (as NumPy's ``(m * 255).astype(np.uint8)`` does), then
    truncated. A map holding a NaN becomes all zeros (the reference's normalisation zeroes such maps).

    Args:
        scoremaps: ``(B, H, W)`` floating tensor with values in ``[0, 1]`` or NaN (not checked here).
        nan_free: the caller knows that the maps hold no NaN: a plain scale and cast (one pass less).

    Returns:
        ``(B, H, W)`` uint8.

    Example:
        >>> import torch
        >>> quantize_scoremap(torch.tensor([[[0.0, 0.5, 0.999, 1.0]]], dtype=torch.float64)).tolist()
        [[[0, 127, 254, 255]]]
    """
    scaled = scoremaps * 255
    if nan_free:
        return scaled.to(torch.uint8)
    bad = torch.isnan(scaled).flatten(1).any(1).view(-1, *([1] * (scaled.dim() - 1)))
    # a NaN's cast is undefined, but a map holding one is zeroed whole
    return torch.where(bad, 0, scaled.nan_to_num(0.0).to(torch.uint8))


def wsoleval_thresholds(interval: float = 0.001) -> Tensor:
    """The score-map thresholds of "wsoleval", equal to NumPy's ``np.arange(0, 1, interval)``.

    Args:
        interval: the step, in ``(0, 1]``.

    Returns:
        ``(T,)`` float64 with ``T = ceil(1 / interval)`` and ``τ_i = i · interval``.

    Example:
        >>> t = wsoleval_thresholds()
        >>> t.shape, t[1].item(), t[-1].item()
        (torch.Size([1000]), 0.001, 0.999)
    """
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not 0.0 < interval <= 1.0:
        raise ValueError(f"interval must be a float in (0, 1], got {interval!r}")
    count = math.ceil((1.0 - 0.0) / interval)
    return torch.arange(count, dtype=torch.float64) * interval


def ornet_thresholds() -> Tensor:
    """The 19 thresholds of protocol "ornet": ``τ_i = (i + 1) / 20``, float64.

    Example:
        >>> t = ornet_thresholds()
        >>> t.shape, t[0].item(), t[-1].item()
        (torch.Size([19]), 0.05, 0.95)
    """
    return torch.arange(1, 20, dtype=torch.float64) / 20
