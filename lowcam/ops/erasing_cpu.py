"""The torch backend of attentive erasing as one opaque operation, for ``torch.compile`` on CPU.

Inductor's CPU code for attentive erasing is several times slower than the eager torch backend (its
per-element random numbers and the bool reductions do not vectorize: 74 ms against 21 ms for eager at
64 × 1 × 224 × 224 on one core of the development machine, measured when this op was written; with it,
``benchmarks/results/cpu_ops.md`` has compiled erasing level with eager). Under ``torch.compile`` a CPU input
therefore goes through :func:`attentive_erasing_opaque`, a ``torch.library`` custom op whose
implementation is the eager backend: compiled code calls it as it is, and draws the same random numbers
as eager from the default generator. The op is tagged ``nondeterministic_seeded`` so that the compiler
neither merges two calls nor recomputes one in the backward pass.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

_TAGS: dict[str, Any] = (
    {"tags": (torch.Tag.nondeterministic_seeded,)}
    if "tags" in inspect.signature(torch.library.custom_op).parameters
    else {}
)


@torch.library.custom_op("lowcam::attentive_erasing_torch", mutates_args=(), **_TAGS)
def _erasing_op(
    a: torch.Tensor,
    p: float,
    min_factor: float,
    max_factor: float,
    min_size: int,
    scale: float,
    shift: float,
    per_sample_factor: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(erased, region, kept)`` of :func:`lowcam.erasing.erase_torch`, drawn from the default generator."""
    from lowcam.erasing import erase_torch

    return erase_torch(a, p, min_factor, max_factor, min_size, scale, shift, per_sample_factor, None)


@_erasing_op.register_fake
def _(
    a: torch.Tensor,
    p: float,
    min_factor: float,
    max_factor: float,
    min_size: int,
    scale: float,
    shift: float,
    per_sample_factor: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    erased = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    region = torch.empty(a.shape, dtype=torch.bool, device=a.device)
    kept = torch.empty(a.shape, dtype=torch.float32, device=a.device)
    return erased, region, kept


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    ctx.scale = inputs[5]
    ctx.save_for_backward(output[2])
    ctx.mark_non_differentiable(output[1], output[2])


def _backward(
    ctx: Any, grad_erased: torch.Tensor, grad_region: torch.Tensor | None, grad_kept: torch.Tensor | None
) -> tuple[Any, ...]:
    (kept,) = ctx.saved_tensors
    grad_a = torch.mul(grad_erased, kept).mul_(ctx.scale).to(grad_erased.dtype)
    return grad_a, None, None, None, None, None, None, None


_erasing_op.register_autograd(_backward, setup_context=_setup_context)


def attentive_erasing_opaque(
    a: torch.Tensor,
    p: float,
    min_factor: float,
    max_factor: float,
    min_size: int,
    scale: float,
    shift: float,
    per_sample_factor: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch backend of :func:`lowcam.attentive_erasing` (training mode) as one opaque op.

    Returns:
        ``(erased, region)``, as the eager torch backend computes them from the default generator.
    """
    erased, region, _ = _erasing_op(a, p, min_factor, max_factor, min_size, scale, shift, per_sample_factor)
    return erased, region
