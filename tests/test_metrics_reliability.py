"""Issue 12's metric failures: each test failed before its fix (silent wrong results, crashes on valid input)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_reference import ref_prepare_scoremap, ref_pxap, ref_wsoleval_counts, stress_gt, stress_maps

from lowcam import metrics


def test_duplicate_iou_thresholds_are_rejected() -> None:
    # before: acc {0.5: 100.0} but value 50.0 (the dict kept one entry, the mean divided by two)
    with pytest.raises(ValueError, match=r"iou_thresholds must be distinct.*\[0.5, 0.5\]"):
        metrics.BoxAccuracy("maxboxacc", iou_thresholds=[0.5, 0.5])


def test_bare_float_iou_threshold_is_one_threshold() -> None:
    maps = torch.zeros(1, 8, 8)
    maps[0, 2:6, 2:6] = 1.0
    gt = [torch.tensor([[2, 2, 5, 5]])]
    bare = metrics.BoxAccuracy("maxboxacc", iou_thresholds=0.5).update(maps, gt).compute()
    listed = metrics.BoxAccuracy("maxboxacc", iou_thresholds=[0.5]).update(maps, gt).compute()
    assert bare.iou_thresholds == (0.5,)
    assert bare.scalars() == listed.scalars()
    with pytest.raises(TypeError, match="iou_thresholds must be a number or a sequence"):
        metrics.BoxAccuracy("maxboxacc", iou_thresholds="0.5")  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", ["maxboxacc", "maxboxacc_v2"])
def test_zero_padded_gt_rows_are_rejected(protocol: str) -> None:
    # before: a blank map's box [0, 0, 0, 0] matched the padding row, so blank maps scored 100 %
    blank = torch.zeros(2, 16, 16)
    padded = torch.tensor([[[3, 3, 12, 12], [0, 0, 0, 0]], [[1, 2, 9, 9], [4, 4, 8, 8]]])
    with pytest.raises(ValueError, match=r"gt_boxes\[0\] \(shape \(2, 4\)\) row 1 is all zero.*padding"):
        metrics.BoxAccuracy(protocol).update(blank, padded)  # type: ignore[arg-type]
    # in a list, [0, 0, 0, 0] is a real one-pixel box at the origin (the reference's reading, e.g. 0,0,3,3 in a
    # 1000-pixel image at 224): accepted, and the blank map's box [0, 0, 0, 0] matches it, as in the reference
    tiny = metrics.BoxAccuracy(protocol).update(blank, [padded[0, :1], torch.zeros(1, 4)])  # type: ignore[arg-type]
    assert tiny.compute().value == 50.0
    # padding by repeating a real box is the documented way, and blank maps then score 0
    fixed = padded.clone()
    fixed[0, 1] = fixed[0, 0]
    assert metrics.BoxAccuracy(protocol).update(blank, fixed).compute().value == 0.0  # type: ignore[arg-type]


def test_prepare_scoremap_size_must_be_int_or_pair() -> None:
    cams = torch.rand(2, 7, 7)
    for size in ("16", 16.0, (16,), (16, "16"), True):
        with pytest.raises(TypeError, match="size must be an int or a pair of ints"):
            metrics.prepare_scoremap(cams, size=size)  # type: ignore[arg-type]
    assert metrics.prepare_scoremap(cams, size=(16, 12)).shape == (2, 16, 12)
    with pytest.raises(ValueError, match="size must be positive"):
        metrics.prepare_scoremap(cams, size=0)


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
@pytest.mark.parametrize("pos", [(3, 3), (0, 0), (6, 2)])
def test_prepare_scoremap_infinite_pixel_gives_zeros_not_nan(value: float, pos: tuple[int, int]) -> None:
    cam = np.random.default_rng(0).random((7, 7))
    cam[pos] = value
    other = np.random.default_rng(1).random((7, 7))
    out = metrics.prepare_scoremap(torch.from_numpy(np.stack([cam, other])), size=224)
    assert not bool(out.isnan().any())
    assert bool((out[0] == 0).all())
    np.testing.assert_allclose(out[1].numpy(), ref_prepare_scoremap(other, 224), rtol=0, atol=1e-12)
    with np.errstate(invalid="ignore"):
        ref = ref_prepare_scoremap(cam, 224)  # the reference: zeros, or NaN where inf covers the map
    assert bool(np.isnan(ref).all()) or bool((ref == 0).all())


@pytest.mark.parametrize("protocol", ["maxboxacc", "maxboxacc_v2"])
def test_contour_protocols_take_transposed_maps(protocol: str) -> None:
    # before: "view size is not compatible with input tensor's size and stride"
    rng = np.random.default_rng(5)
    maps = torch.from_numpy(np.stack(stress_maps(rng, 17, 17)))
    gts = [torch.from_numpy(g) for g in stress_gt(rng, 17, 17, maps.shape[0])]
    out = metrics.BoxAccuracy(protocol).update(maps.mT, gts).compute()  # type: ignore[arg-type]
    want = metrics.BoxAccuracy(protocol).update(maps.mT.contiguous(), gts).compute()  # type: ignore[arg-type]
    for d in out.iou_thresholds:
        assert torch.equal(out.counts[d], want.counts[d])
    u8 = metrics.quantize_scoremap(maps.mT)
    a = metrics.contour_boxes(u8, torch.arange(0, 255, 17), largest_only=protocol == "maxboxacc")
    b = metrics.contour_boxes(u8.contiguous(), torch.arange(0, 255, 17), largest_only=protocol == "maxboxacc")
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_contour_boxes_of_an_empty_batch() -> None:
    # before: a crash in the tree construction
    out = metrics.contour_boxes(
        torch.zeros(0, 5, 5, dtype=torch.uint8), torch.tensor([0, 3]), largest_only=False
    )
    assert out.boxes.shape == (0, 4) and out.batch.numel() == out.cut.numel() == out.hole.numel() == 0
    out = metrics.contour_boxes(torch.zeros(0, 5, 5, dtype=torch.uint8), torch.tensor([0]), largest_only=True)
    assert out.boxes.shape == (0, 4)


def test_pxap_scores_below_the_first_threshold_fall_in_no_bin() -> None:
    # before: bincount of a negative bin ("should contain only non-negative values")
    rng = np.random.default_rng(2)
    maps = rng.random((3, 20, 20))
    masks = [(rng.random((20, 20)) < 0.4).astype(np.uint8) for _ in range(3)]
    taus = np.array([0.5, 0.9])
    value, pos, neg = ref_pxap(list(maps), masks, [None] * 3, thresholds=taus)
    metric = metrics.PxAP(thresholds=taus.tolist()).update(
        torch.from_numpy(maps), torch.from_numpy(np.stack(masks))
    )
    np.testing.assert_array_equal(metric._hist[0].numpy(), pos)
    np.testing.assert_array_equal(metric._hist[1].numpy(), neg)
    assert metric.compute().value == pytest.approx(value, rel=1e-12)


def test_empty_batches_count_nothing() -> None:
    v2 = metrics.BoxAccuracy("maxboxacc_v2").update(torch.zeros(0, 8, 8), [])
    with pytest.raises(RuntimeError, match="no image was evaluated"):
        v2.compute()
    maps = np.stack(stress_maps(np.random.default_rng(0), 16, 16))
    gts = stress_gt(np.random.default_rng(1), 16, 16, len(maps))
    v2.update(torch.from_numpy(maps), [torch.from_numpy(g) for g in gts])
    expected = ref_wsoleval_counts(list(maps), gts, multi=True, iou_thresholds=(0.3, 0.5, 0.7))
    got = v2.compute()
    assert np.array_equal(np.stack([got.counts[d].numpy() for d in (0.3, 0.5, 0.7)]), expected)
    assert metrics.PxAP().update(torch.zeros(0, 4, 4), torch.zeros(0, 4, 4)).state_dict()["n"] == 0
