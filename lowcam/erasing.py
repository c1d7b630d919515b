"""ORNet's attentive erasing: randomly drops pixels inside the most activated region of a map."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from lowcam._backend import Backend, resolve_backend
from lowcam._checks import check_int, check_map, check_unit_interval, compute_dtype


class ErasingOutput(NamedTuple):
    """Result of :func:`attentive_erasing`.

    Attributes:
        erased: the squashed map with dropped pixels, ``(B, 1, H, W)``, the input's dtype.
        region: the bool mask ``(B, 1, H, W)`` of the pixels eligible for dropping.
    """

    erased: torch.Tensor
    region: torch.Tensor


def _check_erasing_args(
    p: float, min_factor: float, max_factor: float, min_size: int, scale: float, shift: float
) -> None:
    check_unit_interval("p", p)
    check_unit_interval("min_factor", min_factor)
    check_unit_interval("max_factor", max_factor)
    if min_factor > max_factor:
        raise ValueError(f"min_factor must be <= max_factor, got {min_factor=}, {max_factor=}")
    check_int("min_size", min_size)
    check_unit_interval("shift", shift)
    check_unit_interval("scale", scale)
    if scale + shift > 1.0:
        raise ValueError(
            f"scale + shift must be <= 1 so that scale * a + shift is a drop probability, got {scale=}, {shift=}"
        )


class ErasingDraws(NamedTuple):
    """All random numbers one call of attentive erasing uses, drawn on the input's device.

    Attributes:
        factor: ``(B,)`` threshold factors in ``[min_factor, max_factor)`` (one value repeated unless
            ``per_sample_factor``).
        chosen: ``(B,)`` bool, whether each sample is erased.
        half_size: ``(B, 2)`` float64 uniforms in ``[0, 1)`` that pick the half-sizes ``(hh, ww)``.
        keep: ``(B, 1, H, W)`` float32 uniforms in ``[0, 1)``; a pixel is kept where ``keep >= s``.
    """

    factor: torch.Tensor
    chosen: torch.Tensor
    half_size: torch.Tensor
    keep: torch.Tensor


def draw_erasing_randoms(
    a: torch.Tensor,
    p: float,
    min_factor: float,
    max_factor: float,
    per_sample_factor: bool,
    generator: torch.Generator | None,
) -> ErasingDraws:
    """Draw the random numbers of the torch backend, in a fixed order, from ``generator``."""
    batch = a.shape[0]
    device = a.device
    factor_u = torch.rand(batch if per_sample_factor else 1, device=device, generator=generator)
    factor = (min_factor + (max_factor - min_factor) * factor_u).expand(batch)
    chosen = torch.rand(batch, device=device, generator=generator) < p
    half_size = torch.rand(batch, 2, device=device, dtype=torch.float64, generator=generator)
    keep = torch.rand(a.shape, device=device, dtype=torch.float32, generator=generator)
    return ErasingDraws(factor, chosen, half_size, keep)


def erasing_region(
    a: torch.Tensor, factor: torch.Tensor, chosen: torch.Tensor, half_size: torch.Tensor, min_size: int
) -> torch.Tensor:
    """The bool region ``(B, 1, H, W)`` of attentive erasing, given the draws (no host sync).

    For a chosen sample: ``thr = max - (max - min) * factor``, ``P = {a > thr}``, half-sizes
    ``hh = min_size + floor(u * (extent_y // 2 - min_size))`` (likewise ``ww``), and
    ``region = P ∩ {|y - cy| < hh} ∩ {|x - cx| < ww}`` around the first arg-max ``(cy, cx)``. A sample
    whose range ``[min_size, extent // 2)`` is empty on either axis is not erased.
    """
    batch, _, height, width = a.shape
    maps = a.detach().to(compute_dtype(a.dtype)).reshape(batch, height, width)
    # Every statistic comes from row and column maxima: (B, H) and (B, W) tensors, not (B, H, W) masks.
    row_max = maps.amax(dim=2)
    col_max = maps.amax(dim=1)
    peak_value = row_max.amax(dim=1)
    low = maps.amin(dim=(1, 2))
    threshold = (peak_value - (peak_value - low) * factor.to(maps.dtype)).unsqueeze(1)
    rows = torch.arange(height, device=a.device)
    cols = torch.arange(width, device=a.device)
    row_hit = row_max > threshold  # the rows (columns) where P = {a > thr} has a pixel
    col_hit = col_max > threshold
    extent_y = torch.where(row_hit, rows, -1).amax(dim=1) - torch.where(row_hit, rows, height).amin(dim=1)
    extent_x = torch.where(col_hit, cols, -1).amax(dim=1) - torch.where(col_hit, cols, width).amin(dim=1)
    upper = torch.stack((extent_y, extent_x), dim=1).div(2, rounding_mode="floor")
    span = upper - min_size
    valid = (span > 0).all(dim=1)
    half = min_size + torch.floor(half_size * span.clamp(min=0).to(torch.float64)).long()
    half = torch.minimum(half, upper - 1)

    # The first arg-max in row-major order: the first row holding the peak, then its first column there.
    cy = (row_max == peak_value.unsqueeze(1)).to(torch.uint8).argmax(dim=1)
    peak_row = maps.gather(1, cy.view(batch, 1, 1).expand(batch, 1, width)).squeeze(1)
    cx = (peak_row == peak_value.unsqueeze(1)).to(torch.uint8).argmax(dim=1)
    erase = (chosen & valid).unsqueeze(1)
    near_y = ((rows.unsqueeze(0) - cy.unsqueeze(1)).abs() < half[:, :1]) & erase  # (B, H)
    near_x = (cols.unsqueeze(0) - cx.unsqueeze(1)).abs() < half[:, 1:]  # (B, W)
    # Rows outside the box get the threshold +inf, so one comparison tests both P and the rows.
    row_threshold = torch.where(near_y, threshold, torch.inf)
    region = (maps > row_threshold.unsqueeze(2)) & near_x.unsqueeze(1)
    return region.unsqueeze(1)


def attentive_erasing(
    a: torch.Tensor,
    *,
    p: float = 0.5,
    min_factor: float = 0.0,
    max_factor: float = 0.5,
    min_size: int = 4,
    scale: float = 0.6,
    shift: float = 0.2,
    per_sample_factor: bool = False,
    training: bool = True,
    generator: torch.Generator | None = None,
    backend: Backend = "auto",
) -> ErasingOutput:
    r"""Attentive erasing of ORNet: drop random pixels inside each map's most activated region.

    In training mode, for the whole batch:

    1. ``factor ~ U(min_factor, max_factor)``, one draw per batch (per sample if ``per_sample_factor``).
    2. Each sample is chosen with probability ``p``.
    3. For a chosen sample, with its first arg-max ``(cy, cx)`` in row-major order:
       :math:`thr = \max a - (\max a - \min a)\cdot factor`, :math:`P = \{a > thr\}`, its extents
       ``extent_y = max_y(P) - min_y(P)`` (likewise ``x``), half-sizes
       ``hh ~ U_int[min_size, extent_y // 2)``, ``ww ~ U_int[min_size, extent_x // 2)``; a sample whose
       range is empty on either axis is not erased (as in the reference). The region is
       :math:`P \cap \{|y-c_y| < hh\} \cap \{|x-c_x| < ww\}`.
    4. Every map is squashed: :math:`s = \mathrm{scale}\cdot a + \mathrm{shift}` (``[0.2, 0.8]``).
    5. :math:`keep \sim \mathrm{Bernoulli}(1 - s)` per pixel; the output is :math:`s \cdot keep` inside
       the region and :math:`s` outside (no rescaling). The gradient is ``scale * keep`` inside the region
       and ``scale`` outside.

    In eval mode (``training=False``) the map is returned unchanged with an all-``False`` region.

    Deviations from the reference code, both bug fixes: the reference never erases row 0 or column 0
    (its region test uses ``> 0`` on coordinates) and silently skips a sample whose region is a single
    pixel; lowcam does neither. All random numbers are drawn on the input's device from ``generator``
    (no NumPy, no host sync, no loop over the batch), so a generator seeded the same way gives the same
    output on the same device and backend. Under ``torch.compile(fullgraph=True)`` pass ``generator=None``
    (dynamo cannot trace a :class:`torch.Generator` argument) and seed with :func:`torch.manual_seed`. On
    CPU the compiled code runs the eager torch backend as one opaque op (inductor's CPU code for it is
    slower), so it draws exactly what eager draws; on CUDA inductor draws its own random numbers unless
    ``torch._inductor.config.fallback_random`` is set.

    Args:
        a: activation map ``(B, 1, H, W)`` with values in ``[0, 1]`` (the caller's contract).
        p: probability that a sample is erased, in ``[0, 1]`` (reference 0.5).
        min_factor: lower bound of the threshold factor, in ``[0, 1]`` (reference 0).
        max_factor: upper bound of the threshold factor, in ``[0, 1]`` (reference 0.5).
        min_size: smallest half-size of the erased box, in pixels (reference 4).
        scale: slope of the squashing (reference 0.6).
        shift: offset of the squashing (reference 0.2); ``scale + shift <= 1``.
        per_sample_factor: draw the factor per sample instead of once per batch (reference ``False``).
        training: erase (``True``) or return the map unchanged (``False``).
        generator: a :class:`torch.Generator` on ``a``'s device, or ``None`` for the default one.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``; each draws its random numbers its own way, so the
            same seed gives the same output only within one backend.

    Returns:
        ``(erased, region)``: the output map in ``a``'s dtype and the bool region, both ``(B, 1, H, W)``.

    Raises:
        TypeError: ``a`` is not a floating tensor, or an argument has the wrong type.
        ValueError: ``a`` is not ``(B, 1, H, W)``; a probability or factor outside ``[0, 1]``;
            ``min_factor > max_factor``; ``min_size < 0``; ``scale + shift > 1``.

    Example:
        >>> a = torch.zeros(1, 1, 32, 32)
        >>> a[..., 8:24, 8:24] = 1.0
        >>> g = torch.Generator().manual_seed(0)
        >>> erased, region = attentive_erasing(a, p=1.0, generator=g)
        >>> bool(region.any()), bool(region[..., :8, :].any())
        (True, False)
        >>> float(erased.amax()), float(erased.amin())
        (0.800000011920929, 0.0)
    """
    check_map("a", a)
    _check_erasing_args(p, min_factor, max_factor, min_size, scale, shift)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if not training:
        return ErasingOutput(a, torch.zeros_like(a, dtype=torch.bool))
    if resolve_backend(backend, a) == "triton":
        from lowcam.ops.erasing import attentive_erasing_triton

        erased, region = attentive_erasing_triton(
            a,
            p=p,
            min_factor=min_factor,
            max_factor=max_factor,
            min_size=min_size,
            scale=scale,
            shift=shift,
            per_sample_factor=per_sample_factor,
            generator=generator,
        )
        return ErasingOutput(erased, region)
    if a.device.type == "cpu" and torch.compiler.is_compiling():
        from lowcam.ops.erasing_cpu import attentive_erasing_opaque

        erased, region = attentive_erasing_opaque(
            a, p, min_factor, max_factor, min_size, scale, shift, per_sample_factor
        )
        return ErasingOutput(erased, region)
    erased, region, _ = erase_torch(
        a, p, min_factor, max_factor, min_size, scale, shift, per_sample_factor, generator
    )
    return ErasingOutput(erased, region)


def erase_torch(
    a: torch.Tensor,
    p: float,
    min_factor: float,
    max_factor: float,
    min_size: int,
    scale: float,
    shift: float,
    per_sample_factor: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The torch backend in training mode (arguments already validated), differentiable through ``a``.

    Returns:
        ``(erased, region, kept)``: the output in ``a``'s dtype, the bool region and the multiplier
        ``kept`` (``0.0`` where a pixel was dropped, ``1.0`` elsewhere), so that
        ``erased = (scale * a + shift) * kept`` and ``d erased / d a = scale * kept``; ``kept`` is float32
        (the buffer of the keep uniforms, reused).
    """
    draws = draw_erasing_randoms(a, p, min_factor, max_factor, per_sample_factor, generator)
    region = erasing_region(a, draws.factor, draws.chosen, draws.half_size, min_size)
    erased, kept = _SquashAndDrop.apply(a, draws.keep, region, scale, shift)
    return erased, region, kept


class _SquashAndDrop(torch.autograd.Function):
    """``erased = (scale · a + shift) · kept`` with ``kept = keep ≥ scale · a + shift`` or outside the region.

    Written out so that the backward pass is one multiplication into one new buffer,
    ``grad_a = grad · kept · scale`` (autograd's chain through the squashing allocates two full-size
    buffers, which costs page faults at every step for large batches on the CPU).
    """

    @staticmethod
    def forward(
        ctx: Any, a: torch.Tensor, keep: torch.Tensor, region: torch.Tensor, scale: float, shift: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        squashed = a.to(compute_dtype(a.dtype)).mul(scale).add_(shift)  # a fresh tensor: safe to update
        kept_mask = (keep >= squashed).logical_or_(region.logical_not())
        # A float multiplier instead of masked_fill/where (both branch on every pixel, slow on noisy
        # regions), written into the uniforms' buffer, which is ours and not needed any more.
        kept = keep.copy_(kept_mask)
        erased = squashed.mul_(kept).to(a.dtype)
        ctx.save_for_backward(kept)
        ctx.scale = scale
        ctx.mark_non_differentiable(kept)
        return erased, kept

    @staticmethod
    def backward(ctx: Any, grad_erased: torch.Tensor, grad_kept: torch.Tensor | None) -> tuple[Any, ...]:
        (kept,) = ctx.saved_tensors
        grad_a = torch.mul(grad_erased, kept).mul_(ctx.scale).to(grad_erased.dtype)
        return grad_a, None, None, None, None


class AttentiveErasing(nn.Module):
    """Module form of :func:`attentive_erasing`; erases in training mode, identity in eval mode.

    Args:
        p: probability that a sample is erased (reference 0.5).
        min_factor: lower bound of the threshold factor (reference 0).
        max_factor: upper bound of the threshold factor (reference 0.5).
        min_size: smallest half-size of the erased box (reference 4).
        scale: slope of the squashing (reference 0.6).
        shift: offset of the squashing (reference 0.2).
        per_sample_factor: one factor per sample instead of per batch (reference ``False``).
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Shape:
        - Input ``a``: ``(B, 1, H, W)``.
        - Output: :class:`ErasingOutput` ``(erased, region)``, both ``(B, 1, H, W)``.

    Example:
        >>> erasing = AttentiveErasing(p=1.0)
        >>> a = torch.rand(4, 1, 28, 28)
        >>> erased, region = erasing(a, generator=torch.Generator().manual_seed(1))
        >>> bool((erased[~region] == (0.6 * a + 0.2)[~region]).all())
        True
        >>> erasing.eval()(a).erased is a
        True
    """

    def __init__(
        self,
        p: float = 0.5,
        min_factor: float = 0.0,
        max_factor: float = 0.5,
        min_size: int = 4,
        scale: float = 0.6,
        shift: float = 0.2,
        per_sample_factor: bool = False,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        _check_erasing_args(p, min_factor, max_factor, min_size, scale, shift)
        self.p = p
        self.min_factor = min_factor
        self.max_factor = max_factor
        self.min_size = min_size
        self.scale = scale
        self.shift = shift
        self.per_sample_factor = per_sample_factor
        self.backend: Backend = backend

    def forward(self, a: torch.Tensor, generator: torch.Generator | None = None) -> ErasingOutput:
        return attentive_erasing(
            a,
            p=self.p,
            min_factor=self.min_factor,
            max_factor=self.max_factor,
            min_size=self.min_size,
            scale=self.scale,
            shift=self.shift,
            per_sample_factor=self.per_sample_factor,
            training=self.training,
            generator=generator,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, min_factor={self.min_factor}, max_factor={self.max_factor}, min_size={self.min_size}, "
            f"scale={self.scale}, shift={self.shift}, per_sample_factor={self.per_sample_factor}, "
            f"backend={self.backend!r}"
        )
