r"""Fused area loss: reads ``p`` and only the selected class-map channels, in one kernel.

With ``idx`` the ``(B, K)`` indices of the penalised classes, ranked by the component (the kernels take
them as given; :mod:`lowcam.ops` imports nothing from the components), the per-sample loss is

.. math::

    L_b = \frac{1}{HW}\sum_{i,j} p_{b,0,i,j} + \sum_{k<K} \frac{1}{HW}\sum_{i,j} f_{b,\,idx_{b,k},\,i,j}.

Forward grid ``(K + 1, B)``: program ``(0, b)`` averages ``p_b``, program ``(k + 1, b)`` averages channel
``idx[b, k]`` of ``f_b``, reading it in place through its strides (no gathered copy); each writes one
partial mean, and the ``K + 1`` partials of a sample are summed in the accumulation dtype (deterministic,
no atomics). The reduction over the batch is the component's, on the ``(B,)`` result.

Backward, with ``g_b`` the gradient of :math:`L_b`: ``dL/dp_b = g_b / HW`` everywhere, returned as a
broadcast (expanded) view of ``B`` values, and ``dL/df`` is zero except on the ``K`` selected channels of
each sample, where it is ``g_b / HW``: the gradient buffer is zero-filled and the kernel writes only the
selected channels.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from lowcam.ops import _common  # the host-side helpers, as _common.<name>
from lowcam.ops._common import strided_offset

__all__ = ["AreaLossFunction", "area_loss_triton"]

_BLOCK_MAX = 1024


@triton.jit  # type: ignore[untyped-decorator]
def _plane_mean(  # type: ignore[no-untyped-def]
    ptr, hw, width, stride_h, stride_w, BLOCK: tl.constexpr, CONTIGUOUS: tl.constexpr, FP64: tl.constexpr
):
    """Mean of one ``H × W`` plane starting at ``ptr``, accumulated in float32 (float64)."""
    acc = tl.zeros((BLOCK,), dtype=tl.float64 if FP64 else tl.float32)
    for start in range(0, hw, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < hw
        src = offs if CONTIGUOUS else strided_offset(offs // width, offs % width, stride_h, stride_w)
        x = tl.load(ptr + src, mask=mask, other=0.0)
        acc += x.to(acc.dtype)
    return tl.sum(acc, axis=0) / hw


@triton.jit  # type: ignore[untyped-decorator]
def _area_fwd_kernel(  # type: ignore[no-untyped-def]
    p_ptr,
    f_ptr,
    idx_ptr,
    partial_ptr,
    hw,
    width,
    n_terms,
    p_stride_b,
    p_stride_h,
    p_stride_w,
    f_stride_b,
    f_stride_c,
    f_stride_h,
    f_stride_w,
    idx_stride_b,
    idx_stride_k,
    BLOCK: tl.constexpr,
    P_CONTIGUOUS: tl.constexpr,
    F_CONTIGUOUS: tl.constexpr,
    FP64: tl.constexpr,
):
    """Program ``(b, 0)``: mean of ``p_b``; program ``(b, k + 1)``: mean of ``f[b, idx[b, k]]``."""
    b = tl.program_id(0).to(tl.int64)  # the batch on grid axis 0, whose limit is 2**31 - 1, not 65535
    term = tl.program_id(1)
    if term == 0:
        mean = _plane_mean(
            p_ptr + b * p_stride_b, hw, width, p_stride_h, p_stride_w, BLOCK, P_CONTIGUOUS, FP64
        )
    else:
        channel = tl.load(idx_ptr + b * idx_stride_b + (term - 1) * idx_stride_k).to(tl.int64)
        plane = f_ptr + b * f_stride_b + channel * f_stride_c
        mean = _plane_mean(plane, hw, width, f_stride_h, f_stride_w, BLOCK, F_CONTIGUOUS, FP64)
    tl.store(partial_ptr + b * n_terms + term, mean)


@triton.jit  # type: ignore[untyped-decorator]
def _area_bwd_kernel(  # type: ignore[no-untyped-def]
    grad_ptr,
    idx_ptr,
    gout_ptr,
    hw,
    width,
    n_selected,
    g_stride_b,
    g_stride_c,
    g_stride_h,
    g_stride_w,
    idx_stride_b,
    idx_stride_k,
    gout_stride_b,
    BLOCK: tl.constexpr,
    CONTIGUOUS: tl.constexpr,
):
    """Program ``(b, k)``: fill channel ``idx[b, k]`` of the (zeroed) gradient with ``g_b / HW``."""
    b = tl.program_id(0).to(tl.int64)
    k = tl.program_id(1)
    channel = tl.load(idx_ptr + b * idx_stride_b + k * idx_stride_k).to(tl.int64)
    value = tl.load(gout_ptr + b * gout_stride_b) / hw
    plane = grad_ptr + b * g_stride_b + channel * g_stride_c
    for start in range(0, hw, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < hw
        dst = offs if CONTIGUOUS else strided_offset(offs // width, offs % width, g_stride_h, g_stride_w)
        fill = tl.zeros((BLOCK,), dtype=value.dtype) + value
        tl.store(plane + dst, fill.to(grad_ptr.dtype.element_ty), mask=mask)


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    """The row-major strides of ``shape``."""
    strides = [1] * len(shape)
    for dim in range(len(shape) - 2, -1, -1):
        strides[dim] = strides[dim + 1] * max(shape[dim + 1], 1)
    return tuple(strides)


@torch.library.custom_op("lowcam::area_loss_fwd", mutates_args=())
def _area_fwd(p: torch.Tensor, class_maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-sample area loss ``(B,)`` in the accumulation dtype; ``index`` is ``(B, K)`` int64."""
    batch, _, height, width = p.shape
    hw = height * width
    n_terms = index.shape[1] + 1
    acc = _common.accumulate_dtype(p.dtype, class_maps.dtype)
    partial = torch.empty((batch, n_terms), dtype=acc, device=p.device)
    p_sb, _, p_sh, p_sw = p.stride()
    f_sb, f_sc, f_sh, f_sw = class_maps.stride()
    with _common.device_of(p):
        _area_fwd_kernel[(batch, n_terms)](
            p,
            class_maps,
            index,
            partial,
            hw,
            width,
            n_terms,
            p_sb,
            p_sh,
            p_sw,
            f_sb,
            f_sc,
            f_sh,
            f_sw,
            index.stride(0),
            index.stride(1),
            BLOCK=_common.block_size(hw, maximum=_BLOCK_MAX),
            P_CONTIGUOUS=_common.plane_contiguous(p_sh, p_sw, width),
            F_CONTIGUOUS=_common.plane_contiguous(f_sh, f_sw, width),
            FP64=acc == torch.float64,
        )
    return partial.sum(dim=1)


@_area_fwd.register_fake
def _(p: torch.Tensor, class_maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return p.new_empty(p.shape[0], dtype=_common.accumulate_dtype(p.dtype, class_maps.dtype))


@torch.library.custom_op("lowcam::area_loss_bwd_class_maps", mutates_args=())
def _area_bwd_class_maps(
    grad_out: torch.Tensor, index: torch.Tensor, size: list[int], stride: list[int], dtype: torch.dtype
) -> torch.Tensor:
    """Gradient of the class maps, ``size`` with ``stride``: zeros, and ``grad_out[b] / HW`` on the
    selected channels ``index[b]``."""
    batch, _, height, width = size
    hw = height * width
    grad = torch.empty_strided(size, stride, dtype=dtype, device=grad_out.device).zero_()
    g_sb, g_sc, g_sh, g_sw = grad.stride()
    if index.shape[1] > 0:
        with _common.device_of(grad):
            _area_bwd_kernel[(batch, index.shape[1])](
                grad,
                index,
                grad_out,
                hw,
                width,
                index.shape[1],
                g_sb,
                g_sc,
                g_sh,
                g_sw,
                index.stride(0),
                index.stride(1),
                grad_out.stride(0),
                BLOCK=_common.block_size(hw, maximum=_BLOCK_MAX),
                CONTIGUOUS=_common.plane_contiguous(g_sh, g_sw, width),
            )
    return grad


@_area_bwd_class_maps.register_fake
def _(
    grad_out: torch.Tensor, index: torch.Tensor, size: list[int], stride: list[int], dtype: torch.dtype
) -> torch.Tensor:
    return torch.empty_strided(size, stride, dtype=dtype, device=grad_out.device)


class AreaLossFunction(torch.autograd.Function):
    """Autograd glue: ``forward(p, class_maps, index) -> (B,)`` per-sample losses; no gradient to ``index``.

    Only ``index`` is saved: the gradients depend on the inputs' shapes, strides and dtypes, not on their
    values.
    """

    @staticmethod
    def forward(ctx: Any, p: torch.Tensor, class_maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.p_shape, ctx.p_dtype = p.shape, p.dtype
        ctx.f_shape, ctx.f_dtype = class_maps.shape, class_maps.dtype
        # The gradient keeps the class maps' layout when it is a dense one (contiguous or channels-last).
        dense = class_maps.is_contiguous() or class_maps.is_contiguous(memory_format=torch.channels_last)
        ctx.f_stride = class_maps.stride() if dense else _contiguous_strides(class_maps.shape)
        per_sample: torch.Tensor = _area_fwd(p, class_maps, index)
        return per_sample

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (index,) = ctx.saved_tensors
        grad_p = grad_f = None
        if ctx.needs_input_grad[0]:
            hw = ctx.p_shape[2] * ctx.p_shape[3]
            grad_p = (grad_out / hw).to(ctx.p_dtype).view(-1, 1, 1, 1).expand(ctx.p_shape)
        if ctx.needs_input_grad[1]:
            grad_f = _area_bwd_class_maps(grad_out, index, list(ctx.f_shape), list(ctx.f_stride), ctx.f_dtype)
        return grad_p, grad_f, None


def area_loss_triton(p: torch.Tensor, class_maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Triton backend of :func:`lowcam.area_loss`, before the reduction (arguments already validated).

    Args:
        p: activation map ``(B, 1, H, W)``.
        class_maps: class maps ``(B, C, H, W)``, any strides (channels-last included).
        index: ``(B, K)`` int64 indices of the penalised class maps, ranked by the component; ``K = 0``
            leaves the class term out (pass detached class maps then, so that they take no part in the
            graph).

    Returns:
        The per-sample losses ``(B,)`` in the accumulation dtype (float32, float64 if either map is
        float64); the component reduces them and casts to the output dtype.
    """
    _common.check_supported("p", p)
    _common.check_supported("class_maps", class_maps)
    per_sample: torch.Tensor = AreaLossFunction.apply(p, class_maps, index)
    return per_sample
