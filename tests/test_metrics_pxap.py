"""PxAP and the nearest-neighbour mask resize against the reference (NumPy histograms, cv2.resize)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_reference import ref_pxap, ref_resize_nearest

from lowcam import metrics


@pytest.mark.parametrize(("h", "w"), [(5, 7), (300, 150), (224, 224), (13, 400)])
def test_resize_nearest_matches_opencv(h: int, w: int) -> None:
    mask = np.random.default_rng(h).integers(0, 256, size=(h, w), dtype=np.uint8)
    got = metrics.resize_nearest(torch.from_numpy(mask), (224, 224)).numpy()
    np.testing.assert_array_equal(got, ref_resize_nearest(mask, 224))


def test_pxap_equals_reference() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((6, 224, 224)) ** 2
    maps[0, :5] = 1.0
    maps[1, 0, 0] = np.nan  # a NaN map counts as zeros
    maps[2] = np.round(maps[2] * 100) / 100  # values on the bin edges
    masks = [(rng.random((2, 60, 80)) < 0.3).astype(np.uint8) * 255 for _ in range(6)]
    ignores = [(rng.random((60, 80)) < 0.2).astype(np.uint8) * 255 for _ in range(6)]
    ref_masks = [np.stack([ref_resize_nearest(m, 224) for m in ms]) for ms in masks]
    ref_ign = [ref_resize_nearest(i, 224) for i in ignores]
    ref_maps = [np.zeros_like(m) if np.isnan(m).any() else m for m in maps]
    value, pos, neg = ref_pxap(ref_maps, ref_masks, ref_ign)
    metric = metrics.PxAP()
    metric.update(
        torch.from_numpy(maps[:4]),
        [torch.from_numpy(m) for m in masks[:4]],
        [torch.from_numpy(i) for i in ignores[:4]],
    )
    metric.update(
        torch.from_numpy(maps[4:]),
        torch.from_numpy(np.stack(masks[4:])),
        torch.from_numpy(np.stack(ignores[4:])),
    )
    np.testing.assert_array_equal(metric._hist[0].numpy(), pos)
    np.testing.assert_array_equal(metric._hist[1].numpy(), neg)
    out = metric.compute()
    assert out.value == pytest.approx(value, rel=1e-12)
    assert out.n == 6
    assert 0 < out.value < 100


def test_pxap_perfect_and_bad_input() -> None:
    maps = torch.tensor([[[0.9, 0.8], [0.2, 0.1]]], dtype=torch.float64)
    assert metrics.PxAP().update(maps, torch.tensor([[[1, 1], [0, 0]]])).compute().value == 100.0
    with pytest.raises(ValueError, match="masks has 2 entries for a batch of 1 maps"):
        metrics.PxAP().update(maps, [torch.ones(2, 2), torch.ones(2, 2)])
    bad = maps.clone()
    bad[0, 1, 1] = -1.0
    with pytest.raises(ValueError, match=r"maps\[0\] .* values in \[-1.0, 0.9\]"):
        metrics.PxAP().update(bad, torch.ones(1, 2, 2))
    with pytest.raises(RuntimeError, match="no foreground pixel"):
        metrics.PxAP().update(maps, torch.zeros(1, 2, 2)).compute()
