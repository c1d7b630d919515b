"""Shared fixtures: devices, dtypes and tolerances."""

from __future__ import annotations

import os

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

#: (rtol, atol) for comparing a component's output in a dtype with the float64 reference.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (5e-3, 5e-3),
}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    rtol, atol = TOLERANCES[dtype]
    return {"rtol": rtol, "atol": atol}


#: Triton kernels run on CUDA, or on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``).
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
TRITON_DEVICE = "cpu" if TRITON_INTERPRET or not torch.cuda.is_available() else "cuda"
TRITON_MARKS = [
    pytest.mark.triton,
    pytest.mark.skipif(
        not (TRITON_INTERPRET or torch.cuda.is_available()), reason="Triton needs CUDA or TRITON_INTERPRET=1"
    ),
]
