"""ORNet's area loss: keeps the activation map and the top-ranked class maps small."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lowcam._backend import Backend, check_backend, resolve_backend
from lowcam._checks import (
    Reduction,
    check_int,
    check_map,
    check_reduction,
    check_same_sizes,
    check_shape,
    check_tensor,
    compute_dtype,
    loss_dtype,
    params_or_keywords,
    reduce,
)

__all__ = ["AreaLoss", "AreaLossParams", "area_loss"]


@dataclass(frozen=True)
class AreaLossParams:
    """The hyper-parameters of the area loss, validated once at construction.

    Attributes:
        topk: one past the last penalised rank, an ``int >= 0`` (reference 25); ``0`` drops the class term.
        skip: the number of top classes left out, ``< topk`` (reference 3; ignored when ``topk = 0``).

    Raises:
        TypeError: an argument is not an ``int``.
        ValueError: a negative value, or ``skip >= topk > 0``.

    Example:
        >>> AreaLossParams(topk=3, skip=1)
        AreaLossParams(topk=3, skip=1)
    """

    topk: int = 25
    skip: int = 3

    def __post_init__(self) -> None:
        check_int("topk", self.topk)
        check_int("skip", self.skip)
        if self.topk > 0 and self.skip >= self.topk:
            raise ValueError(
                "skip must be < topk (the classes ranked skip..topk-1 are penalised), "
                f"got skip={self.skip}, topk={self.topk}"
            )


def _check_area_inputs(p: torch.Tensor, class_maps: torch.Tensor, logits: torch.Tensor, topk: int) -> None:
    check_map("p", p, allow_empty_batch=True)
    check_tensor("class_maps", class_maps)
    check_shape("class_maps", class_maps, "(B, C, H, W)", 4)
    check_tensor("logits", logits, floating=False)
    if logits.dtype == torch.bool or logits.is_complex():
        raise TypeError(f"logits must be real scores (any float or integer dtype), got {logits.dtype}")
    check_shape("logits", logits, "(B, C)", 2)
    for name, tensor in (("class_maps", class_maps), ("logits", logits)):
        if tensor.device != p.device:
            raise ValueError(f"{name} is on {tensor.device} but p is on {p.device}; expected one device")
    check_same_sizes("class_maps", class_maps, (0, 2, 3), "p", p, (0, 2, 3))
    check_same_sizes("logits", logits, (0, 1), "class_maps", class_maps, (0, 1))
    classes = class_maps.shape[1]
    if topk > classes:
        raise ValueError(
            f"topk must be <= the number of classes C={classes}, got topk={topk}; with fewer classes than "
            f"the reference's 25, pass topk=min(25, C) = {classes} (every class below the skip best "
            "penalised) or topk=0 (the map term only)"
        )


def _ranked_classes(logits: torch.Tensor, topk: int, skip: int) -> torch.Tensor:
    """Indices ``(B, topk - skip)`` of the classes ranked ``skip .. topk-1`` by ``logits`` (no gradient).

    The one ranking of both backends; ``topk = 0`` gives ``(B, 0)``. Ties follow :func:`torch.topk`.
    """
    if topk == 0:
        return torch.empty((logits.shape[0], 0), dtype=torch.int64, device=logits.device)
    return torch.topk(logits.detach(), topk, dim=1).indices[:, skip:]


def _area_loss_torch(p: torch.Tensor, class_maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-sample area loss ``(B,)`` in float32 (or float64): the torch backend every kernel matches.

    ``index`` holds the ``(B, K)`` penalised classes of :func:`_ranked_classes`. Only those channels are read, so the forward work scales with ``topk - skip`` rather than
    with the number of classes.
    """
    dtype = compute_dtype(torch.promote_types(p.dtype, class_maps.dtype))
    per_sample = p.to(dtype).mean(dim=(1, 2, 3))
    if index.shape[1] == 0:
        return per_sample
    batch, classes, height, width = class_maps.shape
    offsets = torch.arange(batch, device=class_maps.device).unsqueeze(1)
    if class_maps.is_contiguous() and class_maps.dtype == dtype:
        # Σ_k mean(f_k) = mean(Σ_k f_k): embedding_bag sums the selected rows of the (B·C, H·W) view
        # without copying them out, and its backward writes only those rows.
        rows = index + offsets * classes
        summed = F.embedding_bag(rows, class_maps.reshape(batch * classes, height * width), mode="sum")
        return per_sample + summed.mean(dim=1)
    selected = class_maps[offsets, index].flatten(2)
    return per_sample + selected.to(dtype).mean(dim=2).sum(dim=1)


def area_loss(
    p: torch.Tensor,
    class_maps: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
    *,
    topk: int = 25,
    skip: int = 3,
    params: AreaLossParams | None = None,
    reduction: Reduction = "mean",
    backend: Backend = "auto",
) -> torch.Tensor:
    r"""Area loss of ORNet: the mean activation plus the mean of the top-ranked class maps.

    With :math:`r_k(b)` the class of rank :math:`k` (0-based, by descending logit) of sample :math:`b`,

    .. math::

        L_b = \operatorname{mean}_{i,j} p_{b,0,i,j}
              + \sum_{k=\mathrm{skip}}^{\mathrm{topk}-1} \operatorname{mean}_{i,j} f_{b, r_k(b), i, j},
        \qquad L = \operatorname{mean}_b L_b.

    Each class term is divided by :math:`B \cdot H \cdot W` only, not by ``topk - skip`` (the reference).
    The ``skip`` best classes are left alone (they should light up); the next ones are pushed down. The
    logits only rank the classes: no gradient reaches them. Ranking by softmax or by logits gives the
    same order; ties follow :func:`torch.topk`. ``topk=0`` drops the class term (``skip`` is ignored).

    **The map contract.** ``p`` holds values in ``[0, 1]`` (a sigmoid output, or a CAM normalised by
    :func:`lowcam.normalize_map`), and so should the class maps: the loss pushes their means down, so a
    map that may go negative (a raw CAM, or unnormalised class maps of :func:`lowcam.cam_class_maps`)
    makes the loss unbounded below. ORNet's generator gives non-negative class maps only by its training;
    pass ``torch.relu(class_maps)`` or normalised maps where that is not guaranteed. Only shapes and
    dtypes are checked (no host sync). Specification: ``docs/method.md``.

    Args:
        p: activation map ``(B, 1, H, W)``, values in ``[0, 1]``.
        class_maps: the class maps ``(B, C, H, W)`` (the generator's, or :func:`lowcam.cam_class_maps`);
            ``None`` with ``topk=0``, the map term only.
        logits: ``(B, C)`` scores that rank the classes (in ORNet, the evaluator's output on the masked
            image); any dtype; ``None`` with ``topk=0``.
        topk: one past the last penalised rank, ``<= C`` (reference 25). With fewer than 25 classes pass
            ``topk=min(25, C)``; ``topk=0`` is the map term alone (then ``class_maps`` and ``logits`` may
            be left out).
        skip: the number of top classes left out, ``< topk`` (reference 3).
        params: the hyper-parameters as one :class:`AreaLossParams` instead of ``topk`` and ``skip``.
        reduction: ``"none"`` gives the loss *per sample*, :math:`L_b` of shape ``(B,)`` (the area loss is
            a loss on whole maps, unlike :func:`lowcam.weighted_entropy_loss`, which is per element);
            ``"mean"`` (reference: the mean of :math:`L_b` over the batch) or ``"sum"``.
        backend: ``"auto"`` (the torch backend), ``"torch"`` or ``"triton"``.

    Returns:
        The loss in the promoted dtype of ``p`` and ``class_maps``, computed in float32; under autocast
        the float32 result (as torch's own losses). An empty batch (``B = 0``) gives what torch's losses
        give: NaN for ``"mean"``, 0 for ``"sum"``, an empty ``(0,)`` tensor for ``"none"``.

    Raises:
        TypeError: a map is not floating, or an argument has the wrong type.
        ValueError: wrong ranks, mismatched batch/spatial/class sizes, ``topk > C``, ``skip >= topk``, an
            unknown reduction or backend.

    Example:
        >>> p = torch.full((2, 1, 3, 3), 0.5)
        >>> class_maps = torch.arange(4.0).view(1, 4, 1, 1).expand(2, 4, 3, 3)
        >>> logits = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
        >>> area_loss(p, class_maps, logits, topk=3, skip=1, reduction="none")
        tensor([3.5000, 3.5000])
    """
    chosen = params_or_keywords(AreaLossParams, params, {"topk": topk, "skip": skip})
    check_reduction(reduction)
    return _area(p, class_maps, logits, chosen, reduction, backend)


def _area(
    p: torch.Tensor,
    class_maps: torch.Tensor | None,
    logits: torch.Tensor | None,
    params: AreaLossParams,
    reduction: Reduction,
    backend: Backend,
) -> torch.Tensor:
    """The area loss with validated parameters: the body of the function and of the module."""
    topk, skip = params.topk, params.skip
    if class_maps is None or logits is None:
        if topk != 0 or class_maps is not None or logits is not None:
            raise ValueError(
                "class_maps and logits are needed unless topk=0 (the map term only, which takes neither); "
                f"got topk={topk}, class_maps={'a tensor' if class_maps is not None else None}, "
                f"logits={'a tensor' if logits is not None else None}"
            )
        check_map("p", p, allow_empty_batch=True)
        class_maps = p.new_zeros((p.shape[0], 0, p.shape[2], p.shape[3]))
        logits = p.new_zeros((p.shape[0], 0))
    _check_area_inputs(p, class_maps, logits, topk)
    out_dtype = loss_dtype(torch.promote_types(p.dtype, class_maps.dtype), p.device)
    index = _ranked_classes(logits, topk, skip)
    if topk == 0:
        class_maps = class_maps.detach()  # no class term: the class maps take no part in the graph
    if p.shape[0] > 0 and resolve_backend(backend, p, class_maps) == "triton":
        from lowcam.ops.area import area_loss_triton

        per_sample = area_loss_triton(p, class_maps, index)
    else:
        per_sample = _area_loss_torch(p, class_maps, index)
    return reduce(per_sample, reduction).to(out_dtype)


class AreaLoss(nn.Module):
    """Module form of :func:`area_loss`; holds the hyper-parameters and ``reduction``.

    The hyper-parameters are validated once, here, into ``params`` (an :class:`AreaLossParams`; to
    change one later, assign ``dataclasses.replace(module.params, ...)``).

    Args:
        topk: one past the last penalised rank (reference 25).
        skip: the number of top classes left out (reference 3).
        params: the hyper-parameters as one :class:`AreaLossParams` instead of ``topk`` and ``skip``.
        reduction: ``"none"``, ``"mean"`` (reference) or ``"sum"``.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Shape:
        - ``p``: ``(B, 1, H, W)``; ``class_maps``: ``(B, C, H, W)``; ``logits``: ``(B, C)``.
        - Output: scalar, or ``(B,)`` for ``reduction="none"``.

    Example:
        >>> loss = AreaLoss(topk=3, skip=1)
        >>> p = torch.rand(2, 1, 5, 5)
        >>> maps = torch.rand(2, 10, 5, 5, requires_grad=True)
        >>> loss(p, maps, torch.randn(2, 10)).backward()
        >>> int((maps.grad.flatten(2).amax(2) > 0).sum(1)[0])  # two class maps per sample get gradient
        2
    """

    def __init__(
        self,
        topk: int = 25,
        skip: int = 3,
        reduction: Reduction = "mean",
        backend: Backend = "auto",
        *,
        params: AreaLossParams | None = None,
    ) -> None:
        super().__init__()
        self.params = params_or_keywords(AreaLossParams, params, {"topk": topk, "skip": skip})
        check_reduction(reduction)
        self.reduction: Literal["none", "mean", "sum"] = reduction
        self.backend: Backend = check_backend(backend)

    def forward(
        self, p: torch.Tensor, class_maps: torch.Tensor | None = None, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        return _area(p, class_maps, logits, self.params, self.reduction, self.backend)

    def extra_repr(self) -> str:
        fields = ", ".join(f"{name}={value}" for name, value in asdict(self.params).items())
        return f"{fields}, reduction={self.reduction!r}, backend={self.backend!r}"
