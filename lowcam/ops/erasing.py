r"""Fused attentive erasing: statistics, region and Bernoulli keep mask of every sample in one launch.

One program per sample walks its ``H × W`` map ``p`` in blocks of ``BLOCK`` pixels, three times:

1. the maximum, its first position in row-major order (the peak ``(cy, cx)``) and the minimum;
2. with :math:`thr = \max - (\max - \min)\cdot factor` and :math:`P = \{p > thr\}`, the row and column
   extents of :math:`P`, then the half-sizes
   :math:`hh = \mathrm{min\_size\_y} + \lfloor u_h \cdot (\mathrm{extent}_y /\!/ 2 - \mathrm{min\_size\_y})\rfloor`
   (likewise :math:`ww` with ``min_size_x``), the sample being erased only if it was chosen and both
   ranges are non-empty;
3. the output :math:`s = \mathrm{scale}\cdot p + \mathrm{shift}`, zeroed where
   :math:`region = P \cap \{|y-c_y| < hh\} \cap \{|x-c_x| < ww\}` and :math:`u_{pix} < s`, i.e.
   :math:`keep \sim \mathrm{Bernoulli}(1-s)`.

Passes 2 and 3 re-read the sample, which is cache-resident at ORNet's sizes (56 × 56 maps).

Randomness: two seeds are drawn on ``p``'s device from the caller's :class:`torch.Generator` (no host
sync, :func:`draw_seeds`) and loaded by the kernel; Triton's counter-based Philox generator turns (seed,
counter) into uniforms in ``[0, 1)``. With the second seed, :func:`triton.language.rand4x` at counter
``b + 1`` gives sample ``b``'s four draws (factor, chosen, hh, ww) and counter 0 the batch's one factor;
with the first seed, :func:`triton.language.rand` at counter ``b·H·W + i`` gives pixel ``i``'s keep draw.
The same generator state therefore gives the same output on the same device, whatever the block size; the
stream differs from the torch backend's, so only the distribution is shared across backends.

This module is forward only. Like every kernel here it takes plain numbers (the parameters resolved by
:class:`lowcam.erasing.ErasingParams`) and imports nothing from the components. It writes the bool mask of
the kept pixels (one byte per pixel); :mod:`lowcam.erasing` attaches the one backward pass of erasing,
``grad_p = scale · kept · grad_out`` (:class:`~lowcam.ops.erasing_torch.ThroughKept`, shared with the
torch backend and re-exported here).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lowcam.ops import _common  # the host-side helpers, as _common.<name>
from lowcam.ops._common import strided_offset
from lowcam.ops.erasing_torch import ThroughKept  # the one backward, shared with the torch backend

__all__ = ["ThroughKept", "attentive_erasing_triton", "draw_seeds"]

_BLOCK_MAX = 2048
_SEED_HIGH = 2**63 - 1  # exclusive bound: seeds use 63 of the 64 key bits of Philox


@triton.jit  # type: ignore[untyped-decorator]
def _load_tile(  # type: ignore[no-untyped-def]
    src_base,
    start,
    hw,
    width,
    stride_h,
    stride_w,
    BLOCK: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """The tile of ``BLOCK`` pixels from ``start`` (row-major): ``(offs, mask, rows, cols, values)``."""
    offs = start + tl.arange(0, BLOCK)
    mask = offs < hw
    rows = offs // width
    cols = offs % width
    src = offs if CONTIGUOUS else strided_offset(rows, cols, stride_h, stride_w)
    x = tl.load(src_base + src, mask=mask, other=0.0).to(COMPUTE)
    return offs, mask, rows, cols, x


@triton.jit  # type: ignore[untyped-decorator]
def _erasing_kernel(  # type: ignore[no-untyped-def]
    a_ptr,
    seed_ptr,
    out_ptr,
    region_ptr,
    kept_ptr,
    height,
    width,
    stride_b,
    stride_h,
    stride_w,
    p_erase,
    min_factor,
    factor_range,
    min_size_y,
    min_size_x,
    scale_hi,
    scale_lo,
    shift_hi,
    shift_lo,
    BLOCK: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    PER_SAMPLE_FACTOR: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Program ``b`` erases sample ``b`` (see the module docstring for the three passes); ``a_ptr`` is ``p``."""
    b = tl.program_id(0).to(tl.int64)
    hw = height * width
    src_base = a_ptr + b * stride_b
    dst_base = b * hw
    seed_keep = tl.load(seed_ptr)
    seed_draws = tl.load(seed_ptr + 1)

    # The per-sample draws (factor, chosen, hh, ww): one Philox call at counter b + 1; counter 0 holds the
    # batch's factor.
    u_factor, u_chosen, u_hh, u_ww = tl.rand4x(seed_draws, b + 1)
    if not PER_SAMPLE_FACTOR:
        u_factor, _, _, _ = tl.rand4x(seed_draws, b * 0)
    factor = min_factor + factor_range * u_factor
    chosen = u_chosen < p_erase

    # Pass 1: maximum (first position on ties) and minimum, lane-wise then across lanes.
    lane_max = tl.full((BLOCK,), float("-inf"), COMPUTE)
    lane_arg = tl.zeros((BLOCK,), tl.int32)
    lane_min = tl.full((BLOCK,), float("inf"), COMPUTE)
    for start in range(0, hw, BLOCK):
        offs, mask, _rows, _cols, x = _load_tile(
            src_base, start, hw, width, stride_h, stride_w, BLOCK, CONTIGUOUS, COMPUTE
        )
        better = mask & (x > lane_max)
        lane_arg = tl.where(better, offs, lane_arg)
        lane_max = tl.where(better, x, lane_max)
        lane_min = tl.where(mask, tl.minimum(lane_min, x), lane_min)
    peak_value = tl.max(lane_max, axis=0)
    peak = tl.min(tl.where(lane_max == peak_value, lane_arg, hw), axis=0)
    low = tl.min(lane_min, axis=0)
    threshold = peak_value - (peak_value - low) * factor.to(COMPUTE)

    # Pass 2: row and column extents of P = {a > thr} (empty P gives negative extents).
    lane_ymin = tl.full((BLOCK,), height, tl.int32)
    lane_ymax = tl.full((BLOCK,), -1, tl.int32)
    lane_xmin = tl.full((BLOCK,), width, tl.int32)
    lane_xmax = tl.full((BLOCK,), -1, tl.int32)
    for start in range(0, hw, BLOCK):
        offs, mask, rows, cols, x = _load_tile(
            src_base, start, hw, width, stride_h, stride_w, BLOCK, CONTIGUOUS, COMPUTE
        )
        hit = mask & (x > threshold)
        lane_ymin = tl.where(hit, tl.minimum(lane_ymin, rows), lane_ymin)
        lane_ymax = tl.where(hit, tl.maximum(lane_ymax, rows), lane_ymax)
        lane_xmin = tl.where(hit, tl.minimum(lane_xmin, cols), lane_xmin)
        lane_xmax = tl.where(hit, tl.maximum(lane_xmax, cols), lane_xmax)
    extent_y = tl.max(lane_ymax, axis=0) - tl.min(lane_ymin, axis=0)
    extent_x = tl.max(lane_xmax, axis=0) - tl.min(lane_xmin, axis=0)
    # Only extents >= 0 can pass the span test, so C-style integer division is floor division here.
    upper_y = extent_y // 2
    upper_x = extent_x // 2
    span_y = upper_y - min_size_y
    span_x = upper_x - min_size_x
    erase = chosen & (span_y > 0) & (span_x > 0)
    half_y = tl.minimum(min_size_y + (u_hh * tl.maximum(span_y, 0).to(tl.float32)).to(tl.int32), upper_y - 1)
    half_x = tl.minimum(min_size_x + (u_ww * tl.maximum(span_x, 0).to(tl.float32)).to(tl.int32), upper_x - 1)
    # A sample that is not erased gets empty half-sizes, hence an empty box.
    half_y = tl.where(erase, half_y, 0)
    half_x = tl.where(erase, half_x, 0)
    cy = peak // width
    cx = peak % width

    # Pass 3: squash, region, keep mask.
    scale = tl.cast(scale_hi, COMPUTE) + tl.cast(scale_lo, COMPUTE)
    shift = tl.cast(shift_hi, COMPUTE) + tl.cast(shift_lo, COMPUTE)
    for start in range(0, hw, BLOCK):
        offs, mask, rows, cols, x = _load_tile(
            src_base, start, hw, width, stride_h, stride_w, BLOCK, CONTIGUOUS, COMPUTE
        )
        squashed = scale * x + shift
        near = (tl.abs(rows - cy) < half_y) & (tl.abs(cols - cx) < half_x)
        region = near & (x > threshold)
        keep_draw = tl.rand(seed_keep, dst_base + offs)
        dropped = region & (keep_draw.to(COMPUTE) < squashed)
        out = tl.where(dropped, 0.0, squashed)
        tl.store(out_ptr + dst_base + offs, out.to(out_ptr.dtype.element_ty), mask=mask)
        tl.store(region_ptr + dst_base + offs, region, mask=mask)
        tl.store(kept_ptr + dst_base + offs, ~dropped, mask=mask)


def draw_seeds(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The kernel's two Philox seeds, a ``(2,)`` int64 tensor drawn on ``p``'s device (no host sync)."""
    return torch.randint(0, _SEED_HIGH, (2,), generator=generator, device=p.device)


@torch.library.custom_op("lowcam::attentive_erasing_fwd", mutates_args=())
def attentive_erasing_triton(
    p: torch.Tensor,
    seeds: torch.Tensor,
    erase_prob: float,
    min_factor: float,
    max_factor: float,
    min_size_y: int,
    min_size_x: int,
    scale: float,
    shift: float,
    per_sample_factor: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton forward of attentive erasing in training mode, without autograd (arguments validated).

    The caller (:mod:`lowcam.erasing`) resolves the parameters for the map size, draws ``seeds`` with
    :func:`draw_seeds` and attaches the gradient ``scale · kept``.

    Args:
        p: activation map ``(B, 1, H, W)`` in ``[0, 1]``, float16, bfloat16, float32 or float64, any strides.
        seeds: ``(2,)`` int64 seeds on ``p``'s device.
        erase_prob: probability that a sample is erased.
        min_factor: lower bound of the threshold factor.
        max_factor: upper bound of the threshold factor.
        min_size_y: smallest half-size of the box along the rows, in pixels.
        min_size_x: smallest half-size of the box along the columns, in pixels.
        scale: slope of the squashing.
        shift: offset of the squashing.
        per_sample_factor: one factor per sample instead of one per batch.

    Returns:
        ``(erased, region, kept)``, contiguous ``(B, 1, H, W)``: the output in ``p``'s dtype, the bool
        region and the bool mask of the pixels that were not dropped.
    """
    _common.check_supported("p", p)
    batch, _, height, width = p.shape
    hw = height * width
    erased = torch.empty(p.shape, dtype=p.dtype, device=p.device)
    region = torch.empty(p.shape, dtype=torch.bool, device=p.device)
    kept = torch.empty(p.shape, dtype=torch.bool, device=p.device)
    stride_b, _, stride_h, stride_w = p.stride()
    scale_hi, scale_lo = _common.split_float(scale)
    shift_hi, shift_lo = _common.split_float(shift)
    compute = tl.float64 if _common.accumulate_dtype(p.dtype) == torch.float64 else tl.float32
    with _common.device_of(p):
        _erasing_kernel[(batch,)](
            p,
            seeds,
            erased,
            region,
            kept,
            height,
            width,
            stride_b,
            stride_h,
            stride_w,
            erase_prob,
            min_factor,
            max_factor - min_factor,
            min_size_y,
            min_size_x,
            scale_hi,
            scale_lo,
            shift_hi,
            shift_lo,
            BLOCK=_common.block_size(hw, maximum=_BLOCK_MAX),
            CONTIGUOUS=_common.plane_contiguous(stride_h, stride_w, width),
            PER_SAMPLE_FACTOR=per_sample_factor,
            COMPUTE=compute,
            enable_fp_fusion=False,  # round scale * p + shift and the threshold as the torch backend does
        )
    return erased, region, kept


@attentive_erasing_triton.register_fake
def _(p: torch.Tensor, *args: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    erased = torch.empty(p.shape, dtype=p.dtype, device=p.device)
    region = torch.empty(p.shape, dtype=torch.bool, device=p.device)
    return erased, region, torch.empty_like(region)
