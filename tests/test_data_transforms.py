"""``lowcam.data``: the box-carrying transforms (against torchvision's tensors and plain box arithmetic) and the
checks of the synthetic sets' arguments; the readers are in ``test_data.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from lowcam.data import (
    CenterCrop,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    collate_samples,
    ornet_test_transform,
)


def _white_box_image(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    image = Image.new("RGB", (width, height), (0, 0, 0))
    x0, y0, x1, y1 = box
    image.paste((255, 255, 255), (x0, y0, x1, y1))
    return image


def _bright_extent(tensor: torch.Tensor) -> tuple[float, float, float, float]:
    ys, xs = torch.nonzero(tensor.mean(0) > 0.5, as_tuple=True)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@pytest.mark.parametrize("seed", range(6))
def test_boxes_follow_resize_crop_and_flip(seed: int) -> None:
    torch.manual_seed(seed)
    box = (24, 10, 56, 30)  # x0, y0, x1 (exclusive), y1
    image = _white_box_image(80, 40, box)
    boxes = torch.tensor([box], dtype=torch.float64)
    steps = Compose([Resize(64), RandomHorizontalFlip(0.5), RandomCrop(48)], mean=(0, 0, 0), std=(1, 1, 1))
    tensor, moved = steps(image, boxes)
    assert tensor.shape == (3, 48, 48)
    x0, y0, x1, y1 = _bright_extent(tensor)
    # the white block lands where the box says, up to the resize's interpolation at the edges
    assert moved[0].tolist() == pytest.approx([x0, y0, x1, y1], abs=1.01)


def test_center_crop_matches_ornet_protocol_box_arithmetic() -> None:
    image = Image.new("RGB", (500, 300))
    boxes = torch.tensor([[50.0, 30.0, 250.0, 150.0]], dtype=torch.float64)
    _, moved = ornet_test_transform(256, 224, (0, 0, 0), (1, 1, 1))(image, boxes)
    expected = [50 * 256 / 500 - 16, 30 * 256 / 300 - 16, 250 * 256 / 500 - 16, 150 * 256 / 300 - 16]
    assert moved[0].tolist() == pytest.approx(expected, abs=1e-9)


def test_flip_mirrors_boxes_and_crop_never_clips() -> None:
    image = Image.new("RGB", (20, 10))
    boxes = torch.tensor([[2.0, 1.0, 8.0, 9.0]], dtype=torch.float64)
    _, flipped = RandomHorizontalFlip(1.0)(image, boxes)
    assert flipped.tolist() == [[12.0, 1.0, 18.0, 9.0]]
    _, cropped = CenterCrop(8)(image, boxes)
    assert cropped.tolist() == [[-4.0, 0.0, 2.0, 8.0]]  # left 6, top 1; not clipped


def test_compose_is_torchvision_to_tensor_then_normalize() -> None:
    """The tensor is bit for bit what torchvision's ``to_tensor`` and ``normalize`` make of the image."""
    tf = pytest.importorskip("torchvision.transforms.functional")
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    tensor, boxes = Compose([], mean, std)(image, torch.zeros(0, 4))
    assert torch.equal(tensor, tf.normalize(tf.to_tensor(image), mean, std)) and boxes.shape == (0, 4)
    grey, _ = Compose([], mean, std)(image.convert("L"), torch.zeros(0, 4))  # other modes become RGB
    assert torch.equal(grey, tf.normalize(tf.to_tensor(image.convert("L").convert("RGB")), mean, std))
    cropped, moved = CenterCrop(9)(image, torch.tensor([[4.0, 2.0, 12.0, 11.0]]))
    assert cropped.tobytes() == tf.crop(image, 2, 4, 9, 9).tobytes()
    assert moved.tolist() == [[0.0, 0.0, 8.0, 9.0]]


def test_high_bit_depth_and_integer_boxes_are_not_truncated() -> None:
    import numpy as np

    from lowcam.data import to_rgb

    deep = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))  # I;16, half of the range
    tensor, _ = Compose([], (0.0,) * 3, (1.0,) * 3)(deep, torch.zeros(0, 4))
    assert torch.equal(tensor, Compose([], (0.0,) * 3, (1.0,) * 3)(to_rgb(deep), torch.zeros(0, 4))[0])
    assert abs(float(tensor.mean()) - 128 / 255) < 1e-6  # scaled by 257, not clipped to white
    _, boxes = Resize(20)(Image.new("RGB", (40, 30)), torch.tensor([[1, 2, 3, 4]]))
    assert boxes.dtype == torch.float64 and boxes.tolist() == [[0.5, 2 * 20 / 30, 1.5, 4 * 20 / 30]]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Resize(0), "size must be a positive int, got 0"),
        (lambda: CenterCrop(True), "size must be a positive int, got True"),
        (lambda: RandomCrop(10.5), "size must be a positive int, got 10.5"),
        (lambda: RandomHorizontalFlip(p=2), r"p must be a probability in \[0, 1\], got 2"),
        (lambda: Compose([], mean=(0.5, 0.5)), r"mean must be three numbers \(R, G, B\)"),
        (lambda: Compose([], std=(1.0, 0.0, 1.0)), "std must not hold 0"),
        (lambda: ornet_test_transform(64, 72), r"crop must be at most resize \(64\), got 72"),
        (lambda: collate_samples([]), "collate_samples needs at least one item"),
    ],
)
def test_bad_transform_arguments_are_named(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_synthetic_specs_and_writer_refuse_bad_values(tmp_path: Path) -> None:
    import numpy as np

    from lowcam.data import ShapesSpec, tight_box, write_cub, write_shapes

    for bad, match in [
        ({"classes": 9}, r"classes: got 9, expected an int in 1\.\.8"),
        ({"min_size": 50, "max_size": 40}, "min_size/max_size: got 50/40"),
        ({"min_size": 4, "max_size": 40}, "min_size/max_size: got 4/40"),
        ({"max_object": 1.5}, "min_object/max_object"),
        ({"clutter": -1}, "clutter: got -1"),
    ]:
        with pytest.raises(ValueError, match=match):
            ShapesSpec(**bad)
    spec = ShapesSpec(classes=2, train_per_class=1, test_per_class=1, min_size=16, max_size=16)
    assert write_shapes(str(tmp_path / "shapes"), spec) == 4  # a str path is a path
    with pytest.raises(ValueError, match="names must be CUB-style"):
        write_cub(
            tmp_path / "cub",
            ["albatross"],
            1,
            1,
            lambda label, i: (Image.new("RGB", (8, 8)), (0, 0, 1, 1), {}),
        )
    with pytest.raises(ValueError, match="mask must be a 2-D array with a True pixel"):
        tight_box(np.zeros((4, 4), dtype=bool))
