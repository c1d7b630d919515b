"""``SampleDataset``: :class:`~lowcam.data.Sample` records through a box-aware transform, for a ``DataLoader``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from lowcam.data.readers import Sample, open_rgb
from lowcam.metrics.frames import wsoleval_gt_boxes

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["SampleDataset", "collate_samples"]

# A box-aware transform: ``(RGB image, boxes (K, 4)) -> (image tensor, boxes)``.
_Transform = Callable[["Image.Image", torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class SampleDataset(Dataset[tuple[torch.Tensor, int, torch.Tensor, int]]):
    """Images, labels and boxes of :class:`Sample` records through a box-aware transform (the training
    loops' dataset; :class:`lowcam.metrics.WSOLDataset` is the evaluation's, over wsolevaluation metadata).

    Items are ``(image (3, H, W), label, boxes (K, 4) float32, index)``. With ``wsol_score_size`` set the
    boxes are not transformed but rescaled as wsolevaluation does (:func:`lowcam.metrics.wsoleval_gt_boxes`:
    ``int(x · size / W)``, the product first) on the original coordinates (the images are squashed to the
    score map's frame). Batch the items with :func:`collate_samples`.

    Args:
        samples: the records (a :class:`DataSplit`'s ``samples``).
        transform: ``(RGB image, boxes (K, 4) float64) -> (image tensor, boxes)``, e.g.
            :func:`~lowcam.data.train_transform` or :func:`~lowcam.data.ornet_test_transform`.
        wsol_score_size: the side of wsolevaluation's score maps, or ``None``.

    Raises:
        DataError: an unreadable image, naming the record (when the item is read).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> from lowcam.data import Sample, ornet_test_transform
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
        >>> Image.new("RGB", (40, 30), "red").save(path)
        >>> data = SampleDataset([Sample(path, 1, ((4.0, 3.0, 20.0, 15.0),))], ornet_test_transform(32, 28))
        >>> images, labels, boxes, indices = collate_samples([data[0], data[0]])
        >>> tuple(images.shape), labels.tolist(), boxes[0].double().round(decimals=2).tolist()
        ((2, 3, 28, 28), [1, 1], [[1.2, 1.2, 14.0, 14.0]])
    """

    def __init__(
        self, samples: Sequence[Sample], transform: _Transform, wsol_score_size: int | None = None
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.wsol_score_size = wsol_score_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor, int]:
        sample = self.samples[index]
        image = open_rgb(sample)
        boxes = torch.tensor(sample.boxes, dtype=torch.float64).reshape(-1, 4)
        width, height = image.size
        tensor, moved = self.transform(image, boxes)
        if self.wsol_score_size is not None:
            moved = wsoleval_gt_boxes(boxes, (width, height), size=self.wsol_score_size)
        return tensor, sample.label, moved.to(torch.float32), index


def collate_samples(
    batch: Sequence[tuple[torch.Tensor, int, torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Stack images, labels and indices; keep the per-image boxes as a list of ``(K_i, 4)`` tensors (a
    ``DataLoader``'s ``collate_fn`` for :class:`SampleDataset`).

    Args:
        batch: the items ``(image (3, H, W), label, boxes (K, 4), index)``, at least one.

    Returns:
        ``(images (B, 3, H, W), labels (B,) int64, [boxes (K_i, 4)], indices (B,) int64)``.

    Raises:
        ValueError: ``batch`` is empty.
    """
    if not batch:
        raise ValueError("collate_samples needs at least one item, got an empty batch")
    images = torch.stack([item[0] for item in batch])
    labels = torch.tensor([item[1] for item in batch], dtype=torch.long)
    boxes = [item[2] for item in batch]
    indices = torch.tensor([item[3] for item in batch], dtype=torch.long)
    return images, labels, boxes, indices
