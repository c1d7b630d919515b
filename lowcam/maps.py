r"""Helpers that turn a CAM-style head into the maps lowcam's losses and erasing expect.

**The map contract.** Every lowcam component that takes an activation map ``p`` (the losses, attentive
erasing, the evaluator's masks) expects a single-channel ``(B, 1, H, W)`` floating tensor with values in
``[0, 1]`` — a per-pixel probability, such as the sigmoid output of ORNet's generator. The class maps of
the area loss are summed into the loss as they are, so they should be non-negative and bounded too. A raw
class activation map (CAM) is neither: its values are unbounded scores of either sign, which gives the
weighted entropy loss NaN (the logarithm of a negative number) and the area loss an unbounded negative
minimum. Shapes and dtypes are checked; values are not, since that would need a host sync.

A CAM-style classifier (a backbone, global average pooling and one linear layer) gets valid maps in three
steps, all differentiable, on the device and without a host sync:

1. :func:`cam_class_maps`: the class maps ``cams[b, c] = Σ_k W[c, k] · features[b, k]`` from the last
   feature map and the linear layer's weight (torchvision backbones expose both: e.g. ``model.layer4``'s
   output through :func:`torchvision.models.feature_extraction.create_feature_extractor`, and
   ``model.fc.weight``);
2. :func:`normalize_map`: each map to ``[0, 1]``, by min–max (as the "wsoleval" evaluation protocol
   normalises score maps) or by its peak;
3. :func:`select_class_map`: the ``(B, 1, H, W)`` map of one class per sample (the label during training,
   the predicted class at inference).

The feature map's resolution is the map's resolution: take it at stride 8 or 16 (e.g. a ResNet's
``layer3``, or ``layer4`` with its stride removed) rather than 32, where a 224 × 224 image gives 7 × 7
maps on which attentive erasing's pixel ``min_size`` erases nothing (give it as a fraction then).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import torch

from lowcam._checks import check_shape, check_tensor, compute_dtype
from lowcam.metrics.scoremap import _min_max

NormalizeMethod: TypeAlias = Literal["minmax", "peak"]
_METHODS = ("minmax", "peak")


def cam_class_maps(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Class activation maps of a global-average-pooling classifier (Zhou et al., CVPR 2016).

    .. math::

        \mathrm{cams}_{b,c,i,j} = \sum_k W_{c,k}\, \mathrm{features}_{b,k,i,j} \;(+\, \mathrm{bias}_c),

    so that the spatial mean of ``cams[b, c]`` equals the classifier's logit ``c`` for sample ``b`` when
    the classifier is ``linear(GAP(features))`` (pass ``bias`` for the equality with a biased layer; CAM
    itself leaves the bias out, which shifts a map without changing its shape). The result is a raw CAM:
    normalise it with :func:`normalize_map` before giving it to a loss.

    Args:
        features: the last feature map ``(B, K, H, W)``, floating.
        weight: the linear layer's weight ``(C, K)``.
        bias: its bias ``(C,)``, or ``None`` (CAM's convention).

    Returns:
        ``(B, C, H, W)`` in the promoted dtype of ``features`` and ``weight`` (bf16 features with a float32
        head give float32 maps); under autocast, the autocast dtype, as for ``torch.nn.functional.linear``.

    Raises:
        TypeError: a tensor argument is not a floating tensor.
        ValueError: wrong ranks, or ``K`` (or ``C``) mismatched between the arguments.

    Example:
        >>> features = torch.rand(2, 8, 7, 7)
        >>> fc = torch.nn.Linear(8, 5)
        >>> cams = cam_class_maps(features, fc.weight, fc.bias)
        >>> cams.shape
        torch.Size([2, 5, 7, 7])
        >>> torch.allclose(cams.mean(dim=(2, 3)), fc(features.mean(dim=(2, 3))), atol=1e-6)
        True
    """
    check_tensor("features", features)
    check_shape("features", features, "(B, K, H, W)", 4)
    check_tensor("weight", weight)
    check_shape("weight", weight, "(C, K)", 2)
    if weight.shape[1] != features.shape[1]:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not match features of shape "
            f"{tuple(features.shape)}: expected K={features.shape[1]} input features, got {weight.shape[1]}"
        )
    dtype = torch.promote_types(features.dtype, weight.dtype)
    cams = torch.einsum("ck,bkhw->bchw", weight.to(dtype), features.to(dtype))
    if bias is not None:
        check_tensor("bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"bias must have shape (C,) = ({weight.shape[0]},), got shape {tuple(bias.shape)}"
            )
        cams = cams + bias.to(cams.dtype).view(1, -1, 1, 1)
    return cams


def select_class_map(class_maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The map of one class per sample: ``out[b, 0] = class_maps[b, classes[b]]``.

    Args:
        class_maps: ``(B, C, H, W)``, any dtype.
        classes: ``(B,)`` integer class indices in ``[0, C)`` on the maps' device (values are not checked:
            that would need a host sync; an index out of range is an indexing error of
            :func:`torch.gather`).

    Returns:
        ``(B, 1, H, W)``, the dtype of ``class_maps``; differentiable with respect to ``class_maps``.

    Raises:
        TypeError: ``classes`` is not an integer tensor.
        ValueError: wrong ranks, batch sizes that differ, or tensors on different devices.

    Example:
        >>> maps = torch.arange(12.0).view(2, 3, 1, 2)
        >>> select_class_map(maps, torch.tensor([2, 0])).flatten(1)
        tensor([[4., 5.],
                [6., 7.]])
    """
    check_tensor("class_maps", class_maps, floating=False)
    check_shape("class_maps", class_maps, "(B, C, H, W)", 4)
    check_tensor("classes", classes, floating=False)
    if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
        raise TypeError(f"classes must be an integer tensor, got {classes.dtype}")
    if classes.shape != (class_maps.shape[0],):
        raise ValueError(
            f"classes must have shape (B,) = ({class_maps.shape[0]},) to match class_maps of shape "
            f"{tuple(class_maps.shape)}, got shape {tuple(classes.shape)}"
        )
    if classes.device != class_maps.device:
        raise ValueError(f"classes is on {classes.device} but class_maps is on {class_maps.device}")
    batch, _, height, width = class_maps.shape
    index = classes.long().view(batch, 1, 1, 1).expand(batch, 1, height, width)
    return class_maps.gather(1, index)


def normalize_map(
    maps: torch.Tensor, method: NormalizeMethod = "minmax", *, eps: float = 1e-12
) -> torch.Tensor:
    r"""Normalise each ``H × W`` map to ``[0, 1]``, differentiably and without a host sync.

    - ``"minmax"`` (the "wsoleval" protocol's normalisation of score maps, and the pipeline's CAM
      baseline): :math:`(m - \min m) / (\max m - \min m)`.
    - ``"peak"``: :math:`\max(m, 0) / \max m`, the negative part clipped; the peak becomes 1 and 0 stays
      0, so a map's zero level keeps its meaning.

    A map whose denominator is not above ``eps`` (a constant map, or for ``"peak"`` a map with no positive
    value) becomes all zeros, as does a map holding a NaN or an infinite value — the convention of
    :func:`lowcam.metrics.prepare_scoremap`. For ``"minmax"``, a map whose range is within 64 units in the
    last place of its largest magnitude counts as constant too (rounding noise is not stretched to
    ``[0, 1]``), and a range that overflows the dtype (e.g. ``±3e38`` in float32) is computed from halved
    values, so every output lies in ``[0, 1]``. The statistics are taken over the last two dimensions, for
    every sample and channel. Math runs in float32 (float64 for float64 input); the result has the input's
    dtype. Gradients flow through the maps and their extremes (the scale is not detached).

    Args:
        maps: ``(B, C, H, W)`` floating maps, e.g. raw CAMs (``C = 1`` for an activation map).
        method: ``"minmax"`` (default) or ``"peak"``.
        eps: the smallest denominator that counts as a non-constant map.

    Returns:
        ``maps``' shape and dtype, values in ``[0, 1]``.

    Raises:
        TypeError: ``maps`` is not a floating tensor.
        ValueError: ``maps`` is not 4-D, or an unknown ``method``.

    Example:
        >>> cams = torch.tensor([[[[-2.0, 0.0], [2.0, 6.0]]]])
        >>> normalize_map(cams).flatten()
        tensor([0.0000, 0.2500, 0.5000, 1.0000])
        >>> normalize_map(cams, "peak").flatten()
        tensor([0.0000, 0.0000, 0.3333, 1.0000])
        >>> normalize_map(torch.full((1, 1, 2, 2), 3.0)).flatten()  # constant: zeros
        tensor([0., 0., 0., 0.])
    """
    check_tensor("maps", maps)
    check_shape("maps", maps, "(B, C, H, W)", 4)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    x = maps.to(compute_dtype(maps.dtype))
    high = x.amax(dim=(2, 3), keepdim=True)
    low = x.amin(dim=(2, 3), keepdim=True)
    finite = torch.isfinite(low) & torch.isfinite(high)  # False for NaN too
    if method == "minmax":
        out = _min_max(x, low, high, finite & ((high - low) > eps))
    else:
        valid = finite & (high > eps)
        scale = torch.where(valid, high, torch.ones_like(high))
        out = torch.where(valid, x.clamp_min(0.0) / scale, torch.zeros_like(x))
    return out.to(maps.dtype)


__all__ = [
    "ClassActivationMapper",
    "NormalizeMethod",
    "cam_class_maps",
    "class_activation_maps",
    "normalize_map",
    "select_class_map",
]

# The extractor lives in its own module and uses the helpers above; lowcam.maps re-exports it.
from lowcam.extractor import ClassActivationMapper, class_activation_maps  # noqa: E402
