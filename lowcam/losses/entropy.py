"""ORNet's weighted entropy loss: pushes activation values away from an uncertain level ``mu``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from lowcam._backend import Backend, check_backend, resolve_backend
from lowcam._checks import (
    Reduction,
    check_map,
    check_positive,
    check_reduction,
    compute_dtype,
    loss_dtype,
    params_or_keywords,
    reduce,
)

__all__ = ["ENTROPY_EPS", "EntropyParams", "WeightedEntropyLoss", "weighted_entropy_loss"]

#: ``torch.finfo(torch.float32).eps``, the epsilon the reference adds inside both logarithms.
ENTROPY_EPS = 1.1920928955078125e-07

_FLOAT32_MAX = 3.4028234663852886e38
#: The smallest ``sigma`` with ``1 / (2 sigma²)`` a finite float32 number.
_SIGMA_MIN = math.sqrt(0.5 / _FLOAT32_MAX)


@dataclass(frozen=True)
class EntropyParams:
    """The hyper-parameters of the weighted entropy loss, validated once at construction.

    Attributes:
        mu: centre of the Gaussian weight (reference 0.5).
        sigma: width of the Gaussian weight, ``> 0`` (reference 0.1).
        beta: constant added to the weight, ``>= 0`` (reference 0).
        detach_weight: stop the gradient through the weight (reference ``False``).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``sigma <= 0`` or so small that ``1 / (2 sigma²)`` overflows float32, ``beta < 0``.

    Example:
        >>> EntropyParams(sigma=0.2)
        EntropyParams(mu=0.5, sigma=0.2, beta=0.0, detach_weight=False)
    """

    mu: float = 0.5
    sigma: float = 0.1
    beta: float = 0.0
    detach_weight: bool = False

    def __post_init__(self) -> None:
        for name, value in (("mu", self.mu), ("beta", self.beta)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a float, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        check_positive("sigma", self.sigma)
        if not math.isfinite(self.sigma):
            raise ValueError(f"sigma must be a finite number > 0, got {self.sigma}")
        # The weight's exponent is scaled by 1 / (2σ²); it must be a finite float32 number (the kernels
        # and the float32 torch backend multiply by it), else 0 · inf = NaN at p = mu.
        sigma = self.sigma
        if sigma * sigma == 0.0 or 0.5 / (sigma * sigma) > _FLOAT32_MAX:
            raise ValueError(
                f"sigma must be >= {_SIGMA_MIN:.3g} so that 1 / (2 sigma^2) is a finite float32 number, "
                f"got {sigma}"
            )
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not isinstance(self.detach_weight, bool):
            raise TypeError(f"detach_weight must be a bool, got {type(self.detach_weight).__name__}")


def _weighted_entropy_loss_torch(
    p: torch.Tensor, mu: float, sigma: float, beta: float, detach_weight: bool
) -> torch.Tensor:
    """The torch backend: the *negated* per-element loss ``-ℓ(p)`` in float32 or wider, ``(B, 1, H, W)``.

    The caller applies the minus sign after the reduction (one scalar instead of a pass over the map each
    way): ``loss = -reduce(_weighted_entropy_loss_torch(...), reduction)``.
    """
    x = p.to(compute_dtype(p.dtype))
    one_minus = 1.0 - x
    # exp(-(x - mu)² / (2σ²)) with the division folded into one multiplication; beta = 0 adds nothing.
    weight = torch.exp((x - mu).square() * (-0.5 / (sigma * sigma)))
    if beta != 0.0:
        weight = weight + beta
    if detach_weight:
        weight = weight.detach()
    entropy = x * torch.log(x + ENTROPY_EPS) + one_minus * torch.log(one_minus + ENTROPY_EPS)
    return entropy * weight


def weighted_entropy_loss(
    p: torch.Tensor,
    *,
    mu: float = 0.5,
    sigma: float = 0.1,
    beta: float = 0.0,
    detach_weight: bool = False,
    params: EntropyParams | None = None,
    reduction: Reduction = "mean",
    backend: Backend = "auto",
) -> torch.Tensor:
    r"""Weighted binary entropy of an activation map (ORNet, eq. 6).

    For every element :math:`p` of the map

    .. math::

        w(p) = \exp\left(-\frac{(p-\mu)^2}{2\sigma^2}\right) + \beta, \qquad
        \ell(p) = -\big[p \log(p+\varepsilon) + (1-p)\log(1-p+\varepsilon)\big]\, w(p),

    with :math:`\varepsilon` = float32 machine epsilon (``1.1920929e-07``). Because of :math:`\varepsilon`, the
    loss at exactly 0 or 1 is :math:`-\log(1+\varepsilon)\,w \approx -10^{-7} w`, a hair below zero, as in
    the reference. The weight peaks at ``mu``, so
    uncertain pixels near ``mu`` are pushed towards 0 or 1 while confident ones are left alone. The
    reference reduction divides the sum by :math:`B \cdot H \cdot W`, i.e. ``reduction="mean"``.

    **The map contract.** ``p`` must hold probabilities in ``[0, 1]``: a sigmoid output (as the
    generator's map head gives) or a CAM normalised by :func:`lowcam.normalize_map`. A raw CAM is not a
    valid input: below 0 the logarithm is NaN and above 1 the loss is unbounded. Only the shape and dtype
    are checked (``(B, 1, H, W)``, floating); values are not, because checking them would synchronise
    with the device. Specification: ``docs/method.md``.

    Args:
        p: activation map of shape ``(B, 1, H, W)``, any floating dtype, values in ``[0, 1]``.
        mu: centre of the Gaussian weight (reference 0.5).
        sigma: width of the Gaussian weight, ``> 0`` (reference 0.1).
        beta: constant added to the weight, ``>= 0`` (reference 0).
        detach_weight: stop the gradient through ``w(p)`` (the reference lets it flow: ``False``).
        params: the hyper-parameters as one :class:`EntropyParams` instead of the four keywords above.
        reduction: ``"none"`` returns the loss *per element*, shape ``(B, 1, H, W)`` (unlike
            :func:`lowcam.area_loss`, whose natural unit is the sample); ``"mean"`` (the reference: the sum
            over all ``B·H·W`` elements divided by their number) and ``"sum"`` a scalar.
        backend: ``"auto"`` (the torch backend), ``"torch"`` or ``"triton"`` (see :mod:`lowcam.ops`).

    Returns:
        The loss in ``p``'s dtype, computed in float32; under autocast the float32 result (as torch's own
        losses, which autocast runs in float32). An empty batch (``B = 0``) gives what torch's losses
        give: NaN for ``"mean"``, 0 for ``"sum"``, an empty ``(0, 1, H, W)`` tensor for ``"none"``.

    Raises:
        TypeError: ``p`` is not a floating tensor.
        ValueError: ``p`` is not ``(B, 1, H, W)``, ``sigma <= 0`` or so small that ``1 / (2 sigma²)``
            overflows float32 (``sigma < 3.8e-20``), ``beta < 0``, an unknown reduction or backend.

    Example:
        >>> p = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)
        >>> weighted_entropy_loss(p, reduction="none").flatten().abs().round(decimals=4)
        tensor([0.0000, 0.6931, 0.0000])
        >>> round(float(weighted_entropy_loss(p)), 4)
        0.231
    """
    keywords = {"mu": mu, "sigma": sigma, "beta": beta, "detach_weight": detach_weight}
    chosen = params_or_keywords(EntropyParams, params, keywords)
    check_reduction(reduction)
    return _entropy(p, chosen, reduction, backend)


def _entropy(p: torch.Tensor, params: EntropyParams, reduction: Reduction, backend: Backend) -> torch.Tensor:
    """The loss with validated parameters: the body of the function and of the module."""
    check_map("p", p, allow_empty_batch=True)
    mu, sigma, beta, detach_weight = params.mu, params.sigma, params.beta, params.detach_weight
    out_dtype = loss_dtype(p.dtype, p.device)
    if p.shape[0] > 0 and resolve_backend(backend, p) == "triton":
        from lowcam.ops.entropy import weighted_entropy_loss_triton

        per_element = reduction == "none"
        values = weighted_entropy_loss_triton(
            p,
            mu=mu,
            sigma=sigma,
            beta=beta,
            eps=ENTROPY_EPS,
            detach_weight=detach_weight,
            per_element=per_element,
        )
        # per_element: the loss map, already in p's dtype; otherwise per-sample sums of the B·H·W terms.
        return reduce(values, reduction, count=p.numel()).to(out_dtype)
    negated = _weighted_entropy_loss_torch(p, mu, sigma, beta, detach_weight)
    return (-reduce(negated, reduction)).to(out_dtype)


class WeightedEntropyLoss(nn.Module):
    """Module form of :func:`weighted_entropy_loss`; holds the hyper-parameters.

    Args:
        mu: centre of the Gaussian weight (reference 0.5).
        sigma: width of the Gaussian weight (reference 0.1).
        beta: constant added to the weight (reference 0).
        detach_weight: stop the gradient through the weight (reference ``False``).
        reduction: ``"none"``, ``"mean"`` (reference) or ``"sum"``.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        params: the hyper-parameters as one :class:`EntropyParams` instead of the four keywords above.

    The hyper-parameters are validated once, here, into ``params`` (an :class:`EntropyParams`).

    Shape:
        - Input ``p``: ``(B, 1, H, W)``.
        - Output: scalar, or ``(B, 1, H, W)`` for ``reduction="none"``.

    Example:
        >>> loss = WeightedEntropyLoss()
        >>> p = torch.full((2, 1, 4, 4), 0.5, requires_grad=True)
        >>> value = loss(p)
        >>> round(float(value.detach()), 4)
        0.6931
        >>> value.backward()
    """

    def __init__(
        self,
        mu: float = 0.5,
        sigma: float = 0.1,
        beta: float = 0.0,
        detach_weight: bool = False,
        reduction: Reduction = "mean",
        backend: Backend = "auto",
        *,
        params: EntropyParams | None = None,
    ) -> None:
        super().__init__()
        keywords = {"mu": mu, "sigma": sigma, "beta": beta, "detach_weight": detach_weight}
        self.params = params_or_keywords(EntropyParams, params, keywords)
        check_reduction(reduction)
        self.reduction: Literal["none", "mean", "sum"] = reduction
        self.backend: Backend = check_backend(backend)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return _entropy(p, self.params, self.reduction, self.backend)

    def extra_repr(self) -> str:
        fields = ", ".join(f"{name}={value}" for name, value in asdict(self.params).items())
        return f"{fields}, reduction={self.reduction!r}, backend={self.backend!r}"
