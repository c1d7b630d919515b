"""Helpers shared by the Triton launchers: dtypes, block sizes, the launch grid's limits."""

from __future__ import annotations

import contextlib
import struct

import torch
import triton
import triton.language as tl

__all__ = [
    "SUPPORTED_DTYPES",
    "accumulate_dtype",
    "block_size",
    "check_supported",
    "device_of",
    "next_power_of_2",
    "plane_contiguous",
    "split_float",
    "strided_offset",
]

#: The dtypes the kernels accept; math runs in float32, or in float64 for float64 inputs.
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def accumulate_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute and accumulate in: float64 if any input is float64, else float32.

    This is the rule of the torch backends (``lowcam._checks.compute_dtype`` of the promoted input dtype),
    so both backends round the same way; it is restated here because ``lowcam.ops`` imports nothing from
    the rest of lowcam.
    """
    return torch.float64 if torch.float64 in dtypes else torch.float32


def check_supported(name: str, tensor: torch.Tensor) -> None:
    """Raise ``TypeError`` unless ``tensor``'s dtype is one the kernels accept."""
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"the Triton backend supports {[str(d) for d in SUPPORTED_DTYPES]} for {name}, got {tensor.dtype}"
        )


def device_of(tensor: torch.Tensor) -> contextlib.AbstractContextManager[object]:
    """Make ``tensor``'s CUDA device the current one for a launch (a no-op for CPU tensors).

    Triton launches on the current CUDA device and its stream, not on the device of the arguments; without
    this, tensors on ``cuda:1`` with ``cuda:0`` current would be read from the wrong GPU.
    """
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


@triton.jit
def strided_offset(rows, cols, stride_h, stride_w):  # type: ignore[no-untyped-def]
    """Element offsets ``rows · stride_h + cols · stride_w`` of a strided plane, in int64.

    Row and column indices are int32; their products with the strides of a large permuted view can pass
    2³¹, so they are widened first.
    """
    return rows.to(tl.int64) * stride_h + cols.to(tl.int64) * stride_w


def plane_contiguous(stride_h: int, stride_w: int, width: int) -> bool:
    """Whether an ``H × W`` plane with these strides is stored row-major without gaps (the fast path)."""
    return stride_w == 1 and stride_h == width


def next_power_of_2(n: int) -> int:
    """The smallest power of two ``>= n`` (1 for ``n <= 1``)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def block_size(n: int, *, minimum: int = 16, maximum: int = 1024) -> int:
    """A power-of-two block for ``n`` elements, clamped to ``[minimum, maximum]``."""
    return max(minimum, min(maximum, next_power_of_2(n)))


def split_float(value: float) -> tuple[float, float]:
    """Split a Python float into ``(hi, lo)`` float32-representable parts with ``hi + lo ≈ value``.

    Triton passes Python floats to a kernel as float32 scalars. A float64 kernel rebuilds the parameter as
    ``float64(hi) + float64(lo)``, which carries about 48 significant bits instead of 24, so the float64
    path matches the torch backend to ~1e-14 rather than ~1e-8. A float32 kernel just uses ``hi + lo``.
    """
    hi = _to_float32(value)
    return hi, _to_float32(value - hi)


def _to_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as a Python float."""
    return float(struct.unpack("f", struct.pack("f", value))[0])
