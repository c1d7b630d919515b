r"""Attentive erasing's torch backend, its CPU custom op for ``torch.compile``, and the one backward.

The same shape as the other ops: the implementation (here the vectorized torch code, the reference every
kernel is tested against), the custom op with its fake (``lowcam::attentive_erasing_torch``, the torch
backend as one opaque op under ``torch.compile`` on CPU) and the ``torch.autograd.Function``
(:class:`ThroughKept`, the backward every backend of erasing shares:
:math:`\partial\,\mathrm{erased}/\partial p = \mathrm{scale}\cdot\mathrm{kept}`). Torch only: no Triton
import; a leaf like the rest of :mod:`lowcam.ops` (the component resolves the parameters for the map size
into an :class:`ErasingCall`). Specification: ``docs/method.md`` (section "Attentive erasing").
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, the input's own dtype for float32/float64 (as the components compute)."""
    return torch.promote_types(dtype, torch.float32)


__all__ = [
    "ErasingCall",
    "ThroughKept",
    "attentive_erasing_cpu_op",
    "attentive_erasing_torch",
    "erasing_region",
]


class ErasingCall(NamedTuple):
    """The parameters of one call, resolved for its map size (``ErasingParams._resolve``): what the
    implementations and ops take.

    The order is the argument order of the custom ops (``lowcam::attentive_erasing_torch`` and
    ``lowcam::attentive_erasing_fwd``), so ``op(p, *args)`` calls them.
    """

    erase_prob: float
    min_factor: float
    max_factor: float
    min_size_y: int
    min_size_x: int
    scale: float
    shift: float
    per_sample_factor: bool


class _Draws(NamedTuple):
    """All random numbers one call of the torch backend uses, drawn on the input's device.

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


def _draw_randoms(p: torch.Tensor, args: ErasingCall, generator: torch.Generator | None) -> _Draws:
    """Draw the random numbers of the torch backend, in a fixed order, from ``generator``."""
    batch = p.shape[0]
    device = p.device
    factor_u = torch.rand(batch if args.per_sample_factor else 1, device=device, generator=generator)
    factor = (args.min_factor + (args.max_factor - args.min_factor) * factor_u).expand(batch)
    chosen = torch.rand(batch, device=device, generator=generator) < args.erase_prob
    half_size = torch.rand(batch, 2, device=device, dtype=torch.float64, generator=generator)
    keep = torch.rand(p.shape, device=device, dtype=torch.float32, generator=generator)
    return _Draws(factor, chosen, half_size, keep)


def erasing_region(p: torch.Tensor, draws: _Draws, min_size_y: int, min_size_x: int) -> torch.Tensor:
    """The bool region ``(B, 1, H, W)`` of attentive erasing, given the draws (no host sync).

    For a chosen sample: ``thr = max - (max - min) * factor``, ``P = {p > thr}``, half-sizes
    ``hh = min_size_y + floor(u * (extent_y // 2 - min_size_y))`` (likewise ``ww``), and
    ``region = P ∩ {|y - cy| < hh} ∩ {|x - cx| < ww}`` around the first arg-max ``(cy, cx)``. A sample
    whose range ``[min_size, extent // 2)`` is empty on either axis is not erased.
    """
    batch, _, height, width = p.shape
    maps = p.detach().to(compute_dtype(p.dtype)).reshape(batch, height, width)
    # Every statistic comes from row and column maxima: (B, H) and (B, W) tensors, not (B, H, W) masks.
    row_max = maps.amax(dim=2)
    col_max = maps.amax(dim=1)
    peak_value = row_max.amax(dim=1)
    low = maps.amin(dim=(1, 2))
    threshold = (peak_value - (peak_value - low) * draws.factor.to(maps.dtype)).unsqueeze(1)
    rows = torch.arange(height, device=p.device)
    cols = torch.arange(width, device=p.device)
    row_hit = row_max > threshold  # the rows (columns) where P = {p > thr} has a pixel
    col_hit = col_max > threshold
    extent_y = torch.where(row_hit, rows, -1).amax(dim=1) - torch.where(row_hit, rows, height).amin(dim=1)
    extent_x = torch.where(col_hit, cols, -1).amax(dim=1) - torch.where(col_hit, cols, width).amin(dim=1)
    upper = torch.stack((extent_y, extent_x), dim=1).div(2, rounding_mode="floor")
    lowest = torch.stack((upper.new_full((batch,), min_size_y), upper.new_full((batch,), min_size_x)), dim=1)
    span = upper - lowest
    valid = (span > 0).all(dim=1)
    half = lowest + torch.floor(draws.half_size * span.clamp(min=0).to(torch.float64)).long()
    half = torch.minimum(half, upper - 1)

    # The first arg-max in row-major order: the first row holding the peak, then its first column there.
    cy = (row_max == peak_value.unsqueeze(1)).to(torch.uint8).argmax(dim=1)
    peak_row = maps.gather(1, cy.view(batch, 1, 1).expand(batch, 1, width)).squeeze(1)
    cx = (peak_row == peak_value.unsqueeze(1)).to(torch.uint8).argmax(dim=1)
    erase = (draws.chosen & valid).unsqueeze(1)
    near_y = ((rows.unsqueeze(0) - cy.unsqueeze(1)).abs() < half[:, :1]) & erase  # (B, H)
    near_x = (cols.unsqueeze(0) - cx.unsqueeze(1)).abs() < half[:, 1:]  # (B, W)
    # Rows outside the box get the threshold +inf, so one comparison tests both P and the rows.
    row_threshold = torch.where(near_y, threshold, torch.inf)
    region = (maps > row_threshold.unsqueeze(2)) & near_x.unsqueeze(1)
    return region.unsqueeze(1)


def attentive_erasing_torch(
    p: torch.Tensor, args: ErasingCall, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The torch backend in training mode, without autograd (arguments already validated).

    Returns:
        ``(erased, region, kept)``: the output in ``p``'s dtype, the bool region and the float32 multiplier
        ``kept`` (``0.0`` where a pixel was dropped, ``1.0`` elsewhere), so that
        ``erased = (scale * p + shift) * kept``; ``kept`` reuses the buffer of the keep uniforms.
    """
    p = p.detach()
    draws = _draw_randoms(p, args, generator)
    region = erasing_region(p, draws, args.min_size_y, args.min_size_x)
    squashed = p.to(compute_dtype(p.dtype)).mul(args.scale).add_(args.shift)  # a fresh tensor: ours
    kept_mask = (draws.keep >= squashed).logical_or_(region.logical_not())
    # A float multiplier instead of masked_fill/where (both branch on every pixel, slow on noisy regions),
    # written into the uniforms' buffer, which is ours and not needed any more.
    kept = draws.keep.copy_(kept_mask)
    erased = squashed.mul_(kept).to(p.dtype)
    return erased, region, kept


# Under torch.compile on CPU the torch backend runs as this opaque custom op: inductor's CPU code
# for erasing is several times slower than eager (its per-pixel random numbers and bool reductions do not
# vectorize: 74 ms against 21 ms at 64 × 1 × 224 × 224 on one core of the development machine, measured
# when the op was written). Tagged nondeterministic_seeded so that the compiler neither merges two calls
# nor recomputes one in the backward pass; it draws from the default generator, as eager does.
_SEEDED: dict[str, Any] = (
    {"tags": (torch.Tag.nondeterministic_seeded,)}
    if "tags" in inspect.signature(torch.library.custom_op).parameters
    else {}
)


@torch.library.custom_op("lowcam::attentive_erasing_torch", mutates_args=(), **_SEEDED)
def attentive_erasing_cpu_op(
    p: torch.Tensor,
    erase_prob: float,
    min_factor: float,
    max_factor: float,
    min_size_y: int,
    min_size_x: int,
    scale: float,
    shift: float,
    per_sample_factor: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`attentive_erasing_torch` drawn from the default generator, as one opaque op."""
    args = ErasingCall(
        erase_prob, min_factor, max_factor, min_size_y, min_size_x, scale, shift, per_sample_factor
    )
    return attentive_erasing_torch(p, args, None)


@attentive_erasing_cpu_op.register_fake
def _(p: torch.Tensor, *args: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.empty(p.shape, dtype=p.dtype, device=p.device),
        torch.empty(p.shape, dtype=torch.bool, device=p.device),
        torch.empty(p.shape, dtype=torch.float32, device=p.device),
    )


class ThroughKept(torch.autograd.Function):
    """The one backward of attentive erasing: ``grad_p = grad · kept · scale``, whatever the backend.

    ``forward(p, erased, kept, scale)`` returns ``erased`` (computed without autograd by a backend) and
    ties it to ``p``. ``kept`` is the multiplier of the kept pixels (float32 from the torch backend,
    bool from the kernel); the product is formed in float32 (float64 for float64 gradients) and cast once
    (for float32 gradients: one new buffer, as autograd's chain through the squashing would need two).
    """

    @staticmethod
    def forward(
        ctx: Any, p: torch.Tensor, erased: torch.Tensor, kept: torch.Tensor, scale: float
    ) -> torch.Tensor:
        ctx.save_for_backward(kept)
        ctx.scale = scale
        return erased

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (kept,) = ctx.saved_tensors
        grad_p = torch.mul(grad.to(compute_dtype(grad.dtype)), kept).mul_(ctx.scale).to(grad.dtype)
        return grad_p, None, None, None
