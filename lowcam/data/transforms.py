"""Image transforms that carry bounding boxes along: resize, crops, horizontal flip, normalisation.

Boxes are float tensors ``(K, 4)`` of ``(x0, y0, x1, y1)`` in pixels of the current image. Resizing
scales them, cropping shifts them, flipping mirrors them; nothing clips them (ORNet's protocol keeps a
box that leaves the crop as it is). Random draws use torch's global generator, so the training RNG
state in a checkpoint covers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from lowcam.data.readers import to_rgb
from lowcam.metrics.dataset import IMAGENET_MEAN, IMAGENET_STD, _image_tensor, _normalisation, _pillow

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "BoxTransform",
    "CenterCrop",
    "Compose",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Resize",
    "ornet_test_transform",
    "train_transform",
    "wsol_test_transform",
]


class BoxTransform(Protocol):
    """A step of a :class:`Compose`: ``(image, boxes (K, 4)) -> (image, boxes)``, the boxes moved with the image."""

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]: ...


def _side(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _float_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """``boxes`` as a floating tensor (integer boxes become float64, so scaling does not truncate them)."""
    return boxes if boxes.is_floating_point() else boxes.to(torch.float64)


class Resize:
    """Squash the image to ``size × size`` (no aspect ratio kept, as ORNet and wsolevaluation do; Pillow's
    bilinear filter). Boxes are scaled by ``size / W`` and ``size / H``.

    Args:
        size: the side of the result, in pixels.

    Raises:
        ValueError: ``size`` is not a positive int.
    """

    def __init__(self, size: int) -> None:
        self.size = _side("size", size)

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]:
        boxes = _float_boxes(boxes)
        width, height = image.size
        scale = torch.tensor([self.size / width, self.size / height] * 2, dtype=boxes.dtype)
        return image.resize((self.size, self.size), _pillow().Resampling.BILINEAR), boxes * scale


def _crop(
    image: Image.Image, boxes: torch.Tensor, top: int, left: int, size: int
) -> tuple[Image.Image, torch.Tensor]:
    boxes = _float_boxes(boxes)
    shift = torch.tensor([left, top, left, top], dtype=boxes.dtype)
    return image.crop((left, top, left + size, top + size)), boxes - shift


class CenterCrop:
    """Crop the central ``size × size`` window (torchvision's offsets: ``round((H - size) / 2)``); boxes are
    shifted by the window's offset and not clipped (a box may leave the crop, as ORNet's protocol keeps it).

    Args:
        size: the side of the window, in pixels.

    Raises:
        ValueError: ``size`` is not a positive int; at call time, an image smaller than the window.
    """

    _what = "centre-crop"

    def __init__(self, size: int) -> None:
        self.size = _side("size", size)

    def _offsets(self, height: int, width: int) -> tuple[int, int]:
        return round((height - self.size) / 2.0), round((width - self.size) / 2.0)

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]:
        width, height = image.size
        if width < self.size or height < self.size:
            raise ValueError(f"cannot {self._what} {self.size}×{self.size} from a {width}×{height} image")
        top, left = self._offsets(height, width)
        return _crop(image, boxes, top, left, self.size)


class RandomCrop(CenterCrop):
    """Crop a random ``size × size`` window, its offsets drawn from torch's global generator (top, then left);
    boxes are shifted, not clipped.

    Args:
        size: the side of the window, in pixels.

    Raises:
        ValueError: ``size`` is not a positive int; at call time, an image smaller than the window.
    """

    _what = "crop"

    def _offsets(self, height: int, width: int) -> tuple[int, int]:
        top = int(torch.randint(0, height - self.size + 1, ()).item())
        return top, int(torch.randint(0, width - self.size + 1, ()).item())


class RandomHorizontalFlip:
    """Mirror the image with probability ``p`` (one draw of torch's global generator per call); boxes become
    ``(W - x1, y0, W - x0, y1)``.

    Args:
        p: the probability of a flip, in [0, 1].

    Raises:
        ValueError: ``p`` outside [0, 1].
    """

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]:
        if float(torch.rand(())) >= self.p:
            return image, boxes
        boxes = _float_boxes(boxes)
        width = image.size[0]
        flipped = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), dim=1)
        return image.transpose(_pillow().Transpose.FLIP_LEFT_RIGHT), flipped


class Compose:
    """Apply box transforms in order, then make the image a normalised ``(3, H, W)`` float32 tensor.

    The tensor is the RGB bytes over 255, minus ``mean``, over ``std``: for an RGB image, bit for bit what
    torchvision's ``to_tensor`` and ``normalize`` give (in float32). An image of another mode is made RGB
    first by :func:`~lowcam.data.to_rgb` (high bit depths scaled, not clipped).

    Args:
        transforms: the :class:`BoxTransform` steps, applied in order.
        mean: the per-channel mean (ImageNet's by default; None: none subtracted).
        std: the per-channel standard deviation, no zero (ImageNet's by default; None: no division).

    Raises:
        ValueError: ``mean`` or ``std`` is not three numbers, or ``std`` holds a zero.
    """

    def __init__(
        self,
        transforms: Sequence[BoxTransform],
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
    ) -> None:
        self.transforms = list(transforms)
        self.mean, self.std = _normalisation(mean, std)

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in self.transforms:
            image, boxes = transform(image, boxes)
        rgb = image if image.mode == "RGB" else to_rgb(image)
        return _image_tensor(rgb, self.mean, self.std), boxes


def _check_crop(resize: int, crop: int) -> None:
    if _side("crop", crop) > _side("resize", resize):
        raise ValueError(f"crop must be at most resize ({resize}), got {crop}")


def train_transform(
    resize: int,
    crop: int,
    flip: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """ORNet's training augmentation: squash to ``resize²``, a random horizontal flip, a random ``crop²``.

    Args:
        resize: the side the image is squashed to (the paper's 256).
        crop: the side of the random window (the paper's 224), at most ``resize``.
        flip: whether to flip half of the images.
        mean: the per-channel mean of the normalisation.
        std: the per-channel standard deviation of the normalisation.

    Returns:
        the :class:`Compose`: ``(image, boxes) -> (tensor (3, crop, crop), boxes in the crop's pixels)``.

    Raises:
        ValueError: a side that is not a positive int, ``crop > resize``, or a bad ``mean`` / ``std``.
    """
    _check_crop(resize, crop)
    steps: list[BoxTransform] = [Resize(resize)]
    if flip:
        steps.append(RandomHorizontalFlip())
    steps.append(RandomCrop(crop))
    return Compose(steps, mean, std)


def ornet_test_transform(
    resize: int, crop: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Compose:
    """Protocol ``"ornet"``: squash to ``resize²``, then the central ``crop²`` (boxes scaled and shifted, not
    clipped). The arguments and the errors are :func:`train_transform`'s; the window is the central one.

    Returns:
        the :class:`Compose`: ``(image, boxes) -> (tensor (3, crop, crop), boxes in the crop's pixels)``.

    Example:
        >>> from PIL import Image
        >>> image, boxes = Image.new("RGB", (80, 40)), torch.tensor([[8.0, 4.0, 40.0, 36.0]], dtype=torch.float64)
        >>> tensor, moved = ornet_test_transform(64, 56)(image, boxes)
        >>> tuple(tensor.shape), moved.round(decimals=2).tolist()  # ×0.8, ×1.6, then the crop's offset (4, 4)
        ((3, 56, 56), [[2.4, 2.4, 28.0, 53.6]])
    """
    _check_crop(resize, crop)
    return Compose([Resize(resize), CenterCrop(crop)], mean, std)


def wsol_test_transform(
    crop: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Compose:
    """Protocol ``"wsoleval"``: squash the image to ``crop²`` (no crop), as wsolevaluation does.

    The boxes come back scaled with the image; :class:`~lowcam.data.SampleDataset`'s ``wsol_score_size``
    replaces them by wsolevaluation's own rescaling of the original boxes.

    Args:
        crop: the side the image is squashed to.
        mean: the per-channel mean of the normalisation.
        std: the per-channel standard deviation of the normalisation.

    Returns:
        the :class:`Compose`: ``(image, boxes) -> (tensor (3, crop, crop), boxes)``.
    """
    return Compose([Resize(crop)], mean, std)
