"""lowcam.metrics.box_from_map against the OpenCV oracle (tests/metrics_reference.py) and the batched metrics'
boxes; lowcam.metrics.plot_localization rendered to PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_reference import ref_boxes_at, stress_maps

from lowcam import metrics

TAUS = (0.0, 0.05, 0.3, 0.5, 0.77, 0.999, 1.0)


def _maps(h: int, w: int) -> list[np.ndarray]:
    return stress_maps(np.random.default_rng(3), h, w)


@pytest.mark.parametrize("shape", [(17, 23), (32, 32)])
def test_wsoleval_box_is_opencvs_largest_contour(shape: tuple[int, int]) -> None:
    for m in _maps(*shape):
        clean = np.zeros_like(m) if np.isnan(m).any() else m  # the reference zeroes a map holding NaN
        u8 = (clean * 255).astype(np.uint8)
        for tau in TAUS:
            expected = ref_boxes_at(u8, int(tau * int(u8.max())), multi=False)[0]
            got = metrics.box_from_map(torch.from_numpy(m), tau)
            assert got.dtype == torch.float64 and got.shape == (4,)
            assert got.tolist() == [float(v) for v in expected], (tau, m.shape)


def test_wsoleval_boxes_of_a_batch_are_those_the_metric_counts() -> None:
    """For each map, MaxBoxAcc at one threshold counts the image correct when its GT is box_from_map's box,
    and the batch form equals the single form."""
    maps = torch.from_numpy(np.stack(_maps(20, 24)))
    for tau in (0.2, 0.6):
        boxes = metrics.box_from_map(maps, tau)
        assert boxes.shape == (len(maps), 4)
        for i in range(len(maps)):
            assert torch.equal(boxes[i], metrics.box_from_map(maps[i], tau))
        nonempty = [i for i in range(len(maps)) if boxes[i].abs().sum() > 0]
        gt = [boxes[i].view(1, 4) for i in nonempty]
        acc = metrics.BoxAccuracy("maxboxacc", thresholds=[tau], iou_thresholds=[1.0])
        result = acc.update(maps[nonempty], gt).compute()
        assert result.counts[1.0].tolist() == [len(nonempty)]
        # and the contour engine gives the same box at the same cut
        u8 = metrics.quantize_scoremap(maps)
        cuts = torch.floor(tau * u8.flatten(1).amax(1).double()).long().view(-1, 1)
        engine = metrics.contour_boxes(u8, cuts, largest_only=True).boxes
        assert torch.equal(engine.double(), boxes)


def test_ornet_box_equals_the_numpy_oracle_and_boxes_all_pixels() -> None:
    rng = np.random.default_rng(5)
    maps = [rng.random((14, 18)) ** 3, np.zeros((14, 18)), *[np.nan_to_num(m) for m in _maps(14, 18)]]
    maps[3][2, 3] = np.nan  # NaN is background
    for m in maps:
        h, w = m.shape
        for tau in (0.05, 0.5, 0.95):
            ys, xs = np.nonzero(np.nan_to_num(m, nan=-1.0) > tau)
            sx, sy = 224 / w, 224 / h
            expected = (
                [0.0, 0.0, w * sx, h * sy]
                if len(xs) == 0
                else [xs.min() * sx, ys.min() * sy, xs.max() * sx, ys.max() * sy]
            )
            got = metrics.box_from_map(torch.from_numpy(m), tau, protocol="ornet", image_size=224)
            np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
            batched = metrics.boxes_all_pixels(torch.from_numpy(m)[None], [tau], scale=(sx, sy))[0, 0]
            assert torch.equal(got, batched)


def test_box_from_map_rejects_bad_input() -> None:
    m = torch.rand(6, 6)
    with pytest.raises(ValueError, match=r"scoremap must lie in \[0, 1\] for protocol 'wsoleval'"):
        metrics.box_from_map(m * 3, 0.5)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 1.5"):
        metrics.box_from_map(m, 1.5)
    with pytest.raises(ValueError, match="protocol must be 'ornet' or 'wsoleval'"):
        metrics.box_from_map(m, 0.5, protocol="maxboxacc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_size is for protocol 'ornet'"):
        metrics.box_from_map(m, 0.5, image_size=224)
    with pytest.raises(TypeError, match="scoremap must be a torch.Tensor"):
        metrics.box_from_map(m.numpy(), 0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="threshold must be a number"):
        metrics.box_from_map(m, "0.5")  # type: ignore[arg-type]


def test_plot_localization_renders_the_overlay_and_the_boxes(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    image = torch.full((3, 64, 64), 0.5)
    cam = torch.zeros(8, 8)
    cam[0:3, 0:3] = 1.0  # hot in the top-left corner

    def render(name: str, **kwargs: object) -> np.ndarray:
        fig, ax = plt.subplots(figsize=(2, 2), dpi=64)
        fig.subplots_adjust(0, 0, 1, 1)
        metrics.plot_localization(image, ax=ax, **kwargs)  # type: ignore[arg-type]
        fig.savefig(tmp_path / name, format="png")
        plt.close(fig)
        with Image.open(tmp_path / name) as png:
            return np.asarray(png.convert("RGB")).astype(np.int64)

    plain = render("plain.png")
    overlay = render("overlay.png", scoremap=cam)
    boxed = render("boxed.png", scoremap=cam, pred_box=torch.tensor([40.0, 40.0, 60.0, 60.0]))
    assert plain.shape == overlay.shape == (128, 128, 3)
    assert np.abs(plain - 128).max() <= 1, "the image alone is uniform grey"
    hot, cold = overlay[10:20, 10:20].mean((0, 1)), overlay[100:120, 100:120].mean((0, 1))
    assert hot[0] > hot[2] + 50, "the hot corner is red under jet"
    assert cold[2] > cold[0] + 50, "the cold corner is blue under jet"
    changed = np.abs(boxed - overlay).sum(2) > 30
    assert changed.any() and not changed[:64, :64].any(), "the box is drawn in the bottom-right only"
    ys, xs = np.nonzero(changed)
    green = boxed[ys, xs]
    assert (green[:, 1] > green[:, 0] + 50).mean() > 0.5, "the predicted box is lime"
    with pytest.raises(ValueError, match=r"pred_box must have shape \(4,\) or \(K, 4\)"):
        metrics.plot_localization(image, cam, pred_box=[1, 2, 3])
    with pytest.raises(ValueError, match=r"image must be \(3, H, W\), \(H, W, 3\) or \(H, W\)"):
        metrics.plot_localization(torch.zeros(5, 8, 8), cam)
    plt.close("all")


def test_plot_localization_grid_draws_one_panel_per_image(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    from PIL import Image

    images = torch.zeros(5, 3, 32, 32)
    cams = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    pred = torch.tensor([[8.0, 8.0, 23.0, 23.0]] * 5)
    gt = [torch.tensor([[4.0, 4.0, 27.0, 27.0]]), None, torch.zeros(0, 4), None, None]
    figure = metrics.plot_localization_grid(
        images, cams, pred, gt, titles=["a", None, None, None, None], columns=3, suptitle="grid"
    )
    axes = figure.axes
    assert len(axes) == 6 and not axes[5].axison  # 2 × 3, the last cell empty
    assert [len(ax.patches) for ax in axes[:5]] == [2, 1, 1, 1, 1] and axes[0].get_title() == "a"
    figure.savefig(tmp_path / "grid.png", format="png")
    with Image.open(tmp_path / "grid.png") as png:
        assert png.size == (round(3 * 1.6 * 80), round(2 * 1.6 * 80 + 0.55 * 80))  # panels, title, headings
    mixed = metrics.plot_localization_grid(
        [images[0], images[1]], [None, cams[1]], mean=[0.5] * 3, std=[0.5] * 3
    )
    assert len(mixed.axes[0].images) == 1 and len(mixed.axes[1].images) == 2  # no overlay, then one
    with pytest.raises(ValueError, match=r"scoremaps must hold one entry per image \(5\), got 2"):
        metrics.plot_localization_grid(images, cams[:2])
    with pytest.raises(ValueError, match="mean and std go together"):
        metrics.plot_localization_grid(images, mean=[0.5] * 3)
    with pytest.raises(ValueError, match="columns must be a positive int, got 0"):
        metrics.plot_localization_grid(images, columns=0)
    with pytest.raises(ValueError, match="images must hold at least one image"):
        metrics.plot_localization_grid([])
