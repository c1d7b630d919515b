r"""Fused weighted entropy loss: loss and gradient in one pass over the map.

For every element :math:`x` of a map ``p`` of shape ``(B, 1, H, W)`` (math in float32, or float64 for
float64 input), with :math:`g = \exp(-(x-\mu)^2 / 2\sigma^2)`, :math:`w = g + \beta`,
:math:`a = x + \varepsilon`, :math:`c = 1 - x + \varepsilon`:

.. math::

    \ell = -\big[x \log a + (1-x) \log c\big]\, w, \qquad
    \frac{d\ell}{dx} = -\Big[\log a + \frac{x}{a} - \log c - \frac{1-x}{c}\Big]\, w
        \;-\; \Big[-\big(x \log a + (1-x)\log c\big)\Big]\, g\, \frac{x-\mu}{\sigma^2},

the last term dropped when the weight is detached. The forward kernel writes either the loss map
(``per_element``, for ``reduction="none"``) or one partial sum per (sample, block), summed per sample
(the component reduces those), and, only when ``p`` needs a gradient, :math:`d\ell/dx` into a new float32
(float64) buffer. The backward kernel multiplies that buffer by the
incoming gradient (per element, or per sample for the reduced forms) and casts to ``p``'s dtype, so no
gradient is rounded to a half type before the loss scale is applied.

Launch grid: ``(cdiv(H·W, BLOCK), B)``; every program handles ``BLOCK`` pixels of one sample, so the
reduced forms need no atomics and are deterministic.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from lowcam.ops import _common  # the host-side helpers, as _common.<name>
from lowcam.ops._common import strided_offset

__all__ = ["WeightedEntropyFunction", "weighted_entropy_loss_triton"]

_BLOCK_MAX = 1024


@triton.jit  # type: ignore[untyped-decorator]
def _entropy_fwd_kernel(  # type: ignore[no-untyped-def]
    p_ptr,
    loss_ptr,
    grad_ptr,
    partial_ptr,
    width,
    hw,
    stride_b,
    stride_h,
    stride_w,
    n_blocks,
    mu_hi,
    mu_lo,
    inv_hi,
    inv_lo,
    beta_hi,
    beta_lo,
    eps,
    BLOCK: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
    PER_ELEMENT: tl.constexpr,
    NEED_GRAD: tl.constexpr,
    DETACH_WEIGHT: tl.constexpr,
    FP64: tl.constexpr,
):
    """One block of one sample: the loss (map or partial sum) and, if asked, ``dℓ/dx``."""
    b = tl.program_id(0).to(tl.int64)  # the batch on grid axis 0, whose limit is 2**31 - 1, not 65535
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < hw
    if CONTIGUOUS:
        src = b * stride_b + offs
    else:
        src = b * stride_b + strided_offset(offs // width, offs % width, stride_h, stride_w)
    x = tl.load(p_ptr + src, mask=mask, other=0.5)
    if FP64:
        x = x.to(tl.float64)
        mu = tl.cast(mu_hi, tl.float64) + tl.cast(mu_lo, tl.float64)
        inv_two_sigma_sq = tl.cast(inv_hi, tl.float64) + tl.cast(inv_lo, tl.float64)
        beta = tl.cast(beta_hi, tl.float64) + tl.cast(beta_lo, tl.float64)
        epsilon = tl.cast(eps, tl.float64)
    else:
        x = x.to(tl.float32)
        mu = mu_hi + mu_lo
        inv_two_sigma_sq = inv_hi + inv_lo
        beta = beta_hi + beta_lo
        epsilon = eps
    diff = x - mu
    gauss = tl.exp(-(diff * diff) * inv_two_sigma_sq)
    weight = gauss + beta
    one_minus = 1.0 - x
    a = x + epsilon
    c = one_minus + epsilon
    log_a = tl.log(a)
    log_c = tl.log(c)
    entropy = -(x * log_a + one_minus * log_c)
    loss = entropy * weight
    dst = b * hw + offs
    if PER_ELEMENT:
        tl.store(loss_ptr + dst, loss.to(loss_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(partial_ptr + b * n_blocks + blk, tl.sum(tl.where(mask, loss, 0.0), axis=0))
    if NEED_GRAD:
        grad = -(log_a + x / a - log_c - one_minus / c) * weight
        if not DETACH_WEIGHT:
            grad = grad - entropy * gauss * diff * (2.0 * inv_two_sigma_sq)
        tl.store(grad_ptr + dst, grad, mask=mask)


@triton.jit  # type: ignore[untyped-decorator]
def _entropy_bwd_kernel(  # type: ignore[no-untyped-def]
    local_ptr,
    gout_ptr,
    out_ptr,
    hw,
    gout_stride_b,
    gout_stride_h,
    gout_stride_w,
    width,
    BLOCK: tl.constexpr,
    PER_ELEMENT: tl.constexpr,
):
    """``grad_p = dℓ/dx · grad_out`` (per element, or the sample's scalar), cast to ``p``'s dtype."""
    b = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < hw
    local = tl.load(local_ptr + b * hw + offs, mask=mask, other=0.0)
    if PER_ELEMENT:
        src = b * gout_stride_b + strided_offset(offs // width, offs % width, gout_stride_h, gout_stride_w)
        g = tl.load(gout_ptr + src, mask=mask, other=0.0)
    else:
        g = tl.load(gout_ptr + b * gout_stride_b)
    grad = local * g.to(local.dtype)
    tl.store(out_ptr + b * hw + offs, grad.to(out_ptr.dtype.element_ty), mask=mask)


def _blocks(hw: int) -> tuple[int, int]:
    """``(BLOCK, number of blocks per sample)`` for maps of ``hw`` pixels."""
    block = _common.block_size(hw, maximum=_BLOCK_MAX)
    return block, triton.cdiv(hw, block)


@torch.library.custom_op("lowcam::weighted_entropy_fwd", mutates_args=())
def _entropy_fwd(
    p: torch.Tensor,
    mu: float,
    sigma: float,
    beta: float,
    eps: float,
    detach_weight: bool,
    per_element: bool,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel; ``eps`` is the constant inside both logarithms.

    Returns:
        ``(loss, local_grad)``: ``loss`` is the map ``(B, 1, H, W)`` in ``p``'s dtype when
        ``per_element``, else the per-sample sums ``(B,)`` in the accumulation dtype; ``local_grad`` is
        ``dℓ/dp`` ``(B, 1, H, W)`` in the accumulation dtype, or an empty tensor when not ``need_grad``.
    """
    batch, _, height, width = p.shape
    hw = height * width
    acc = _common.accumulate_dtype(p.dtype)
    block, n_blocks = _blocks(hw)
    loss = p.new_empty(p.shape) if per_element else p.new_empty(0)
    partial = p.new_empty((batch, n_blocks), dtype=acc) if not per_element else p.new_empty(0, dtype=acc)
    grad = p.new_empty(p.shape, dtype=acc) if need_grad else p.new_empty(0, dtype=acc)
    stride_b, _, stride_h, stride_w = p.stride()
    mu_hi, mu_lo = _common.split_float(mu)
    inv_hi, inv_lo = _common.split_float(1.0 / (2.0 * sigma * sigma))
    beta_hi, beta_lo = _common.split_float(beta)
    with _common.device_of(p):
        buffers = (p, loss, grad, partial)
        layout = (width, hw, stride_b, stride_h, stride_w, n_blocks)
        constants = (mu_hi, mu_lo, inv_hi, inv_lo, beta_hi, beta_lo, eps)
        _entropy_fwd_kernel[(batch, n_blocks)](
            *buffers,
            *layout,
            *constants,
            BLOCK=block,
            CONTIGUOUS=_common.plane_contiguous(stride_h, stride_w, width),
            PER_ELEMENT=per_element,
            NEED_GRAD=need_grad,
            DETACH_WEIGHT=detach_weight,
            FP64=acc == torch.float64,
        )
    return (loss if per_element else partial.sum(dim=1)), grad


@_entropy_fwd.register_fake
def _(p: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    per_element, need_grad = args[-2:]  # (mu, sigma, beta, eps, detach_weight, per_element, need_grad)
    acc = _common.accumulate_dtype(p.dtype)
    loss = p.new_empty(p.shape) if per_element else p.new_empty(p.shape[0], dtype=acc)
    grad = p.new_empty(p.shape, dtype=acc) if need_grad else p.new_empty(0, dtype=acc)
    return loss, grad


@torch.library.custom_op("lowcam::weighted_entropy_bwd", mutates_args=())
def _entropy_bwd(local_grad: torch.Tensor, grad_out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``local_grad · grad_out`` in ``dtype``; ``grad_out`` is ``(B,)`` (per sample) or ``(B, 1, H, W)``."""
    batch, _, height, width = local_grad.shape
    hw = height * width
    block, n_blocks = _blocks(hw)
    out = torch.empty(local_grad.shape, dtype=dtype, device=local_grad.device)
    per_element = grad_out.dim() == 4
    if per_element:
        gs_b, _, gs_h, gs_w = grad_out.stride()
    else:
        gs_b, gs_h, gs_w = grad_out.stride(0), 0, 0
    with _common.device_of(local_grad):
        _entropy_bwd_kernel[(batch, n_blocks)](
            local_grad, grad_out, out, hw, gs_b, gs_h, gs_w, width, BLOCK=block, PER_ELEMENT=per_element
        )
    return out


@_entropy_bwd.register_fake
def _(local_grad: torch.Tensor, grad_out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(local_grad.shape, dtype=dtype, device=local_grad.device)


class WeightedEntropyFunction(torch.autograd.Function):
    """Autograd glue: the forward op saves ``dℓ/dp``; the backward op scales it by the incoming gradient.

    ``forward(p, mu, sigma, beta, eps, detach_weight, per_element, need_grad)`` returns the loss map
    ``(B, 1, H, W)`` in ``p``'s dtype (``per_element``) or the per-sample sums ``(B,)`` in the accumulation
    dtype. ``need_grad`` is decided by the caller (``p.requires_grad`` and grad mode on): inside
    ``forward`` grad mode is always off, and ``ctx.needs_input_grad`` ignores ``torch.no_grad()``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        p: torch.Tensor,
        mu: float,
        sigma: float,
        beta: float,
        eps: float,
        detach_weight: bool,
        per_element: bool,
        need_grad: bool,
    ) -> torch.Tensor:
        outputs: tuple[torch.Tensor, torch.Tensor] = _entropy_fwd(
            p, mu, sigma, beta, eps, detach_weight, per_element, need_grad
        )
        loss, local_grad = outputs
        if need_grad:
            ctx.save_for_backward(local_grad)
        ctx.p_dtype = p.dtype
        return loss

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        (local_grad,) = ctx.saved_tensors
        return (_entropy_bwd(local_grad, grad_out, ctx.p_dtype),) + (None,) * 7


def weighted_entropy_loss_triton(
    p: torch.Tensor,
    *,
    mu: float,
    sigma: float,
    beta: float,
    eps: float,
    detach_weight: bool,
    per_element: bool,
) -> torch.Tensor:
    """Triton backend of :func:`lowcam.weighted_entropy_loss`, before the reduction (arguments validated).

    Args:
        p: activation map ``(B, 1, H, W)``, float16, bfloat16, float32 or float64, any strides.
        mu: centre of the Gaussian weight.
        sigma: width of the Gaussian weight, ``> 0``.
        beta: constant added to the weight.
        eps: the constant inside both logarithms (the component's ``ENTROPY_EPS``).
        detach_weight: stop the gradient through the weight.
        per_element: return the loss map instead of per-sample sums.

    Returns:
        ``per_element``: the loss map ``(B, 1, H, W)`` in ``p``'s dtype; otherwise the per-sample sums of
        the loss map, ``(B,)`` in the accumulation dtype (float32, float64 for float64 input), which the
        component reduces (``lowcam._checks.reduce`` with ``count = B·H·W``).
    """
    _common.check_supported("p", p)
    need_grad = p.requires_grad and torch.is_grad_enabled()
    loss: torch.Tensor = WeightedEntropyFunction.apply(
        p, mu, sigma, beta, eps, detach_weight, per_element, need_grad
    )
    return loss
