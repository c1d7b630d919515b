"""Image transforms that carry bounding boxes along: resize, crops, horizontal flip, normalisation.

Boxes are float tensors ``(K, 4)`` of ``(x0, y0, x1, y1)`` in pixels of the current image. Resizing
scales them, cropping shifts them, flipping mirrors them; nothing clips them (ORNet's protocol keeps a
box that leaves the crop as it is). Random draws use torch's global generator, so the training RNG
state in a checkpoint covers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from lowcam.metrics.dataset import IMAGENET_MEAN, IMAGENET_STD, _pillow

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
    """A transform of ``(image, boxes)`` pairs."""

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]: ...


class Resize:
    """Squash the image to ``size × size`` (no aspect ratio kept, as ORNet and wsolevaluation do).

    Boxes are scaled by ``size / W`` and ``size / H``.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]:
        width, height = image.size
        scale = torch.tensor([self.size / width, self.size / height] * 2, dtype=boxes.dtype)
        return image.resize((self.size, self.size), _pillow().Resampling.BILINEAR), boxes * scale


def _crop(
    image: Image.Image, boxes: torch.Tensor, top: int, left: int, size: int
) -> tuple[Image.Image, torch.Tensor]:
    shift = torch.tensor([left, top, left, top], dtype=boxes.dtype)
    return image.crop((left, top, left + size, top + size)), boxes - shift


class CenterCrop:
    """Crop the central ``size × size`` window (torchvision's offsets: ``round((H - size) / 2)``)."""

    _what = "centre-crop"

    def __init__(self, size: int) -> None:
        self.size = size

    def _offsets(self, height: int, width: int) -> tuple[int, int]:
        return round((height - self.size) / 2.0), round((width - self.size) / 2.0)

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]:
        width, height = image.size
        if width < self.size or height < self.size:
            raise ValueError(f"cannot {self._what} {self.size}×{self.size} from a {width}×{height} image")
        top, left = self._offsets(height, width)
        return _crop(image, boxes, top, left, self.size)


class RandomCrop(CenterCrop):
    """Crop a random ``size × size`` window (offsets drawn from torch's global generator)."""

    _what = "crop"

    def _offsets(self, height: int, width: int) -> tuple[int, int]:
        top = int(torch.randint(0, height - self.size + 1, ()).item())
        return top, int(torch.randint(0, width - self.size + 1, ()).item())


class RandomHorizontalFlip:
    """Mirror the image with probability ``p``; boxes become ``(W - x1, y0, W - x0, y1)``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[Image.Image, torch.Tensor]:
        if float(torch.rand(())) >= self.p:
            return image, boxes
        width = image.size[0]
        flipped = torch.stack((width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]), dim=1)
        return image.transpose(_pillow().Transpose.FLIP_LEFT_RIGHT), flipped


class Compose:
    """Apply box transforms in order, then convert to a normalised ``(3, H, W)`` float32 tensor: the RGB
    bytes over 255, minus ``mean``, over ``std`` (what torchvision's ``to_tensor`` and ``normalize`` give)."""

    def __init__(
        self,
        transforms: Sequence[BoxTransform],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.transforms = list(transforms)
        self.mean = list(mean)
        self.std = list(std)

    def __call__(self, image: Image.Image, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in self.transforms:
            image, boxes = transform(image, boxes)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True))
        tensor = pixels.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return tensor.sub(mean).div(std), boxes


def train_transform(
    resize: int,
    crop: int,
    flip: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """ORNet's training augmentation: resize ``resize²``, random flip, random crop ``crop``."""
    steps: list[BoxTransform] = [Resize(resize)]
    if flip:
        steps.append(RandomHorizontalFlip())
    steps.append(RandomCrop(crop))
    return Compose(steps, mean, std)


def ornet_test_transform(
    resize: int, crop: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Compose:
    """Protocol ``"ornet"``: resize ``resize²``, centre crop ``crop`` (boxes scaled and shifted, float).

    Example:
        >>> from PIL import Image
        >>> image, boxes = Image.new("RGB", (80, 40)), torch.tensor([[8.0, 4.0, 40.0, 36.0]], dtype=torch.float64)
        >>> tensor, moved = ornet_test_transform(64, 56)(image, boxes)
        >>> tuple(tensor.shape), moved.round(decimals=2).tolist()  # ×0.8, ×1.6, then the crop's offset (4, 4)
        ((3, 56, 56), [[2.4, 2.4, 28.0, 53.6]])
    """
    return Compose([Resize(resize), CenterCrop(crop)], mean, std)


def wsol_test_transform(
    crop: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Compose:
    """Protocol ``"wsoleval"``: squash the image to ``crop²`` (no crop). Boxes are rescaled separately."""
    return Compose([Resize(crop)], mean, std)
