r"""ORNet's attentive erasing: randomly drops pixels inside the most activated region of a map.

Everything about erasing lives here: the parameters (:class:`ErasingParams`, validated once), the torch
implementation (:func:`attentive_erasing_torch`), its opaque CPU custom op for ``torch.compile``, and the
one backward pass every backend shares. The Triton kernel (:mod:`lowcam.ops.erasing`) only computes a
forward pass from the resolved parameters; this module wraps it with the same backward.

Each implementation returns ``(erased, region, kept)`` without autograd, and :class:`_ThroughKept` attaches
the gradient :math:`\partial\,\mathrm{erased}/\partial p = \mathrm{scale}\cdot\mathrm{kept}`. The method is
specified in ``docs/method.md`` (section "Attentive erasing").
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import nn

from lowcam._backend import Backend, check_backend, resolve_backend
from lowcam._checks import check_map, check_unit_interval, compute_dtype, params_or_keywords

__all__ = ["AttentiveErasing", "ErasingOutput", "ErasingParams", "attentive_erasing"]


class ErasingOutput(NamedTuple):
    """Result of :func:`attentive_erasing`.

    Attributes:
        erased: the squashed map with dropped pixels, ``(B, 1, H, W)``, the input's dtype.
        region: the bool mask ``(B, 1, H, W)`` of the pixels eligible for dropping.
    """

    erased: torch.Tensor
    region: torch.Tensor

    @property
    def was_erased(self) -> torch.Tensor:
        """``(B,)`` bool, on the map's device: whether each sample's region is non-empty.

        Computed on the device when read (no host sync); ``out.was_erased.sum()`` is the number of erased
        samples as a 0-d tensor. A sample that was not chosen, or whose half-size range was empty (see
        ``min_size``), is ``False``. All ``False`` in eval mode.
        """
        return self.region.flatten(1).any(dim=1)


class ErasingArgs(NamedTuple):
    """The parameters of one call, resolved for its map size: what the implementations and ops take.

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


@dataclass(frozen=True)
class ErasingParams:
    """The hyper-parameters of attentive erasing, validated once at construction.

    Attributes:
        erase_prob: probability that a sample is erased, in ``[0, 1]`` (reference 0.5).
        min_factor: lower bound of the threshold factor, in ``[0, 1]`` (reference 0).
        max_factor: upper bound of the threshold factor, in ``[min_factor, 1]`` (reference 0.5).
        min_size: smallest half-size of the erased box: an ``int >= 0`` in map pixels (reference 4), or a
            ``float`` in ``(0, 1)``, a fraction of the map side, resolved per axis at call time as
            ``max(1, floor(min_size * side + 0.5))`` (nearest pixel, halves up, at least 1) with
            ``side = H`` for the rows and ``W`` for the columns. ``4 / 56`` reproduces the reference's 4
            pixels on its 56 × 56 maps and stays usable on 7 × 7 and 14 × 14 maps (1 pixel),
            where the pixel default erases nothing (a sample is erased only if both extents of its
            most activated region, last minus first row and column, are at least ``2 · min_size + 2``).
        scale: slope of the squashing, in ``[0, 1]`` (reference 0.6).
        shift: offset of the squashing, in ``[0, 1]`` (reference 0.2); ``scale + shift <= 1``.
        per_sample_factor: one threshold factor per sample instead of one per batch (reference ``False``).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: a value outside its range, ``min_factor > max_factor`` or ``scale + shift > 1``.

    Example:
        >>> ErasingParams(min_size=4 / 56).resolve(56, 7)
        ErasingArgs(erase_prob=0.5, min_factor=0.0, max_factor=0.5, min_size_y=4, min_size_x=1, scale=0.6, shift=0.2, per_sample_factor=False)
    """

    erase_prob: float = 0.5
    min_factor: float = 0.0
    max_factor: float = 0.5
    min_size: int | float = 4
    scale: float = 0.6
    shift: float = 0.2
    per_sample_factor: bool = False

    def __post_init__(self) -> None:
        check_unit_interval("erase_prob", self.erase_prob)
        check_unit_interval("min_factor", self.min_factor)
        check_unit_interval("max_factor", self.max_factor)
        if self.min_factor > self.max_factor:
            raise ValueError(
                f"min_factor must be <= max_factor, got min_factor={self.min_factor}, max_factor={self.max_factor}"
            )
        _check_min_size(self.min_size)
        check_unit_interval("shift", self.shift)
        check_unit_interval("scale", self.scale)
        if self.scale + self.shift > 1.0:
            raise ValueError(
                "scale + shift must be <= 1 so that scale * p + shift is a drop probability, "
                f"got scale={self.scale}, shift={self.shift}"
            )
        if not isinstance(self.per_sample_factor, bool):
            raise TypeError(f"per_sample_factor must be a bool, got {type(self.per_sample_factor).__name__}")

    def min_sizes(self, height: int, width: int) -> tuple[int, int]:
        """``min_size`` in pixels for a map of ``height × width``: ``(rows, columns)``."""
        if isinstance(self.min_size, int):
            return self.min_size, self.min_size
        return _fraction_to_pixels(self.min_size, height), _fraction_to_pixels(self.min_size, width)

    def resolve(self, height: int, width: int) -> ErasingArgs:
        """The :class:`ErasingArgs` of a call on ``height × width`` maps."""
        min_size_y, min_size_x = self.min_sizes(height, width)
        return ErasingArgs(
            float(self.erase_prob),
            float(self.min_factor),
            float(self.max_factor),
            min_size_y,
            min_size_x,
            float(self.scale),
            float(self.shift),
            self.per_sample_factor,
        )


_FIELDS = tuple(f.name for f in fields(ErasingParams))


def _keywords(arguments: dict[str, Any]) -> dict[str, Any]:
    """The :class:`ErasingParams` fields among a call's ``locals()``."""
    return {name: arguments[name] for name in _FIELDS}


def _check_min_size(min_size: object) -> None:
    if isinstance(min_size, bool) or not isinstance(min_size, (int, float)):
        raise TypeError(
            f"min_size must be an int (pixels) or a float in (0, 1) (a fraction of the map side), "
            f"got {type(min_size).__name__}"
        )
    if isinstance(min_size, int) and min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size} (an int is in pixels)")
    if isinstance(min_size, float) and not 0.0 < min_size < 1.0:
        raise ValueError(
            f"min_size given as a float is a fraction of the map side and must be in (0, 1), got {min_size}; "
            "pass an int for pixels"
        )


def _fraction_to_pixels(fraction: float, side: int) -> int:
    return max(1, math.floor(fraction * side + 0.5))


# --- the torch backend ------------------------------------------------------------------------


class ErasingDraws(NamedTuple):
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


def draw_erasing_randoms(
    p: torch.Tensor, args: ErasingArgs, generator: torch.Generator | None
) -> ErasingDraws:
    """Draw the random numbers of the torch backend, in a fixed order, from ``generator``."""
    batch = p.shape[0]
    device = p.device
    factor_u = torch.rand(batch if args.per_sample_factor else 1, device=device, generator=generator)
    factor = (args.min_factor + (args.max_factor - args.min_factor) * factor_u).expand(batch)
    chosen = torch.rand(batch, device=device, generator=generator) < args.erase_prob
    half_size = torch.rand(batch, 2, device=device, dtype=torch.float64, generator=generator)
    keep = torch.rand(p.shape, device=device, dtype=torch.float32, generator=generator)
    return ErasingDraws(factor, chosen, half_size, keep)


def erasing_region(p: torch.Tensor, draws: ErasingDraws, min_size_y: int, min_size_x: int) -> torch.Tensor:
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
    p: torch.Tensor, args: ErasingArgs, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The torch backend in training mode, without autograd (arguments already validated).

    Returns:
        ``(erased, region, kept)``: the output in ``p``'s dtype, the bool region and the float32 multiplier
        ``kept`` (``0.0`` where a pixel was dropped, ``1.0`` elsewhere), so that
        ``erased = (scale * p + shift) * kept``; ``kept`` reuses the buffer of the keep uniforms.
    """
    p = p.detach()
    draws = draw_erasing_randoms(p, args, generator)
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
def _attentive_erasing_op(
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
    args = ErasingArgs(
        erase_prob, min_factor, max_factor, min_size_y, min_size_x, scale, shift, per_sample_factor
    )
    return attentive_erasing_torch(p, args, None)


@_attentive_erasing_op.register_fake
def _(p: torch.Tensor, *args: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.empty(p.shape, dtype=p.dtype, device=p.device),
        torch.empty(p.shape, dtype=torch.bool, device=p.device),
        torch.empty(p.shape, dtype=torch.float32, device=p.device),
    )


class _ThroughKept(torch.autograd.Function):
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


def _erase(
    p: torch.Tensor,
    params: ErasingParams,
    *,
    training: bool,
    generator: torch.Generator | None,
    backend: Backend,
) -> ErasingOutput:
    """Attentive erasing with validated parameters: the body of the function and of the module."""
    check_map("p", p)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if not training:
        return ErasingOutput(p, torch.zeros_like(p, dtype=torch.bool))
    args = params.resolve(p.shape[2], p.shape[3])
    if resolve_backend(backend, p) == "triton":
        from lowcam.ops.erasing import attentive_erasing_triton, draw_seeds

        seeds = draw_seeds(p, generator)
        erased, region, kept = attentive_erasing_triton(p.detach(), seeds, *args)
    elif p.device.type == "cpu" and torch.compiler.is_compiling():
        erased, region, kept = _attentive_erasing_op(p.detach(), *args)
    else:
        erased, region, kept = attentive_erasing_torch(p, args, generator)
    return ErasingOutput(_ThroughKept.apply(p, erased, kept, args.scale), region)


def attentive_erasing(
    p: torch.Tensor,
    *,
    erase_prob: float = 0.5,
    min_factor: float = 0.0,
    max_factor: float = 0.5,
    min_size: int | float = 4,
    scale: float = 0.6,
    shift: float = 0.2,
    per_sample_factor: bool = False,
    params: ErasingParams | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
    backend: Backend = "auto",
) -> ErasingOutput:
    r"""Attentive erasing of ORNet: drop random pixels inside each map's most activated region.

    In training mode, for the whole batch:

    1. ``factor ~ U(min_factor, max_factor)``, one draw per batch (per sample if ``per_sample_factor``).
    2. Each sample is chosen with probability ``erase_prob``.
    3. For a chosen sample, with its first arg-max ``(cy, cx)`` in row-major order:
       :math:`thr = \max p - (\max p - \min p)\cdot factor`, :math:`P = \{p > thr\}`, its extents
       ``extent_y = max_y(P) - min_y(P)`` (likewise ``x``), half-sizes
       ``hh ~ U_int[min_size, extent_y // 2)``, ``ww ~ U_int[min_size, extent_x // 2)``; a sample whose
       range is empty on either axis is not erased (as in the reference). The region is
       :math:`P \cap \{|y-c_y| < hh\} \cap \{|x-c_x| < ww\}`.
    4. Every map is squashed: :math:`s = \mathrm{scale}\cdot p + \mathrm{shift}` (``[0.2, 0.8]``).
    5. :math:`keep \sim \mathrm{Bernoulli}(1 - s)` per pixel; the output is :math:`s \cdot keep` inside
       the region and :math:`s` outside (no rescaling). The gradient is ``scale * keep`` inside the region
       and ``scale`` outside.

    In eval mode (``training=False``) the map is returned unchanged with an all-``False`` region.

    **The map contract.** ``p`` is an activation map with values in ``[0, 1]``, e.g. a sigmoid output or a
    CAM normalised by :func:`lowcam.normalize_map`; ``scale * p + shift`` is then a drop probability. A raw
    CAM (unbounded scores) is not a valid input. Only the shape and dtype are checked (values would need a
    host sync).

    **A silent no-op is visible.** With the pixel default ``min_size=4`` a sample is erased only if both
    extents of its most activated region (last minus first row, and column) are at least 10 pixels, so on
    7 × 7 or 14 × 14 CAMs nothing or almost nothing is erased; give ``min_size`` as a fraction of the map side (e.g. ``4 / 56``, the reference's
    ratio) and check ``out.was_erased`` (a ``(B,)`` bool tensor on the device).

    Deviations from the reference code, both bug fixes: the reference never erases row 0 or column 0
    (its region test uses ``> 0`` on coordinates) and silently skips a sample whose region is a single
    pixel; lowcam does neither. All random numbers are drawn on the input's device from ``generator``
    (no NumPy, no host sync, no loop over the batch), so a generator seeded the same way gives the same
    output on the same device and backend. Under ``torch.compile(fullgraph=True)`` pass ``generator=None``
    (dynamo cannot trace a :class:`torch.Generator` argument) and seed with :func:`torch.manual_seed`. On
    CPU the compiled code runs the eager torch backend as one opaque op (inductor's CPU code for it
    is slower), so it draws exactly what eager draws; on CUDA inductor draws its own random numbers unless
    ``torch._inductor.config.fallback_random`` is set. Specification: ``docs/method.md``.

    Args:
        p: activation map ``(B, 1, H, W)`` with values in ``[0, 1]`` (see the map contract).
        erase_prob: probability that a sample is erased, in ``[0, 1]`` (reference 0.5).
        min_factor: lower bound of the threshold factor, in ``[0, 1]`` (reference 0).
        max_factor: upper bound of the threshold factor, in ``[0, 1]`` (reference 0.5).
        min_size: smallest half-size of the erased box: an ``int`` in pixels (reference 4) or a ``float``
            in ``(0, 1)``, a fraction of the map side resolved per axis as
            ``max(1, floor(min_size * side + 0.5))`` (see :class:`ErasingParams`).
        scale: slope of the squashing (reference 0.6).
        shift: offset of the squashing (reference 0.2); ``scale + shift <= 1``.
        per_sample_factor: draw the factor per sample instead of once per batch (reference ``False``).
        params: the hyper-parameters as one :class:`ErasingParams` instead of the seven keywords above.
        training: erase (``True``) or return the map unchanged (``False``).
        generator: a :class:`torch.Generator` on ``p``'s device, or ``None`` for the default one.
        backend: ``"auto"`` (the torch backend), ``"torch"`` or ``"triton"``; each draws its random
            numbers its own way, so the same seed gives the same output only within one backend.

    Returns:
        :class:`ErasingOutput` ``(erased, region)``: the output map in ``p``'s dtype and the bool region,
        both ``(B, 1, H, W)``; ``.was_erased`` gives the ``(B,)`` erased samples.

    Raises:
        TypeError: ``p`` is not a floating tensor, or an argument has the wrong type.
        ValueError: ``p`` is not ``(B, 1, H, W)``; a probability or factor outside ``[0, 1]``;
            ``min_factor > max_factor``; ``min_size`` negative or a float outside ``(0, 1)``;
            ``scale + shift > 1``; an unknown ``backend``.

    Example:
        >>> p = torch.zeros(1, 1, 32, 32)
        >>> p[..., 8:24, 8:24] = 1.0
        >>> g = torch.Generator().manual_seed(0)
        >>> out = attentive_erasing(p, erase_prob=1.0, generator=g)
        >>> bool(out.region.any()), bool(out.region[..., :8, :].any()), out.was_erased.tolist()
        (True, False, [True])
        >>> float(out.erased.amax()), float(out.erased.amin())
        (0.800000011920929, 0.0)
    """
    chosen = params_or_keywords(ErasingParams, params, _keywords(locals()))
    check_backend(backend)
    return _erase(p, chosen, training=training, generator=generator, backend=backend)


class AttentiveErasing(nn.Module):
    """Module form of :func:`attentive_erasing`; erases in training mode, identity in eval mode.

    The hyper-parameters are validated once, here, into ``params`` (an :class:`ErasingParams`; to
    change one later, assign ``dataclasses.replace(module.params, ...)``).

    Args:
        erase_prob: probability that a sample is erased (reference 0.5).
        min_factor: lower bound of the threshold factor (reference 0).
        max_factor: upper bound of the threshold factor (reference 0.5).
        min_size: smallest half-size of the erased box, ``int`` pixels (reference 4) or a ``float``
            fraction of the map side in ``(0, 1)``.
        scale: slope of the squashing (reference 0.6).
        shift: offset of the squashing (reference 0.2).
        per_sample_factor: one factor per sample instead of per batch (reference ``False``).
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        params: the hyper-parameters as one :class:`ErasingParams` instead of the seven keywords above.

    Shape:
        - Input ``p``: ``(B, 1, H, W)``, values in ``[0, 1]``.
        - Output: :class:`ErasingOutput` ``(erased, region)``, both ``(B, 1, H, W)``.

    Example:
        >>> erasing = AttentiveErasing(erase_prob=1.0)
        >>> p = torch.rand(4, 1, 28, 28)
        >>> erased, region = erasing(p, generator=torch.Generator().manual_seed(1))
        >>> bool((erased[~region] == (0.6 * p + 0.2)[~region]).all())
        True
        >>> erasing.eval()(p).erased is p
        True
    """

    def __init__(
        self,
        erase_prob: float = 0.5,
        min_factor: float = 0.0,
        max_factor: float = 0.5,
        min_size: int | float = 4,
        scale: float = 0.6,
        shift: float = 0.2,
        per_sample_factor: bool = False,
        backend: Backend = "auto",
        *,
        params: ErasingParams | None = None,
    ) -> None:
        super().__init__()
        self.params = params_or_keywords(ErasingParams, params, _keywords(locals()))
        self.backend: Backend = check_backend(backend)

    def forward(self, p: torch.Tensor, generator: torch.Generator | None = None) -> ErasingOutput:
        return _erase(p, self.params, training=self.training, generator=generator, backend=self.backend)

    def extra_repr(self) -> str:
        fields = ", ".join(f"{name}={value}" for name, value in asdict(self.params).items())
        return f"{fields}, backend={self.backend!r}"
