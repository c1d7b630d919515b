"""Shared test helpers: devices, the one tolerance table, the Triton markers.

A plain module (``import _helpers``), not ``conftest.py``: pytest loads conftest as a plugin, and
importing it by name as well would give a second copy of the module. ``conftest.py`` holds only fixtures.
"""

from __future__ import annotations

import os
from typing import Literal

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

Comparison = Literal["reference", "backend"]

#: The one tolerance table, ``(rtol, atol)`` per dtype and comparison:
#:
#: - ``"reference"``: a component's output in a dtype against the float64 oracle of ``tests/reference.py``
#:   (the input itself was rounded to the dtype, so half types get about two of their ulps);
#: - ``"backend"``: the Triton backend against the torch backend on the same input, both computing in the
#:   same accumulation dtype, so only the final rounding to the output dtype differs (about one ulp).
TOLERANCES: dict[torch.dtype, dict[Comparison, tuple[float, float]]] = {
    torch.float64: {"reference": (1e-10, 1e-12), "backend": (1e-12, 1e-12)},
    torch.float32: {"reference": (1e-5, 1e-6), "backend": (1e-5, 1e-6)},
    torch.bfloat16: {"reference": (2e-2, 2e-2), "backend": (1.6e-2, 1e-3)},
    torch.float16: {"reference": (5e-3, 5e-3), "backend": (2e-3, 1e-4)},
}
DTYPES = list(TOLERANCES)


def tolerance(dtype: torch.dtype, comparison: Comparison = "reference") -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` for :func:`torch.testing.assert_close`."""
    rtol, atol = TOLERANCES[dtype][comparison]
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
