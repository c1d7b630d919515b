"""``torch.library.opcheck`` for every custom op of lowcam (schema, fake kernel, autograd registration,
AOT dispatch): the five Triton ops here, the CPU erasing op in ``test_erasing.py``."""

from __future__ import annotations

import pytest
import torch
from _helpers import TRITON_DEVICE, TRITON_MARKS

from lowcam.erasing import ErasingParams
from lowcam.losses.entropy import ENTROPY_EPS

pytest.importorskip("triton")
pytestmark = TRITON_MARKS
DEVICE = TRITON_DEVICE


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE, dtype)


def test_every_lowcam_custom_op_is_checked() -> None:
    import lowcam.erasing
    import lowcam.ops.area
    import lowcam.ops.entropy
    import lowcam.ops.erasing  # noqa: F401  (registers the ops)

    names = {name for name in dir(torch.ops.lowcam) if not name.startswith("_")}
    assert names >= {
        "weighted_entropy_fwd",
        "weighted_entropy_bwd",
        "area_loss_fwd",
        "area_loss_bwd_class_maps",
        "attentive_erasing_fwd",
        "attentive_erasing_torch",
    }


@pytest.mark.parametrize("per_element", [True, False])
@pytest.mark.parametrize("need_grad", [True, False])
def test_entropy_ops(per_element: bool, need_grad: bool) -> None:
    from lowcam.ops.entropy import _entropy_bwd, _entropy_fwd

    p = _rand(2, 1, 5, 7)
    torch.library.opcheck(_entropy_fwd, (p, 0.5, 0.1, 0.0, ENTROPY_EPS, False, per_element, need_grad))
    local = _rand(2, 1, 5, 7, seed=1)
    grad_out = _rand(2, 1, 5, 7, seed=2) if per_element else _rand(2, seed=2)
    torch.library.opcheck(_entropy_bwd, (local, grad_out, torch.float16))


def test_area_ops() -> None:
    from lowcam.ops.area import _area_bwd_class_maps, _area_fwd

    p, maps = _rand(2, 1, 4, 6), _rand(2, 5, 4, 6, seed=1)
    index = torch.tensor([[3, 1], [0, 4]], device=DEVICE)
    torch.library.opcheck(_area_fwd, (p, maps, index))
    torch.library.opcheck(
        _area_bwd_class_maps, (_rand(2, seed=2), index, [2, 5, 4, 6], [120, 24, 6, 1], torch.float32)
    )


def test_erasing_op() -> None:
    from lowcam.ops.erasing import attentive_erasing_triton

    p = _rand(3, 1, 20, 18) ** 2
    seeds = torch.tensor([123, 456], device=DEVICE)  # fixed seeds: the op is deterministic
    args = ErasingParams(erase_prob=1.0, min_size=1)._resolve(20, 18)
    torch.library.opcheck(attentive_erasing_triton, (p, seeds, *args))
