"""Contour boxes (protocol "wsoleval") against OpenCV: hand-worked cases and random images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_reference import ref_boxes_at, ref_contours

from lowcam import metrics


def _boxes(img: np.ndarray, cut: int, largest_only: bool) -> list[list[int]]:
    out = metrics.contour_boxes(torch.from_numpy(img)[None], torch.tensor([cut]), largest_only=largest_only)
    return sorted(out.boxes.tolist())


def _u8(binary: np.ndarray) -> np.ndarray:
    return binary.astype(np.uint8) * 255


def test_square_beats_longer_line_in_v1() -> None:
    img = np.zeros((12, 20), bool)
    img[1, 2:17] = True  # 15 pixels, contourArea 0
    img[6:9, 3:6] = True  # 9 pixels, contourArea 4
    areas = sorted(a for _, a, _ in ref_contours(_u8(img), 0))
    assert areas == [0.0, 4.0]
    assert _boxes(_u8(img), 0, True) == [[3, 6, 6, 9]]
    assert _boxes(_u8(img), 0, False) == [[2, 1, 17, 2], [3, 6, 6, 9]]


def test_ring_hole_box_and_areas() -> None:
    img = np.zeros((7, 7), bool)
    img[1:6, 1:6] = True
    img[2:5, 2:5] = False  # a 3x3 hole
    contours = ref_contours(_u8(img), 0)
    assert sorted((box, area, hole) for box, area, hole in contours) == [
        ([1, 1, 6, 6], 14.0, True),  # hole (2..4) grown by one pixel: boundingRect (1, 1, 5, 5)
        ([1, 1, 6, 6], 16.0, False),
    ]
    assert _boxes(_u8(img), 0, False) == [[1, 1, 6, 6], [1, 1, 6, 6]]
    single = np.ones((5, 5), bool)
    single[2, 2] = False  # one-pixel hole: contour through its 4-neighbours, area 2
    assert sorted(a for _, a, _ in ref_contours(_u8(single), 0)) == [2.0, 16.0]
    assert _boxes(_u8(single), 0, False) == [[0, 0, 4, 4], [1, 1, 4, 4]]


def test_single_pixel_diagonal_and_border() -> None:
    img = np.zeros((6, 6), bool)
    img[2, 3] = True
    assert _boxes(_u8(img), 0, False) == [[3, 2, 4, 3]]  # w = h = 1
    diag = np.eye(6, dtype=bool)  # one 8-connected component, clipped at W - 1
    assert _boxes(_u8(diag), 0, False) == [[0, 0, 5, 5]]
    border = np.zeros((6, 8), bool)
    border[:, 6:] = True
    assert _boxes(_u8(border), 0, False) == ref_boxes_at(_u8(border), 0, True).tolist() == [[6, 0, 7, 5]]


def test_no_foreground_gives_zero_box() -> None:
    img = np.full((5, 5), 40, np.uint8)
    assert _boxes(img, 40, False) == [[0, 0, 0, 0]]
    assert _boxes(img, 255, True) == [[0, 0, 0, 0]]


def test_opencv_lists_top_level_contours_in_reverse_discovery_order() -> None:
    img = np.zeros((10, 30), bool)
    for j in range(6):
        img[1 + (j % 2) * 4 : 3 + (j % 2) * 4, 1 + j * 4 : 3 + j * 4] = True
    firsts = [box[1] * 30 + box[0] for box, _, _ in ref_contours(_u8(img), 0)]
    assert firsts == sorted(firsts, reverse=True)


def test_area_ties_go_to_the_last_discovered_component() -> None:
    img = np.zeros((10, 12), bool)
    img[1:4, 1:4] = True  # discovered first
    img[1:4, 7:10] = True  # same row, later: OpenCV lists it first
    img[6:9, 2:5] = True  # later still: listed first of all
    expected = ref_boxes_at(_u8(img), 0, False).tolist()
    assert expected == [[2, 6, 5, 9]]
    assert _boxes(_u8(img), 0, True) == expected
    ring = np.zeros((9, 9), bool)  # a hole and an outer contour of the same area compete
    ring[0:5, 0:5] = True
    ring[1:4, 1:4] = False
    ring[5:8, 5:8] = True
    assert _boxes(_u8(ring), 0, True) == ref_boxes_at(_u8(ring), 0, False).tolist()


def _check_against_opencv(images: np.ndarray) -> int:
    """Compare every cut of every image with OpenCV, both modes; returns the number of cuts checked."""
    cuts = np.arange(0, 255)
    batch = torch.from_numpy(images)
    t_cuts = torch.from_numpy(cuts)
    all_boxes = metrics.contour_boxes(batch, t_cuts, largest_only=False)
    largest = metrics.contour_boxes(batch, t_cuts, largest_only=True)
    b = images.shape[0]
    largest_boxes = largest.boxes.view(b, len(cuts), 4).numpy()
    key = (all_boxes.batch * len(cuts) + all_boxes.cut).numpy()
    boxes = all_boxes.boxes.numpy()
    checked = 0
    for i in range(b):
        levels = np.unique(np.concatenate([[0], images[i].ravel()]))
        for c in levels[levels < 255]:  # cuts between two levels give the same image
            mine = sorted(map(tuple, boxes[key == i * len(cuts) + c].tolist()))
            ref = sorted(map(tuple, ref_boxes_at(images[i], int(c), True).tolist()))
            assert mine == ref, (i, c, images[i])
            assert largest_boxes[i, c].tolist() == ref_boxes_at(images[i], int(c), False)[0].tolist(), (i, c)
            checked += 1
    return checked


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    levels=st.integers(2, 5),
    density=st.floats(0.05, 0.95),
)
def test_random_images_match_opencv(seed: int, h: int, w: int, levels: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    binary = (rng.random((4, h, w)) < density).astype(np.uint8) * 255
    graded = (rng.integers(0, levels, size=(4, h, w)) * (255 // (levels - 1))).astype(np.uint8)
    graded[rng.random((4, h, w)) > density] = 0
    _check_against_opencv(np.concatenate([binary, graded]))


def test_contour_area_formula_against_opencv() -> None:
    """The block-counting areas the implementation relies on, on random images (outer and hole contours)."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        h, w = rng.integers(2, 14, size=2)
        img = (rng.random((h, w)) < rng.uniform(0.3, 0.8)).astype(np.uint8)
        padded = np.pad(img, 1)
        contours, hier = cv2.findContours(img * 255, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        n_out, lab_out = cv2.connectedComponents(padded, connectivity=8)
        n_bg, lab_bg = cv2.connectedComponents(1 - padded, connectivity=4)
        outer = sorted(cv2.contourArea(c) for c, hh in zip(contours, hier[0]) if hh[3] < 0)
        holes = sorted(cv2.contourArea(c) for c, hh in zip(contours, hier[0]) if hh[3] >= 0)
        outside = lab_bg == lab_bg[0, 0]
        expect_outer = []
        for lab in range(1, n_out):
            _, alone = cv2.connectedComponents((lab_out != lab).astype(np.uint8), connectivity=4)
            filled = alone != alone[0, 0]  # the component with every hole (and whatever is inside) filled
            corners = filled[:-1, :-1].astype(int) + filled[1:, :-1] + filled[:-1, 1:] + filled[1:, 1:]
            expect_outer.append(float((corners == 4).sum() + 0.5 * (corners == 3).sum()))
        expect_holes = []
        for bg in range(1, n_bg):
            region = lab_bg == bg
            if region[outside].any():
                continue
            corners = region[:-1, :-1].astype(int) + region[1:, :-1] + region[:-1, 1:] + region[1:, 1:]
            expect_holes.append(float((corners >= 2).sum() + 0.5 * (corners == 1).sum()))
        assert sorted(expect_holes) == holes
        assert sorted(expect_outer) == outer


def test_contour_boxes_rejects_bad_input() -> None:
    u8 = torch.zeros(2, 4, 4, dtype=torch.uint8)
    with pytest.raises(TypeError, match="maps_u8 must be a uint8"):
        metrics.contour_boxes(u8.float(), torch.tensor([0]), largest_only=True)
    with pytest.raises(ValueError, match=r"maps_u8 must have shape .* got shape \(4, 4\)"):
        metrics.contour_boxes(u8[0], torch.tensor([0]), largest_only=True)
    with pytest.raises(ValueError, match=r"cuts must be in \[0, 255\]"):
        metrics.contour_boxes(u8, torch.tensor([256]), largest_only=True)
    with pytest.raises(ValueError, match=r"cuts must have shape .* got shape \(3, 1\)"):
        metrics.contour_boxes(u8, torch.zeros(3, 1, dtype=torch.int64), largest_only=True)


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_quantised_score_maps_match_opencv(noise: float) -> None:
    """CAM-like 8-bit maps (smooth: few leaves, plateaus at 0; noisy: thousands of leaves) at every level."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:40, 0:48]
    maps = np.zeros((3, 40, 48))
    for i in range(3):
        for _ in range(3):
            cy, cx, s = rng.uniform(0, 40), rng.uniform(0, 48), rng.uniform(3, 10)
            maps[i] += rng.uniform(0.2, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    maps += noise * rng.random(maps.shape)
    maps -= maps.min(axis=(1, 2), keepdims=True)
    maps /= maps.max(axis=(1, 2), keepdims=True)
    images = (maps * 255).astype(np.uint8)
    assert _check_against_opencv(images) > 3 * 100


def test_alive_intervals_cover_each_contour_once() -> None:
    """Every contour of every cut is one interval's row: expanding the intervals gives OpenCV's count."""
    from lowcam.metrics.contours import _contour_intervals

    rng = np.random.default_rng(3)
    img = (rng.integers(0, 4, size=(1, 16, 16)) * 60).astype(np.uint8)
    iv = _contour_intervals(torch.from_numpy(img), largest_only=False)
    assert bool((iv.lo < iv.hi).all()) and bool((iv.lo >= 0).all()) and bool((iv.hi <= 255).all())
    for cut in range(255):
        alive = int(((iv.lo <= cut) & (cut < iv.hi)).sum())
        assert alive == len(ref_contours(img[0], cut)), cut


@pytest.mark.parametrize("seed", range(4))
def test_euler_hole_test_matches_hole_tree(seed: int) -> None:
    """``_has_holes`` (Euler numbers) flags exactly the images whose hole tree has a hole at some cut."""
    from lowcam.metrics.contours import _has_holes, _hole_intervals, _outer_intervals

    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(
        torch.rand(24, 1, 4, 4, generator=g), size=(13, 11), mode="bilinear"
    )
    noisy = torch.rand(24, 13, 11, generator=g) * (torch.rand(24, 1, 1, generator=g) < 0.5)
    u8 = (torch.cat([smooth[:, 0], noisy]) * 255).to(torch.uint8)
    u = u8.to(torch.int64)
    holes = _hole_intervals(u)
    expected = torch.zeros(u.shape[0], dtype=torch.bool)
    expected[holes.image[holes.hi > holes.lo]] = True
    got = _has_holes(u8, _outer_intervals(u))
    assert torch.equal(got, expected)
    assert 0 < int(got.sum()) < u.shape[0]
