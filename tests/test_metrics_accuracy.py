"""BoxAccuracy against the reference loops: every per-threshold count, both protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_reference import (
    ref_ornet_counts,
    ref_prepare_scoremap,
    ref_wsoleval_counts,
    ref_wsoleval_thresholds,
    stress_gt,
    stress_maps,
)

from lowcam import metrics


def _batch(h: int, w: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    maps = stress_maps(rng, h, w)
    gts = stress_gt(rng, h, w, len(maps))
    # GT boxes that match some contours well, so that the counts are not all zero
    gts[0] = np.array([[0, 0, w // 2, h // 2], [w // 2, h // 2, w - 1, h - 1]])
    gts[5] = np.array([[w - 5, 1, w - 2, 4]])
    return maps, gts


@pytest.mark.parametrize("protocol", ["maxboxacc", "maxboxacc_v2"])
@pytest.mark.parametrize(("h", "w"), [(17, 23), (24, 24)])
def test_wsoleval_counts_equal_reference(protocol: str, h: int, w: int) -> None:
    maps, gts = _batch(h, w, seed=h * w)
    multi = protocol == "maxboxacc_v2"
    deltas = (0.3, 0.5, 0.7) if multi else (0.5,)
    expected = ref_wsoleval_counts(maps, gts, multi=multi, iou_thresholds=deltas)
    metric = metrics.BoxAccuracy(protocol, chunk_size=5)  # chunks split the batch unevenly
    half = len(maps) // 2
    for part in (slice(0, half), slice(half, None)):
        batch = torch.from_numpy(np.stack(maps[part]))
        metric.update(batch, [torch.from_numpy(g) for g in gts[part]])
    out = metric.compute()
    got = np.stack([out.counts[d].numpy() for d in deltas])
    np.testing.assert_array_equal(got, expected)
    assert out.n == len(maps)
    assert got.sum() > 0
    acc = expected * 100.0 / len(maps)
    for i, d in enumerate(deltas):
        assert out.acc[d] == acc[i].max()
        assert out.threshold[d] == ref_wsoleval_thresholds()[acc[i].argmax()]
    assert out.value == pytest.approx(np.mean(acc.max(1)), abs=1e-12)


def test_v1_and_v2_differ_where_they_should() -> None:
    h = w = 20
    m = np.zeros((1, h, w))
    m[0, 1, 1:16] = 1.0  # a long line (area 0) ...
    m[0, 10:13, 10:13] = 1.0  # ... loses to a 3x3 square in v1
    gt = [torch.tensor([[1, 1, 16, 2]])]
    v1 = metrics.BoxAccuracy("maxboxacc").update(torch.from_numpy(m), gt).compute()
    v2 = metrics.BoxAccuracy("maxboxacc_v2", iou_thresholds=(0.5,)).update(torch.from_numpy(m), gt).compute()
    assert v1.value == 0.0
    assert v2.value == 100.0


def test_prepared_scoremaps_end_to_end() -> None:
    rng = np.random.default_rng(3)
    cams = rng.random((4, 7, 7)) ** 3
    prepared = metrics.prepare_scoremap(torch.from_numpy(cams), size=32)
    ref = [ref_prepare_scoremap(c, 32) for c in cams]
    np.testing.assert_allclose(prepared.numpy(), np.stack(ref), rtol=0, atol=1e-12)
    gts = stress_gt(rng, 32, 32, 4)
    metric = metrics.BoxAccuracy("maxboxacc_v2").update(prepared, [torch.from_numpy(g) for g in gts])
    expected = ref_wsoleval_counts(list(prepared.numpy()), gts, multi=True, iou_thresholds=(0.3, 0.5, 0.7))
    got = np.stack([c.numpy() for c in metric.compute().counts.values()])
    np.testing.assert_array_equal(got, expected)


def test_chunk_size_does_not_change_counts() -> None:
    maps, gts = _batch(16, 16, seed=11)
    batch = torch.from_numpy(np.stack(maps))
    boxes = [torch.from_numpy(g) for g in gts]
    a = metrics.BoxAccuracy("maxboxacc_v2", chunk_size=1).update(batch, boxes).compute()
    b = metrics.BoxAccuracy("maxboxacc_v2", chunk_size=64).update(batch, boxes).compute()
    for d in (0.3, 0.5, 0.7):
        assert torch.equal(a.counts[d], b.counts[d])


def test_ornet_counts_equal_reference() -> None:
    rng = np.random.default_rng(5)
    b, h, w = 12, 14, 14
    maps = rng.random((b, h, w)).astype(np.float32) ** 2
    maps[0] = 0.01  # nothing above any threshold: the full-image box
    maps[1, 3, 3] = np.nan  # NaN pixels are background
    maps[2] = 0.0
    maps[2, 4:9, 2:7] = 0.97
    scale = 224 / w
    gts = []
    for _ in range(b):
        k = int(rng.integers(1, 3))
        x = np.sort(rng.uniform(-10, 230, size=(k, 2)), axis=1)
        y = np.sort(rng.uniform(-10, 230, size=(k, 2)), axis=1)
        gts.append(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1))
    gts[0] = np.array([[0.0, 0.0, 224.0, 224.0]])
    gts[2] = np.array([[2 * scale, 4 * scale, 6 * scale, 8 * scale], [0, 0, 10, 10]])
    logits = rng.standard_normal((b, 10))
    targets = rng.integers(0, 10, size=b)
    taus = [(i + 1) / 20 for i in range(19)]
    known, top1, top5 = ref_ornet_counts(list(maps), gts, taus, scale=scale, logits=logits, targets=targets)
    metric = metrics.BoxAccuracy("ornet")
    metric.update(
        torch.from_numpy(maps).unsqueeze(1),
        [torch.from_numpy(g) for g in gts],
        logits=torch.from_numpy(logits),
        targets=torch.from_numpy(targets),
    )
    out = metric.compute()
    np.testing.assert_array_equal(out.counts[0.5].numpy(), known)
    np.testing.assert_array_equal(out.top1_counts[0.5].numpy(), top1)  # type: ignore[index]
    np.testing.assert_array_equal(out.top5_counts[0.5].numpy(), top5)  # type: ignore[index]
    j = int(np.argmax(known))
    assert out.gt_known == known[j] * 100.0 / b == out.value
    assert out.top1_loc == top1[j] * 100.0 / b
    assert out.top5_loc == top5[j] * 100.0 / b
    assert out.threshold[0.5] == taus[j]
    assert known.sum() > 0


def test_boxes_all_pixels_matches_loop() -> None:
    rng = np.random.default_rng(2)
    maps = rng.random((3, 5, 6)).astype(np.float32)
    maps[1, 2, 2] = np.nan
    taus = np.array([0.1, 0.5, 0.93, 0.999])
    out = metrics.boxes_all_pixels(torch.from_numpy(maps), taus, scale=4.0).numpy()
    for t, tau in enumerate(taus):
        for i in range(3):
            ys, xs = np.nonzero(maps[i].astype(np.float64) > tau)
            expect = (
                [0, 0, 24, 20] if len(xs) == 0 else [xs.min() * 4, ys.min() * 4, xs.max() * 4, ys.max() * 4]
            )
            assert out[t, i].tolist() == expect


def test_boxes_all_pixels_scale_in_float64() -> None:
    """A scale that float32 cannot hold (224 / 57) gives the float64 products, as the reference's NumPy does."""
    rng = np.random.default_rng(5)
    maps = rng.random((2, 57, 57))
    taus = np.array([0.3, 0.9])
    s = 224 / 57
    out = metrics.boxes_all_pixels(torch.from_numpy(maps), taus, scale=s)
    assert out.dtype == torch.float64
    for t, tau in enumerate(taus):
        for i in range(2):
            ys, xs = np.nonzero(maps[i] > tau)
            assert out[t, i].tolist() == [xs.min() * s, ys.min() * s, xs.max() * s, ys.max() * s]


def test_box_iou_conventions() -> None:
    a = torch.tensor([[0, 0, 9, 9], [5, 5, 5, 5]])
    b = torch.tensor([[0, 0, 9, 4], [6, 6, 8, 8]])
    assert metrics.box_iou(a, b, plus_one=True).tolist() == [0.5, 0.0]
    assert metrics.box_iou(a.double(), b.double(), plus_one=False).tolist() == [36 / 81, 0.0]


def test_thresholds_equal_numpy() -> None:
    assert np.array_equal(metrics.wsoleval_thresholds().numpy(), np.arange(0, 1, 0.001))
    assert np.array_equal(metrics.wsoleval_thresholds(0.01).numpy(), np.arange(0, 1, 0.01))
    assert metrics.ornet_thresholds().tolist() == [(i + 1) / 20 for i in range(19)]


def test_reset_and_compute_before_update() -> None:
    metric = metrics.BoxAccuracy("maxboxacc")
    with pytest.raises(RuntimeError, match="no image was evaluated"):
        metric.compute()
    metric.update(torch.zeros(1, 4, 4), [torch.tensor([[0, 0, 1, 1]])])
    assert metric.compute().n == 1
    metric.reset()
    with pytest.raises(RuntimeError):
        metric.compute()


def test_bad_inputs_name_the_image() -> None:
    metric = metrics.BoxAccuracy("maxboxacc_v2")
    good = [torch.tensor([[0, 0, 2, 2]])] * 2
    with pytest.raises(TypeError, match="maps must have a floating dtype"):
        metric.update(torch.zeros(2, 4, 4, dtype=torch.uint8), good)
    with pytest.raises(ValueError, match=r"maps must hold one 2-D map per image.*got shape \(2, 3, 4, 4\)"):
        metric.update(torch.zeros(2, 3, 4, 4), good)
    with pytest.raises(ValueError, match="gt_boxes has 1 entries for a batch of 2 maps"):
        metric.update(torch.zeros(2, 4, 4), good[:1])
    with pytest.raises(ValueError, match=r"gt_boxes\[1\] must have shape \(K, 4\).*got shape \(2, 3\)"):
        metric.update(torch.zeros(2, 4, 4), [good[0], torch.zeros(2, 3)])
    with pytest.raises(ValueError, match=r"gt_boxes\[1\] \(shape \(2, 4\)\) row 1 .* x0 <= x1 and y0 <= y1"):
        metric.update(torch.zeros(2, 4, 4), [good[0], torch.tensor([[0, 0, 1, 1], [3, 0, 1, 1]])])
    bad = torch.zeros(2, 4, 4)
    bad[1, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"maps\[1\] \(shape \(4, 4\)\) has values in \[0.0, 1.5\]"):
        metric.update(bad, good)
    bad[1, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"maps\[1\] .* infinite"):
        metric.update(bad, good)
    ornet = metrics.BoxAccuracy("ornet")
    with pytest.raises(ValueError, match="logits and targets must be given together"):
        ornet.update(torch.zeros(2, 4, 4), good, logits=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"protocol must be one of"):
        metrics.BoxAccuracy("maxboxacc_v3")  # type: ignore[arg-type]
    assert metric.compute.__self__ is metric  # nothing was counted by the failed updates
    with pytest.raises(RuntimeError):
        metric.compute()


def test_ornet_rejects_infinite_maps_but_takes_nan() -> None:
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])] * 2
    maps = torch.full((2, 4, 4), 0.7)
    for value in (float("inf"), float("-inf")):
        bad = maps.clone()
        bad[1, 2, 3] = value
        with pytest.raises(ValueError, match=r"maps\[1\] \(shape \(4, 4\)\) holds an infinite value"):
            metrics.BoxAccuracy("ornet", image_size=16).update(bad, boxes)
    with_nan = maps.clone()
    with_nan[0, 0, 0] = float("nan")
    metrics.BoxAccuracy("ornet", image_size=16).update(with_nan, boxes)


@pytest.mark.parametrize("shape", [(7, 1, 1), (4, 9, 5), (3, 2, 1)])
def test_boxes_all_pixels_nan_free_path_matches_loop(shape: tuple[int, int, int]) -> None:
    """The path for maps known to hold no NaN (used by ``BoxAccuracy``) gives the loop's boxes, ties included."""
    from lowcam.metrics.ornet_boxes import _boxes_all_pixels

    rng = np.random.default_rng(sum(shape))
    maps = (rng.integers(0, 5, shape) / 4).astype(np.float32)  # ties with the thresholds
    taus = np.array([0.0, 0.25, 0.5, 0.6, 1.0])
    b, h, w = shape
    for nan_free in (True, False):
        out = _boxes_all_pixels(torch.from_numpy(maps), torch.from_numpy(taus), 2.0, 3.0, nan_free=nan_free)
        for t, tau in enumerate(taus):
            for i in range(b):
                ys, xs = np.nonzero(maps[i].astype(np.float64) > tau)
                expect = (
                    [0, 0, w * 2, h * 3]
                    if len(xs) == 0
                    else [xs.min() * 2, ys.min() * 3, xs.max() * 2, ys.max() * 3]
                )
                assert out[t, i].tolist() == expect


def test_gt_boxes_uniform_fast_path_matches_general_path() -> None:
    """Lists of equally shaped boxes (stacked at once) give the same result and errors as mixed lists."""
    from lowcam.metrics._inputs import check_gt_boxes

    cpu = torch.device("cpu")
    boxes = [torch.tensor([[1, 2, 3, 4], [0, 0, 5, 5]]) + i for i in range(3)]
    fast = check_gt_boxes("gt", boxes, 3, cpu)
    slow = check_gt_boxes("gt", [*boxes[:2], boxes[2].double()], 3, cpu)  # mixed dtypes: per-image path
    assert fast.dtype == torch.float64 and torch.equal(fast, slow)
    assert torch.equal(check_gt_boxes("gt", torch.stack(boxes), 3, cpu), fast)
    flat = check_gt_boxes("gt", [torch.tensor([1.0, 2, 3, 4])] * 2, 2, cpu)
    assert flat.shape == (2, 1, 4)
    bad = [b.clone() for b in boxes]
    bad[2][1, 0] = 9.0  # x0 > x1
    with pytest.raises(ValueError, match=r"gt\[2\] \(shape \(2, 4\)\) row 1"):
        check_gt_boxes("gt", bad, 3, cpu)
    with pytest.raises(ValueError, match=r"gt\[1\] \(shape \(1, 4\)\) row 0"):
        check_gt_boxes("gt", [torch.tensor([0.0, 0, 1, 1]), torch.tensor([0.0, float("nan"), 1, 1])], 2, cpu)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("protocol", ["ornet", "maxboxacc", "maxboxacc_v2"])
def test_cuda_counts_equal_cpu(protocol: str) -> None:
    """The same per-threshold counts on the GPU as on the CPU, stress maps and the default chunk size."""
    maps, gts = _batch(31, 29, seed=7)
    batch = torch.from_numpy(np.stack(maps))
    boxes = [torch.from_numpy(g) for g in gts]
    if protocol == "ornet":
        batch = batch.clamp(0, 1)
    cpu = metrics.BoxAccuracy(protocol).update(batch, boxes).compute()
    gpu = metrics.BoxAccuracy(protocol).update(batch.cuda(), [g.cuda() for g in boxes]).compute()
    for delta, counts in cpu.counts.items():
        assert torch.equal(gpu.counts[delta].cpu(), counts), delta
