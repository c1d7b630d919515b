"""``lowcam.metrics.center_gaussian`` against a plain loop over pixels."""

from __future__ import annotations

import math

import pytest
import torch

from lowcam import metrics


def _loop(height: int, width: int, sigma: float) -> torch.Tensor:
    out = torch.empty(height, width, dtype=torch.float64)
    for y in range(height):
        for x in range(width):
            dy = (y - (height - 1) / 2) / (sigma * height)
            dx = (x - (width - 1) / 2) / (sigma * width)
            out[y, x] = math.exp(-(dy * dy + dx * dx) / 2)
    return out


@pytest.mark.parametrize(("height", "width", "sigma"), [(1, 1, 0.25), (5, 5, 0.25), (6, 9, 0.1), (7, 4, 2.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_loop(height: int, width: int, sigma: float, dtype: torch.dtype) -> None:
    maps = metrics.center_gaussian(3, height, width, sigma=sigma, dtype=dtype)
    assert maps.shape == (3, height, width) and maps.dtype == dtype
    expected = _loop(height, width, sigma).to(dtype)
    for b in range(3):
        torch.testing.assert_close(maps[b], expected)
    assert float(maps.max()) <= 1.0 and float(maps.min()) >= 0.0


def test_square_default_and_empty_batch() -> None:
    assert metrics.center_gaussian(0, 4).shape == (0, 4, 4)
    torch.testing.assert_close(metrics.center_gaussian(1, 4)[0], metrics.center_gaussian(1, 4, 4)[0])
    maps = metrics.center_gaussian(2, 4)
    maps[0, 0, 0] = 5.0  # the maps do not share memory
    assert maps[1, 0, 0] < 1.0


def test_meta_device_follows_argument() -> None:
    assert metrics.center_gaussian(2, 3, device="meta").device.type == "meta"


def test_threshold_sweep_sees_centred_boxes() -> None:
    # a centred GT box is found at some threshold (MaxBoxAccV2 100 %), an off-centre one is not
    maps = metrics.center_gaussian(2, 64)
    centred = [torch.tensor([[16, 16, 47, 47]])] * 2
    corner = [torch.tensor([[0, 0, 15, 15]])] * 2
    assert metrics.max_box_acc(maps, centred, version=2).value == 100.0
    assert metrics.max_box_acc(maps, corner, version=2).value == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch": -1, "height": 3}, ValueError, "batch must be >= 0; got -1"),
        ({"batch": 1, "height": 0}, ValueError, "height must be >= 1; got 0"),
        ({"batch": 1, "height": 3, "width": 2.5}, TypeError, "width must be an int; got float"),
        ({"batch": True, "height": 3}, TypeError, "batch must be an int; got bool"),
        ({"batch": 1, "height": 3, "sigma": 0.0}, ValueError, "sigma must be a positive finite number"),
        ({"batch": 1, "height": 3, "sigma": float("nan")}, ValueError, "sigma must be a positive finite"),
        ({"batch": 1, "height": 3, "dtype": torch.int64}, TypeError, "dtype must be a floating dtype"),
        ({"batch": 1, "height": 3, "dtype": "float32"}, TypeError, "dtype must be a floating dtype"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        metrics.center_gaussian(**kwargs)  # type: ignore[arg-type]


def test_numpy_sigma_and_default_minimum() -> None:
    import numpy as np

    torch.testing.assert_close(
        metrics.center_gaussian(1, 6, sigma=np.float32(0.2)), metrics.center_gaussian(1, 6, sigma=0.2)
    )
    maps = metrics.center_gaussian(1, 9)  # odd side: the centre pixel is 1, the corners exp(-4 (1 - 1/9)^2)
    assert float(maps[0, 4, 4]) == 1.0
    assert math.isclose(float(maps[0, 0, 0]), math.exp(-4 * (8 / 9) ** 2), rel_tol=1e-6)
