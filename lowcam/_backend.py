"""Resolution of the ``backend="auto" | "torch" | "triton"`` argument, in one place.

``"auto"`` picks the fused Triton kernels when every tensor is on a CUDA device and Triton imports;
otherwise the vectorized torch implementation. ``"triton"`` insists on the kernels: it needs Triton and
either CUDA tensors or ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, used by the test-suite).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Literal, TypeAlias

import torch

Backend: TypeAlias = Literal["auto", "torch", "triton"]
ResolvedBackend: TypeAlias = Literal["torch", "triton"]

_BACKENDS = ("auto", "torch", "triton")


_TRITON_FOUND = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """Whether Triton can be imported (looked up once, at import, without importing it)."""
    return _TRITON_FOUND


def triton_interpret() -> bool:
    """Whether Triton kernels run on the CPU through ``TRITON_INTERPRET=1``."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, *tensors: torch.Tensor) -> ResolvedBackend:
    """Turn a ``backend`` argument into the implementation that will run.

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        *tensors: the inputs of the component; their device decides ``"auto"``.

    Returns:
        ``"torch"`` or ``"triton"``.

    Raises:
        ValueError: ``backend`` is not one of the three names, or ``"triton"`` was asked for where
            the kernels cannot run.

    Example:
        >>> resolve_backend("auto", torch.zeros(2, 1, 4, 4))
        'torch'
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "auto":
        return "triton" if on_cuda and triton_available() else "torch"
    if not triton_available():
        raise ValueError("backend='triton' needs the 'triton' package, which is not installed")
    if not (on_cuda or triton_interpret()):
        devices = sorted({str(t.device) for t in tensors})
        raise ValueError(
            f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter), "
            f"got tensors on {devices}"
        )
    return "triton"
