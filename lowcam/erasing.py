r"""ORNet's attentive erasing: randomly drops pixels inside the most activated region of a map.

The parameters (:class:`ErasingParams`, validated once), the function and the module live here. The
implementations live in :mod:`lowcam.ops`, as for every component: the torch backend, its opaque CPU
custom op for ``torch.compile`` and the one backward pass every backend shares in
:mod:`lowcam.ops.erasing_torch`, the Triton kernel in :mod:`lowcam.ops.erasing`. Each takes the
parameters resolved for the map size and returns ``(erased, region, kept)`` without autograd; the
shared backward attaches :math:`\partial\,\mathrm{erased}/\partial p = \mathrm{scale}\cdot\mathrm{kept}`.
The method is specified in ``docs/method.md`` (section "Attentive erasing").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from lowcam._backend import Backend, check_backend, resolve_backend
from lowcam._checks import check_map, check_unit_interval, params_or_keywords

if TYPE_CHECKING:
    from lowcam.ops.erasing_torch import ErasingCall

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
        >>> ErasingParams(min_size=4 / 56).min_sizes(56, 7)
        (4, 1)
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

    def _resolve(self, height: int, width: int) -> ErasingCall:
        """The plain numbers of a call on ``height × width`` maps, as the backends take them."""
        from lowcam.ops.erasing_torch import ErasingCall  # lowcam.ops is imported lazily

        min_size_y, min_size_x = self.min_sizes(height, width)
        return ErasingCall(
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
    from lowcam.ops.erasing_torch import ThroughKept, attentive_erasing_cpu_op, attentive_erasing_torch

    args = params._resolve(p.shape[2], p.shape[3])
    if resolve_backend(backend, p) == "triton":
        from lowcam.ops.erasing import attentive_erasing_triton, draw_seeds

        seeds = draw_seeds(p, generator)
        erased, region, kept = attentive_erasing_triton(p.detach(), seeds, *args)
    elif p.device.type == "cpu" and torch.compiler.is_compiling():
        erased, region, kept = attentive_erasing_cpu_op(p.detach(), *args)
    else:
        erased, region, kept = attentive_erasing_torch(p, args, generator)
    return ErasingOutput(ThroughKept.apply(p, erased, kept, args.scale), region)


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
