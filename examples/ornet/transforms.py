"""Image transforms that carry bounding boxes along: resize, crops, horizontal flip, normalisation.

Boxes are float tensors ``(K, 4)`` of ``(x0, y0, x1, y1)`` in pixels of the current image. Resizing
scales them, cropping shifts them, flipping mirrors them; nothing clips them (ORNet's protocol keeps a
box that leaves the crop as it is). Random draws use torch's global generator, so the training RNG
state in a checkpoint covers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from lowcam.metrics import IMAGENET_MEAN, IMAGENET_STD


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
        return image.resize((self.size, self.size), Image.Resampling.BILINEAR), boxes * scale


def _crop(
    image: Image.Image, boxes: torch.Tensor, top: int, left: int, size: int
) -> tuple[Image.Image, torch.Tensor]:
    shift = torch.tensor([left, top, left, top], dtype=boxes.dtype)
    return TF.crop(image, top, left, size, size), boxes - shift  # type: ignore[return-value]


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
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), flipped


class Compose:
    """Apply box transforms in order, then convert to a normalised ``(3, H, W)`` float tensor."""

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
        tensor = TF.normalize(TF.to_tensor(image), self.mean, self.std)
        return tensor, boxes


def train_transform(
    resize: int, crop: int, flip: bool, mean: Sequence[float], std: Sequence[float]
) -> Compose:
    """ORNet's training augmentation: resize ``resize²``, random flip, random crop ``crop``."""
    steps: list[BoxTransform] = [Resize(resize)]
    if flip:
        steps.append(RandomHorizontalFlip())
    steps.append(RandomCrop(crop))
    return Compose(steps, mean, std)


def ornet_test_transform(resize: int, crop: int, mean: Sequence[float], std: Sequence[float]) -> Compose:
    """Protocol ``"ornet"``: resize ``resize²``, centre crop ``crop`` (boxes scaled and shifted, float)."""
    return Compose([Resize(resize), CenterCrop(crop)], mean, std)


def wsol_test_transform(crop: int, mean: Sequence[float], std: Sequence[float]) -> Compose:
    """Protocol ``"wsoleval"``: squash the image to ``crop²`` (no crop). Boxes are rescaled separately."""
    return Compose([Resize(crop)], mean, std)
