"""Classifiers cut where WSOL needs them: :func:`lowcam.split_backbone` and :class:`lowcam.CamNet`.

:func:`split_backbone` cuts a classifier at its low-level feature, where ORNet's generator goes;
:class:`CamNet` turns it into a CAM network at a chosen output stride (the CAM baseline, and the model of a
CAM method trained with lowcam's losses).

ORNet's :class:`~lowcam.LowLevelActivationGenerator` reads a backbone's *stem* feature (stride 4: a
ResNet after its max pooling), and its stage 1 classifies ``body(stem(x) · p)`` with the rest of the
network. :func:`split_backbone` makes that cut for the two families WSOL code uses, without changing the
model (its modules are shared, not copied):

- a torchvision ResNet (any module with ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` …
  ``layer4`` and a linear ``fc``): the stem is ``conv1 → bn1 → relu → maxpool``;
- a timm classifier (a model with ``feature_info``, timm's convention for ``features_only``): the stem
  runs up to the last ``feature_info`` entry at ``low_level_stride``, the features are the rest of
  ``forward_features``, the classifier is ``get_classifier()``.

The cut is checked on a random image (drawn from a private generator: the global random state is not
touched; the weights and every module's mode are left as they were): the pieces in order must reproduce
the model's logits, and the head must be a linear layer on the spatially averaged final feature, so that
``cam_class_maps(features(stem(x)), classifier.weight)`` are the model's class activation maps. A model
the check refuses gets an error that says which part failed. Depends on torch only: torchvision and timm
are recognised by their attributes, never imported.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import nn

from lowcam.maps import cam_class_maps

__all__ = ["BackboneSplit", "CamNet", "split_backbone"]

_RESNET_STEM = ("conv1", "bn1", "relu", "maxpool")
_RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")
# timm's names of the modules of a classifier's head (after forward_features)
_HEAD_NAMES = frozenset({"global_pool", "head", "head_drop", "fc_norm", "fc", "classifier", "flatten"})


class BackboneSplit(NamedTuple):
    """A classifier cut at its low-level feature (:func:`split_backbone`).

    Attributes:
        stem: the image ``(B, 3, H, W)`` to the low-level feature
            ``(B, stem_channels, H / stem_stride, W / stem_stride)``: the generator's input.
        features: the low-level feature to the final feature map ``(B, num_features, h, w)``.
        classifier: the linear head on the final feature's spatial mean, so that
            ``classifier(features(stem(x)).mean((2, 3)))`` are the model's logits.
        stem_channels: channels of the low-level feature.
        stem_stride: its stride (the ``low_level_stride`` asked for).
        num_features: channels of the final feature.
        output_stride: the stride of the final feature, measured by the check (``None`` without it).
    """

    stem: nn.Sequential
    features: nn.Sequential
    classifier: nn.Linear
    stem_channels: int
    stem_stride: int
    num_features: int
    output_stride: int | None = None

    def body(self) -> nn.Sequential:
        """The classifier after the stem as one module: ``features``, global average pooling, flatten and
        ``classifier``, so that ``body()(stem(x))`` are the model's logits (ORNet's stage 1 feeds it
        ``stem(x) · p``). Its state-dict keys are ``<i>.…`` in that order (``features`` first)."""
        return nn.Sequential(*self.features, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), self.classifier)


def _ordered_modules(model: nn.Module, feature_names: set[str]) -> list[tuple[str, nn.Module]]:
    """Top-level children in registration order, an ``nn.Sequential`` child expanded one level when
    ``feature_info`` names its children (the way timm lists them for ``features_only``: ``blocks.1``, but
    ``layer1``, ``stages.0``)."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        expand = any(f.startswith(f"{name}.") for f in feature_names)
        if isinstance(child, nn.Sequential) and expand and name not in _HEAD_NAMES:
            out.extend((f"{name}.{sub}", module) for sub, module in child.named_children())
        else:
            out.append((name, child))
    return out


def _split_timm(model: nn.Module, info: list[dict[str, object]], low_level_stride: int) -> BackboneSplit:
    names = [f["module"] for f in info if f["reduction"] == low_level_stride]
    if not names:
        found = ", ".join(f"{f['module']}@{f['reduction']}" for f in info)
        raise ValueError(
            f"low_level_stride={low_level_stride}: no feature_info entry at that stride ({found})"
        )
    split = str(names[-1])
    channels = next(int(f["num_chs"]) for f in info if f["module"] == split)  # type: ignore[call-overload]
    modules = _ordered_modules(model, {str(f["module"]) for f in info})
    order = [name for name, _ in modules]
    if split not in order:
        raise ValueError(f"feature_info's {split!r} is not among {type(model).__name__}'s modules {order}")
    cut = order.index(split) + 1
    end = next((i for i, name in enumerate(order) if name in _HEAD_NAMES), len(order))
    get_classifier = getattr(model, "get_classifier", None)
    classifier = get_classifier() if callable(get_classifier) else None
    if not isinstance(classifier, nn.Linear):
        raise ValueError(
            f"{type(model).__name__}'s classifier is {type(classifier).__name__}, expected an nn.Linear"
        )
    return BackboneSplit(
        nn.Sequential(*(m for _, m in modules[:cut])),
        nn.Sequential(*(m for _, m in modules[cut:end])),
        classifier,
        channels,
        low_level_stride,
        int(getattr(model, "num_features", classifier.in_features)),
    )


def _split_resnet(model: nn.Module, low_level_stride: int) -> BackboneSplit:
    missing = [name for name in (*_RESNET_STEM, *_RESNET_LAYERS, "fc") if not hasattr(model, name)]
    if missing:
        raise ValueError(
            f"{type(model).__name__} is not a torchvision ResNet (missing {missing}) nor a timm model "
            "(no feature_info)"
        )
    if low_level_stride != 4:
        raise ValueError(f"low_level_stride={low_level_stride}: a ResNet's stem ends at stride 4")
    conv1, fc = model.conv1, model.fc
    if not isinstance(conv1, nn.Conv2d) or not isinstance(fc, nn.Linear):
        raise ValueError(f"{type(model).__name__}: conv1 must be an nn.Conv2d and fc an nn.Linear")
    return BackboneSplit(
        nn.Sequential(*(getattr(model, name) for name in _RESNET_STEM)),
        nn.Sequential(*(getattr(model, name) for name in _RESNET_LAYERS)),
        fc,
        conv1.out_channels,
        4,
        fc.in_features,
    )


def _check(model: nn.Module, parts: BackboneSplit, side: int) -> BackboneSplit:
    """Run ``model`` and ``parts`` on one random ``side``-pixel image (drawn from a private generator; every
    module's mode restored after); return ``parts`` with the measured channels and stride."""
    timm = getattr(model, "feature_info", None) is not None
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            param = next(model.parameters())
            image = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
            x = image.to(param.device, param.dtype)
            low = parts.stem(x)
            if low.shape[-1] * parts.stem_stride != side:
                raise ValueError(f"the stem's output has side {low.shape[-1]} on {side}-pixel images")
            feature = parts.features(low)
            if feature.dim() != 4 or feature.shape[1] != parts.classifier.in_features:
                raise ValueError(
                    f"{type(model).__name__}'s head is not a linear layer on the average-pooled feature "
                    f"(the feature has shape {tuple(feature.shape)}, the head takes "
                    f"{parts.classifier.in_features} inputs: no exact CAM)"
                )
            if timm:
                expected = model.forward_features(x)  # type: ignore[operator]
                if feature.shape != expected.shape or not torch.allclose(
                    feature, expected, atol=1e-5, rtol=1e-4
                ):
                    raise ValueError(
                        f"{type(model).__name__}: the modules in order do not reproduce forward_features"
                    )
                logits = model.forward_head(feature)  # type: ignore[operator]
            else:
                logits = model(x)
            linear = parts.classifier(feature.mean(dim=(2, 3)))
            if logits.shape != linear.shape or not torch.allclose(logits, linear, atol=1e-4, rtol=1e-4):
                raise ValueError(
                    f"{type(model).__name__}'s head is not a linear layer on the average-pooled feature "
                    "(no exact CAM)"
                )
    finally:
        for module, training in modes.items():
            module.training = training
    return parts._replace(num_features=int(feature.shape[1]), output_stride=side // int(feature.shape[-1]))


def split_backbone(
    model: nn.Module, *, low_level_stride: int = 4, check: bool = True, check_side: int = 64
) -> BackboneSplit:
    """Cut the classifier ``model`` into ``stem`` (to its low-level feature), ``features`` and ``classifier``.

    ``model`` is a torchvision ResNet or a timm classifier (see the module's description). With ``check``
    (the default) the cut is verified on a random ``check_side``-pixel image in eval mode and the final
    feature's stride is measured; a model on the meta device is never checked.

    Args:
        model: the classifier; its modules are shared with the result (train one, you train the other).
        low_level_stride: the stride of the stem's output (4, the generator's input in ORNet; a ResNet
            offers 4 only, a timm model any stride of its ``feature_info``).
        check: verify the cut (skip it to save one forward pass).
        check_side: the side of the check's image: a multiple of 32, the largest stride of the two families,
            so that the measured stride is exact.

    Returns:
        the :class:`BackboneSplit`; ``parts.body()(parts.stem(x))`` are the model's logits.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` is neither kind (a ResNet's ``fc`` must be an ``nn.Linear``), has no feature
            at ``low_level_stride``, or fails the check (its modules in order do not reproduce it, or its
            head is not linear on the average-pooled feature, e.g. timm's ConvNeXt, which normalises the
            pooled feature); or a bad ``low_level_stride`` / ``check_side``.

    Example:
        >>> from torch import nn
        >>> class TinyResNet(nn.Module):  # torchvision's ResNet layout (e.g. resnet18(num_classes=3))
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.conv1, self.bn1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8)
        ...         self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        ...         self.layer1, self.layer2 = nn.Conv2d(8, 8, 3, 1, 1), nn.Conv2d(8, 16, 3, 2, 1)
        ...         self.layer3, self.layer4 = nn.Conv2d(16, 16, 3, 2, 1), nn.Conv2d(16, 32, 3, 2, 1)
        ...         self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(32, 3)
        ...     def forward(self, x: torch.Tensor) -> torch.Tensor:
        ...         x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        ...         x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        ...         return self.fc(torch.flatten(self.avgpool(x), 1))
        >>> parts = split_backbone(TinyResNet())
        >>> parts.stem_channels, parts.stem_stride, parts.num_features, parts.output_stride
        (8, 4, 32, 32)
        >>> from lowcam import LowLevelActivationGenerator
        >>> generator = LowLevelActivationGenerator(parts.stem_channels, num_classes=3, base_width=4)
        >>> low = parts.stem(torch.randn(2, 3, 64, 64))
        >>> p = generator(low).activation  # (2, 1, 16, 16): the map at the stem's resolution
        >>> tuple(parts.body()(low * p).shape)  # stage 1's main logits
        (2, 3)
    """
    if isinstance(low_level_stride, bool) or not isinstance(low_level_stride, int) or low_level_stride < 1:
        raise ValueError(f"low_level_stride must be a positive int, got {low_level_stride!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(check_side, bool) or not isinstance(check_side, int) or check_side < 32 or check_side % 32:
        raise ValueError(f"check_side must be a positive multiple of 32, got {check_side!r}")
    info = getattr(model, "feature_info", None)
    if info is not None:
        parts = _split_timm(model, list(info), low_level_stride)
    else:
        parts = _split_resnet(model, low_level_stride)
    if not check or any(p.is_meta for p in model.parameters()):
        return parts
    return _check(model, parts, check_side)


def _check_output_stride(output_stride: object, allowed: tuple[int, ...]) -> int:
    if isinstance(output_stride, bool) or output_stride not in allowed:
        names = ", ".join(str(s) for s in sorted(allowed))
        raise ValueError(f"output_stride must be one of {names}; got {output_stride!r}")
    return int(output_stride)


class CamNet(nn.Module):
    """A torchvision ResNet or timm classifier as a CAM network: ``features → GAP → fc``, class maps from ``fc``.

    ``forward(images)`` returns the logits ``(B, C)`` (so the network can serve as an
    :class:`~lowcam.Evaluator`'s classifier); :meth:`forward_maps` also returns the raw CAMs
    ``(B, C, H / s, W / s)`` of :func:`~lowcam.cam_class_maps`, whose spatial mean is the logit minus the
    bias. The feature is at stride ``s = output_stride``: for a ResNet 32 (as it is), 16, 8 or 4 (the first
    block of each stage in ``RESNET_STRIDES`` gets stride 1 in its strided convolution, ``conv1`` of a
    basic block or ``conv2`` of a bottleneck, and in its ``downsample``; no dilation). No parameter changes
    shape, so the same weights load at every stride. A timm classifier gets its stride when it is created
    (``timm.create_model(..., output_stride=s)``, one of ``TIMM_STRIDES``; timm dilates the last
    stages): ``output_stride`` must say the same (the check of :func:`split_backbone` measures it). The
    features are ``split_backbone(model)``'s stem and features; the modules are the model's own (modified in
    place for a ResNet).

    Args:
        classifier: a torchvision ResNet or a timm classifier (randomly initialised or loaded).
        num_classes: the number of classes; a head of another size is replaced by a fresh ``nn.Linear``
            (``None``: keep the classifier's head).
        output_stride: the stride of the CAMs.

    Raises:
        ValueError: an ``output_stride`` the model does not offer or not the one a timm model was created
            with, or a ``classifier`` :func:`split_backbone` refuses.

    Example:
        >>> import torchvision
        >>> net = CamNet(torchvision.models.resnet18(num_classes=10), num_classes=5, output_stride=8)
        >>> logits, cams = net.forward_maps(torch.randn(2, 3, 64, 64))
        >>> tuple(logits.shape), tuple(cams.shape)
        ((2, 5), (2, 5, 8, 8))
        >>> torch.allclose(cams.mean(dim=(2, 3)) + net.fc.bias, logits, atol=1e-5)
        True
    """

    #: The output strides of a ResNet and the stages whose first block gets stride 1 for each.
    RESNET_STRIDES: ClassVar[dict[int, tuple[str, ...]]] = {
        32: (),
        16: ("layer4",),
        8: ("layer3", "layer4"),
        4: ("layer2", "layer3", "layer4"),
    }
    #: The output strides of a timm classifier (timm's ``output_stride=``: no stride-4 feature).
    TIMM_STRIDES: ClassVar[tuple[int, ...]] = (8, 16, 32)

    def __init__(
        self, classifier: nn.Module, num_classes: int | None = None, *, output_stride: int = 32
    ) -> None:
        super().__init__()
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        timm = getattr(classifier, "feature_info", None) is not None
        allowed = self.TIMM_STRIDES if timm else tuple(self.RESNET_STRIDES)
        self.output_stride = _check_output_stride(output_stride, allowed)
        parts = split_backbone(classifier)
        if not timm and parts.output_stride not in (None, 32):
            raise ValueError(
                f"the ResNet's feature is at stride {parts.output_stride}, not 32: CamNet sets the stride itself "
                "and takes a ResNet as torchvision builds it (no replace_stride_with_dilation, not a CamNet's)"
            )
        if timm and parts.output_stride is not None and parts.output_stride != self.output_stride:
            raise ValueError(
                f"output_stride={output_stride} but the timm model was created with output stride "
                f"{parts.output_stride} (timm.create_model(..., output_stride={output_stride}))"
            )
        if not timm:
            for name in self.RESNET_STRIDES[self.output_stride]:
                block = getattr(classifier, name)[0]
                convs = [block.conv2 if hasattr(block, "conv3") else block.conv1]  # bottleneck / basic block
                if getattr(block, "downsample", None) is not None:
                    convs.append(block.downsample[0])
                for conv in convs:
                    if not isinstance(conv, nn.Conv2d):
                        raise ValueError(f"{name}[0] of {type(classifier).__name__} is not a ResNet block")
                    conv.stride = (1, 1)
                block.stride = 1
        self.features = nn.Sequential(*parts.stem, *parts.features)
        head = parts.classifier
        if num_classes is not None and head.out_features != num_classes:
            head = nn.Linear(head.in_features, num_classes)
        self.fc = head

    def forward_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, C), raw CAMs (B, C, h, w))``."""
        features = self.features(images)
        logits = self.fc(features.mean(dim=(2, 3)))
        return logits, cam_class_maps(features, self.fc.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The logits ``(B, C)``."""
        return self.forward_maps(images)[0]
