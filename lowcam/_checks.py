"""Argument validation shared by the components.

Every check looks only at shapes, dtypes and Python numbers, so none of them synchronises with the
device. Errors name the argument, what it got and what was expected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias, TypeVar

import torch

__all__ = [
    "Reduction",
    "check_batch_of_maps",
    "check_int",
    "check_map",
    "check_positive",
    "check_reduction",
    "check_same_sizes",
    "check_shape",
    "check_tensor",
    "check_unit_interval",
    "compute_dtype",
    "loss_dtype",
    "params_or_keywords",
    "reduce",
]

ParamsT = TypeVar("ParamsT")

Reduction: TypeAlias = Literal["none", "mean", "sum"]
_REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> None:
    """Raise ``ValueError`` unless ``reduction`` is ``"none"``, ``"mean"`` or ``"sum"``."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def check_tensor(name: str, value: object, *, floating: bool = True) -> torch.Tensor:
    """Raise ``TypeError`` unless ``value`` is a tensor (of a floating dtype when ``floating``)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    return value


def check_shape(name: str, value: torch.Tensor, expected: str, ndim: int) -> None:
    """Raise ``ValueError`` unless ``value`` has ``ndim`` dimensions; ``expected`` reads like ``(B, 1, H, W)``."""
    if value.dim() != ndim:
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(value.shape)}")


def check_map(
    name: str, value: object, *, shape: str = "(B, 1, H, W)", allow_empty_batch: bool = False
) -> torch.Tensor:
    """Check a single-channel map of shape ``(B, 1, H, W)`` with a floating dtype: the one map check.

    Every component that takes an activation map (the losses, erasing, the evaluator's masks, the map
    helpers) calls this; it reads only the shape and dtype, so it never synchronises with the device.
    ``shape`` is how the message spells the expected shape (the evaluator's maps are ``(B, 1, h, w)``).
    ``B = 0`` is accepted with ``allow_empty_batch`` (the losses: an empty batch has a defined loss).
    """
    tensor = check_tensor(name, value)
    check_shape(name, tensor, shape, 4)
    if tensor.shape[1] != 1:
        raise ValueError(f"{name} must have shape {shape} with one channel, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        empty_batch = (
            allow_empty_batch and tensor.shape[0] == 0 and tensor.shape[2] > 0 and tensor.shape[3] > 0
        )
        if not empty_batch:
            raise ValueError(f"{name} must not be empty, got shape {tuple(tensor.shape)}")
    return tensor


def check_same_sizes(
    name: str,
    value: torch.Tensor,
    dims: Sequence[int],
    ref_name: str,
    ref: torch.Tensor,
    ref_dims: Sequence[int],
) -> None:
    """Raise ``ValueError`` unless ``value.shape[dims] == ref.shape[ref_dims]``."""
    got = tuple(value.shape[d] for d in dims)
    want = tuple(ref.shape[d] for d in ref_dims)
    if got != want:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} does not match {ref_name} of shape {tuple(ref.shape)}: "
            f"expected sizes {want} in dims {tuple(dims)}, got {got}"
        )


def check_unit_interval(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``0 <= value <= 1`` (a Python number, never a tensor)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``value > 0``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not float(value) > 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_int(name: str, value: int, *, minimum: int = 0) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``value`` is an ``int`` and ``value >= minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def reduce(values: torch.Tensor, reduction: Reduction, *, count: int | None = None) -> torch.Tensor:
    """Apply ``reduction`` to a loss's unreduced values: the one reduction of every lowcam loss.

    The contract: ``values`` are what the loss returns for ``reduction="none"`` — its *natural unit*,
    which is per element ``(B, 1, H, W)`` for the weighted entropy loss (a pixel-wise loss) and per
    sample ``(B,)`` for the area loss (a loss on whole maps) — or partial sums of those terms (a kernel's
    per-sample sums), in which case ``count`` is the number of terms they add up to (default
    ``values.numel()``). Then ``"none"`` returns ``values`` unchanged, ``"sum"`` their sum and ``"mean"``
    the sum divided by ``count``: the mean over the natural unit, which is the reference's reduction of
    both losses. ``values`` should already be in the compute dtype; the caller casts the result.

    Example:
        >>> reduce(torch.tensor([1.0, 2.0, 6.0]), "mean")
        tensor(3.)
        >>> reduce(torch.tensor([3.0, 6.0]), "mean", count=6)  # two per-sample sums of 3 terms each
        tensor(1.5000)
    """
    if reduction == "mean":
        # sum / n, not mean(): mean's backward materialises grad / n over the whole input, sum's is a view.
        return values.sum() / (values.numel() if count is None else count)
    if reduction == "sum":
        return values.sum()
    return values


def params_or_keywords(cls: type[ParamsT], params: object, keywords: dict[str, Any]) -> ParamsT:
    """The parameter dataclass of a call: ``params`` when given, else ``cls(**keywords)``.

    A component takes its hyper-parameters either as its frozen dataclass (``params=``) or as keyword
    arguments; giving ``params`` together with a keyword that differs from its default is an error (one
    of the two values would be ignored silently).

    Raises:
        TypeError: ``params`` is not a ``cls``, or both forms were given.
    """
    if params is None:
        return cls(**keywords)
    if not isinstance(params, cls):
        raise TypeError(f"params must be a {cls.__name__} or None, got {type(params).__name__}")
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    both = sorted(name for name, value in keywords.items() if value != defaults[name])
    if both:
        raise TypeError(
            f"pass the hyper-parameters either as params= or as keyword arguments, got params= and {both}"
        )
    return params


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype math is done in: float32 for half types, the input's own dtype for float32/float64."""
    return torch.promote_types(dtype, torch.float32)


def loss_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype a loss returns: its input's, but under autocast on ``device`` the compute dtype
    (float32 for half inputs), as torch's own losses, which autocast runs in float32."""
    if torch.is_autocast_enabled(device.type):
        return compute_dtype(dtype)
    return dtype


def check_batch_of_maps(
    name: str,
    value: object,
    *,
    dtype: Literal["floating", "real", "uint8"] = "floating",
    allow_empty_batch: bool = False,
) -> torch.Tensor:
    """Return ``value`` as ``(B, H, W)``: a tensor of shape ``(B, H, W)`` or ``(B, 1, H, W)`` with ``H, W >= 1``.

    ``dtype`` is what the tensor must hold: a floating dtype, any real dtype (no bool or complex) or uint8.
    ``B = 0`` is accepted with ``allow_empty_batch``. Looks at the shape and dtype only.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dtype == "floating" and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    if dtype == "real" and (value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must have a real dtype, got {value.dtype}")
    if dtype == "uint8" and value.dtype != torch.uint8:
        raise TypeError(f"{name} must be a uint8 torch.Tensor, got {value.dtype}")
    maps = value[:, 0] if value.dim() == 4 and value.shape[1] == 1 else value
    if maps.dim() != 3:
        raise ValueError(
            f"{name} must hold one 2-D map per image: {name} must have shape (B, H, W) or (B, 1, H, W), "
            f"got shape {tuple(value.shape)}"
        )
    if maps.shape[1] == 0 or maps.shape[2] == 0 or (maps.shape[0] == 0 and not allow_empty_batch):
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    return maps
