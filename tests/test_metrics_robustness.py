"""Silent wrong results of the metrics on degenerate or mismatched input; each test failed before its fix."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from metrics_reference import ref_prepare_scoremap, ref_wsoleval_counts, stress_gt, stress_maps

import lowcam
from lowcam import metrics

# -- constant maps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [1, 2, 3, 5, 13, 16])
@pytest.mark.parametrize("value", [1.0, -3.0, 1e-3, 7e5])
def test_prepare_scoremap_of_a_constant_map_is_zero(side: int, value: float) -> None:
    # before: bicubic ripples of ~1e-16 were stretched to [0, 1] (16 x 16 ones: 21 distinct values)
    out = metrics.prepare_scoremap(torch.full((1, side, side), value), 224)
    assert float(out.abs().max()) == 0.0


@pytest.mark.parametrize("box", [[56.0, 56.0, 167.0, 167.0], [0.0, 0.0, 223.0, 223.0]])
def test_collapsed_maps_score_what_the_reference_scores(box: list[float]) -> None:
    # before: 32 collapsed 16 x 16 maps scored 33.3 % (100 % with a whole-image box) MaxBoxAccV2;
    # the reference's path (OpenCV's bicubic resize, then min-max) gives 0 %
    maps = metrics.prepare_scoremap(torch.ones(32, 16, 16), 224)
    gts = [torch.tensor([box])] * 32
    out = metrics.BoxAccuracy("maxboxacc_v2").update(maps, gts).compute()
    reference = [ref_prepare_scoremap(np.ones((16, 16)))] * 32
    want = ref_wsoleval_counts(reference, [g.numpy() for g in gts], multi=True)
    assert out.value == 100.0 * want.max(1).mean() / 32 == 0.0


def test_prepare_scoremap_keeps_small_real_ranges() -> None:
    cam = torch.zeros(1, 4, 4, dtype=torch.float64)
    cam[0, 1, 1] = 1e-9  # a tiny range, but far above the rounding of the values
    out = metrics.prepare_scoremap(cam, 8)
    assert float(out.max()) == 1.0


@pytest.mark.parametrize("method", ["minmax", "peak"])
def test_normalize_map_constant_map_with_rounding_noise_is_zero(method: str) -> None:
    x = torch.full((1, 1, 4, 4), 1000.0)
    x[0, 0, 0, 0] = torch.nextafter(torch.tensor(1000.0), torch.tensor(2000.0))
    out = lowcam.normalize_map(x, "minmax")
    assert float(out.abs().max()) == 0.0
    assert float(lowcam.normalize_map(torch.full((1, 1, 3, 3), 5.0), "minmax").abs().max()) == 0.0
    assert float(lowcam.normalize_map(torch.full((1, 1, 3, 3), 5.0), method).max()) in (0.0, 1.0)


# -- normalize_map: infinities and overflowing ranges ----------------------------------------------------


@pytest.mark.parametrize("method", ["minmax", "peak"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_normalize_map_infinite_and_huge_values_stay_in_unit_interval(
    method: str, dtype: torch.dtype
) -> None:
    # before: NaN for +-inf, and for float32 values whose range overflows (+-3e38)
    big = torch.finfo(dtype).max
    maps = torch.zeros(4, 1, 3, 3, dtype=dtype)
    maps[0, 0, 0, 0] = float("inf")
    maps[1, 0, 0, 0] = float("-inf")
    maps[2, 0, 0, 0], maps[2, 0, 1, 1] = big, -big
    maps[3] = torch.linspace(-1, 1, 9, dtype=dtype).view(3, 3)
    out = lowcam.normalize_map(maps, method)  # type: ignore[arg-type]
    assert not bool(out.isnan().any())
    assert bool(((out >= 0) & (out <= 1)).all())
    assert float(out[0].abs().max()) == 0.0 and float(out[1].abs().max()) == 0.0  # an infinity: zeros
    if method == "minmax":
        assert float(out[2, 0, 0, 0]) == 1.0 and float(out[2, 0, 1, 1]) == 0.0
        assert float(out[2, 0, 2, 2]) == pytest.approx(0.5, abs=1e-2)
    assert float(out[3].max()) == 1.0


def test_normalize_map_huge_range_gradient_is_finite() -> None:
    maps = torch.tensor([[[[3e38, -3e38], [0.0, 1.0]]]], requires_grad=True)
    lowcam.normalize_map(maps).sum().backward()
    assert maps.grad is not None and bool(torch.isfinite(maps.grad).all())


# -- frames of the boxes ---------------------------------------------------------------------------------


def test_maxboxacc_rejects_boxes_outside_the_map_frame() -> None:
    # before: 14 x 14 maps with boxes in the 224 frame scored 0.00; a box at x = 500 on a 224 map passed
    maps = torch.rand(2, 14, 14, generator=torch.Generator().manual_seed(0))
    gts = [torch.tensor([[20.0, 30.0, 200.0, 180.0]]), torch.tensor([[2.0, 2.0, 9.0, 9.0]])]
    for protocol in ("maxboxacc", "maxboxacc_v2"):
        with pytest.raises(ValueError, match=r"gt_boxes\[0\].*outside.*14 x 14.*map"):
            metrics.BoxAccuracy(protocol).update(maps, gts)  # type: ignore[arg-type]
    big = torch.rand(1, 224, 224, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"gt_boxes\[0\] .*row 0 .*500"):
        metrics.BoxAccuracy("maxboxacc_v2").update(big, [torch.tensor([[500.0, 10.0, 510.0, 20.0]])])
    with pytest.raises(ValueError, match=r"gt_boxes\[0\].*outside"):
        metrics.BoxAccuracy("maxboxacc").update(big, [torch.tensor([[-3.0, 10.0, 50.0, 20.0]])])
    # the far edge itself is in the frame: the reference's truncation maps a box reaching x = W there
    edge = [torch.tensor([[0.0, 0.0, 224.0, 224.0]])]
    assert metrics.BoxAccuracy("maxboxacc").update(big, edge).compute().n == 1


def test_ornet_rejects_boxes_outside_the_image_frame() -> None:
    maps = torch.rand(1, 14, 14, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"gt_boxes\[0\].*outside the 224 x 224 image"):
        metrics.BoxAccuracy("ornet").update(maps, [torch.tensor([[300.0, 300.0, 400.0, 400.0]])])
    # a box that leaves the crop but overlaps it is what ornet_gt_boxes gives near an edge: accepted
    ok = metrics.BoxAccuracy("ornet").update(maps, [torch.tensor([[-8.0, 5.0, 120.0, 230.0]])])
    assert ok.compute().n == 1


def test_ornet_warns_when_boxes_look_like_map_coordinates() -> None:
    # before: 0.00 without a word
    maps = torch.rand(4, 14, 14, generator=torch.Generator().manual_seed(0))
    gts = [torch.tensor([[1.0, 2.0, 12.0, 13.0]])] * 4
    with pytest.warns(UserWarning, match="image_size"):
        metrics.BoxAccuracy("ornet").update(maps, gts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.BoxAccuracy("ornet", image_size=14).update(maps, gts)


# -- state dicts -----------------------------------------------------------------------------------------


def _v2_state() -> tuple[metrics.BoxAccuracy, dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(np.stack(stress_maps(rng, 16, 16)))
    gts = [torch.from_numpy(g) for g in stress_gt(rng, 16, 16, len(maps))]
    metric = metrics.BoxAccuracy("maxboxacc_v2").update(maps, gts)
    return metric, metric.state_dict()


def test_load_state_dict_checks_the_configuration() -> None:
    _, state = _v2_state()
    # before: IoU thresholds in another order loaded and reported acc@0.7 = 100 %
    reordered = metrics.BoxAccuracy("maxboxacc_v2", iou_thresholds=[0.7, 0.5, 0.3])
    with pytest.raises(ValueError, match=r"iou_thresholds"):
        reordered.load_state_dict(state)
    other_taus = metrics.BoxAccuracy("maxboxacc_v2", thresholds=torch.linspace(0, 0.999, 1000))
    with pytest.raises(ValueError, match=r"thresholds"):
        other_taus.load_state_dict(state)
    # before: MaxBoxAcc counts loaded into MaxBoxAccV2 (with the same IoU list)
    v1_state = metrics.BoxAccuracy("maxboxacc", iou_thresholds=[0.3, 0.5, 0.7]).state_dict()
    with pytest.raises(ValueError, match=r"MaxBoxAcc"):
        metrics.BoxAccuracy("maxboxacc_v2").load_state_dict(v1_state)


def test_load_state_dict_rejects_impossible_counts() -> None:
    metric, state = _v2_state()
    fresh = metrics.BoxAccuracy("maxboxacc_v2")
    for name, bad in [
        ("correct", state["correct"] * 1000),  # before: 45,833 %
        ("correct", -state["correct"]),
        ("n", -state["n"]),
        ("correct", state["correct"].bool()),
    ]:
        with pytest.raises((ValueError, TypeError), match=name):
            fresh.load_state_dict({**state, name: bad})
    fresh.load_state_dict(state)
    assert fresh.compute().scalars() == metric.compute().scalars()
    px = metrics.PxAP()
    px_state = px.update(torch.rand(1, 4, 4), torch.ones(1, 4, 4)).state_dict()
    with pytest.raises(ValueError, match="hist"):
        metrics.PxAP().load_state_dict({**px_state, "hist": -px_state["hist"]})
    with pytest.raises(ValueError, match="thresholds"):
        metrics.PxAP(thresholds=[0.0, 0.5]).load_state_dict(px_state)


# -- ORNet targets, IoU thresholds as values on a grid ---------------------------------------------------


def test_ornet_targets_are_checked() -> None:
    # before: targets >= C, negative or bool counted as misclassified (torchmetrics raises)
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    gts = [torch.tensor([[10.0, 10.0, 200.0, 200.0]])] * 2
    logits = torch.rand(2, 5)
    for targets, pattern in [
        (torch.tensor([0, 5]), r"targets\[1\] is 5; expected class indices in \[0, 5\)"),
        (torch.tensor([-1, 0]), r"targets\[0\] is -1; expected class indices in \[0, 5\)"),
        (torch.tensor([True, False]), r"targets.*integer.*bool"),
    ]:
        with pytest.raises((ValueError, TypeError), match=pattern):
            metrics.BoxAccuracy("ornet").update(maps, gts, logits=logits, targets=targets)


def test_iou_thresholds_from_a_float32_tensor_are_grid_values() -> None:
    # before: keys like 0.30000001192092896
    metric = metrics.BoxAccuracy("maxboxacc_v2", iou_thresholds=torch.tensor([0.3, 0.5, 0.7]))
    assert metric.iou_thresholds == (0.3, 0.5, 0.7)


def test_chosen_threshold_is_printed_as_a_grid_value() -> None:
    # before: scalars() gave threshold@0.5 = 0.28700000000000003 (287 * 0.001)
    taus = metrics.wsoleval_thresholds(0.001)
    counts = torch.zeros(1, 1000, dtype=torch.int64)
    counts[0, 287] = 1
    result = metrics.BoxAccuracyResult.from_counts("maxboxacc", taus, (0.5,), counts, 1)
    assert float(taus[287]) == 0.28700000000000003
    assert result.scalars()["threshold@0.5"] == 0.287
    assert result.to_dict()["threshold"]["0.5"] == 0.287
    assert "0.287," in json.dumps(result.to_dict()) and "0.28700000000000003" not in json.dumps(
        result.to_dict()
    )


# -- empty evaluations -----------------------------------------------------------------------------------


def test_compute_after_empty_updates_says_no_image_was_evaluated() -> None:
    # before: "called before any update()" although update() was called (with zero images)
    v2 = metrics.BoxAccuracy("maxboxacc_v2").update(torch.zeros(0, 8, 8), [])
    with pytest.raises(RuntimeError, match="no image was evaluated"):
        v2.compute()
    px = metrics.PxAP().update(torch.zeros(0, 4, 4), torch.zeros(0, 4, 4))
    with pytest.raises(RuntimeError, match="no image was evaluated"):
        px.compute()
    all_invalid = metrics.BoxAccuracy("maxboxacc").update(
        torch.rand(1, 8, 8), [torch.tensor([[1, 1, 5, 5]])], valid=torch.tensor([False])
    )
    with pytest.raises(RuntimeError, match="no image was evaluated"):
        all_invalid.compute()


# -- PxAP with scores below the first threshold ----------------------------------------------------------


def test_pxap_scores_below_the_first_threshold_are_explained() -> None:
    # before: "no positive ground-truth pixel in the evaluated set" although the masks hold positives
    maps = torch.full((2, 6, 6), 0.2, dtype=torch.float64)
    masks = torch.zeros(2, 6, 6)
    masks[:, 1:4, 1:4] = 1
    with pytest.raises(RuntimeError, match=r"18 foreground pixels.*below the first threshold 0\.5"):
        metrics.PxAP(thresholds=[0.5, 0.9]).update(maps, masks).compute()
    with pytest.raises(RuntimeError, match="no foreground pixel"):
        metrics.PxAP().update(maps, torch.zeros(2, 6, 6)).compute()


# -- memory of the contour engine ------------------------------------------------------------------------


def test_contour_chunks_are_bounded_by_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # before: 8 maps per CPU chunk whatever their size (a 4096² map alone took 2.7 GB)
    from lowcam.metrics import maxboxacc

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert maxboxacc._default_chunk(224, 224, cpu) == 8
    assert maxboxacc._default_chunk(224, 224, gpu) == 128
    assert maxboxacc._default_chunk(700, 700, cpu) == 2
    assert maxboxacc._default_chunk(4096, 4096, cpu) == 1
    seen: list[int] = []
    real = maxboxacc._count_contours

    def spy(u8: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(u8.shape[0])
        return real(u8, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(maxboxacc, "_count_contours", spy)
    maps = torch.zeros(5, 700, 700, dtype=torch.float64)
    maps[:, 100:300, 200:400] = 1.0
    out = metrics.MaxBoxAcc(1, thresholds=[0.5]).update(maps, [torch.tensor([[200, 100, 399, 299]])] * 5)
    assert seen == [2, 2, 1] and out.compute().value == 100.0


def test_functional_forms_equal_the_classes() -> None:
    rng = np.random.default_rng(3)
    maps = torch.from_numpy(np.stack(stress_maps(rng, 16, 16)))
    gts = [torch.from_numpy(g) for g in stress_gt(rng, 16, 16, len(maps))]
    for version in (1, 2):
        one_shot = metrics.max_box_acc(maps, gts, version=version)  # type: ignore[arg-type]
        cls = metrics.MaxBoxAcc(version).update(maps, gts).compute()  # type: ignore[arg-type]
        assert one_shot.scalars() == cls.scalars()
    logits, targets = torch.rand(len(maps), 4), torch.arange(len(maps)) % 4
    one_shot = metrics.localization_accuracy(maps, gts, logits=logits, targets=targets, image_size=16)
    cls = (
        metrics.LocalizationAccuracy(image_size=16)
        .update(maps, gts, logits=logits, targets=targets)
        .compute()
    )
    assert one_shot.scalars() == cls.scalars() and one_shot.top1_loc is not None
    assert isinstance(metrics.BoxAccuracy("ornet"), metrics.LocalizationAccuracy)
    assert metrics.BoxAccuracy("maxboxacc").version == 1  # type: ignore[union-attr]
    assert metrics.BoxAccuracy().version == 2  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="image_size applies to protocol 'ornet' only"):
        metrics.BoxAccuracy("maxboxacc", image_size=16)
    with pytest.raises(ValueError, match="version must be 1"):
        metrics.MaxBoxAcc(3)  # type: ignore[arg-type]
    for metric in (metrics.LocalizationAccuracy, metrics.MaxBoxAcc, metrics.PxAP):
        assert metric.higher_is_better is True


# -- inputs on several devices ---------------------------------------------------------------------------


def test_gt_box_helpers_follow_the_boxes_device_and_box_iou_names_a_mismatch() -> None:
    # before: boxes on another device than the CPU failed inside the arithmetic (CPU scale tensors)
    meta = torch.tensor([[45.0, 10.0, 79.0, 30.0]], device="meta")
    assert metrics.wsoleval_gt_boxes(meta, (80, 40)).device.type == "meta"
    assert metrics.ornet_gt_boxes(meta, (80, 40)).device.type == "meta"
    with pytest.raises(ValueError, match="boxes1 is on cpu but boxes2 is on meta"):
        metrics.box_iou(torch.zeros(4), torch.zeros(4, device="meta"), plus_one=True)
