"""Resolution of the ``backend="auto" | "torch" | "triton"`` argument, in one place.

``"torch"`` is the vectorized torch backend of a component (``<function>_torch`` beside the function),
available everywhere. ``"triton"`` is the fused kernels of :mod:`lowcam.ops` (``<function>_triton``):
an explicit opt-in that needs Triton and either CUDA tensors or ``TRITON_INTERPRET=1`` (Triton's CPU
interpreter, used by the test-suite). ``"auto"`` resolves to ``"torch"`` on every device, CUDA included:
the kernels are tested under the interpreter and compiled ahead of time, but until a committed GPU run
(``benchmarks/results``) shows them correct and faster on real hardware, nobody is sent to them by default.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Literal, TypeAlias

import torch

__all__ = [
    "Backend",
    "ResolvedBackend",
    "check_backend",
    "resolve_backend",
    "triton_available",
    "triton_interpret",
]

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


def check_backend(backend: object) -> Backend:
    """Raise ``ValueError`` unless ``backend`` is ``"auto"``, ``"torch"`` or ``"triton"``; return it.

    Called by every module's constructor and every function, so a misspelt backend fails at once rather
    than at the first forward pass.

    Example:
        >>> check_backend("torch")
        'torch'
    """
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    return backend  # type: ignore[return-value]


def resolve_backend(backend: str, *tensors: torch.Tensor) -> ResolvedBackend:
    """Turn a ``backend`` argument into the implementation that will run.

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        *tensors: the inputs of the component; ``"triton"`` needs them on CUDA (or the interpreter).

    Returns:
        ``"torch"`` or ``"triton"``; ``"auto"`` always gives ``"torch"`` (see the module docstring).

    Raises:
        ValueError: ``backend`` is not one of the three names, or ``"triton"`` was asked for where
            the kernels cannot run.

    Example:
        >>> resolve_backend("auto", torch.zeros(2, 1, 4, 4))
        'torch'
    """
    check_backend(backend)
    if backend != "triton":
        return "torch"
    if not triton_available():
        raise ValueError("backend='triton' needs the 'triton' package, which is not installed")
    if not (all(t.is_cuda for t in tensors) or triton_interpret()):
        devices = sorted({str(t.device) for t in tensors})
        raise ValueError(
            f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter), "
            f"got tensors on {devices}"
        )
    return "triton"
