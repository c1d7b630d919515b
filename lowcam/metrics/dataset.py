"""``WSOLDataset``: the images, labels and ground truth of one split in wsolevaluation's layout.

clovaai/wsolevaluation keeps a data set's images under ``<data_root>/<DATASET>/<image_id>`` and its metadata
under ``<metadata_root>/<DATASET>/<split>/`` (:func:`~lowcam.metrics.read_wsol_metadata` reads and checks it);
OpenImages' masks are read from ``<mask_root>/OpenImages/<mask path>``. The three data sets are ``"CUB"`` and
``"ILSVRC"`` (boxes) and ``"OpenImages"`` (masks). Images are decoded with Pillow, imported on first use
(``pip install pillow``, or the ``examples`` extra).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lowcam.metrics.metadata import DataError, WSOLMetadata, read_mask, read_wsol_metadata

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "WSOLBatch", "WSOLDataset", "WSOLSample", "collate_wsol"]

#: The ImageNet channel statistics that wsolevaluation normalises images with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LOCALIZATION = {"CUB": "boxes", "ILSVRC": "boxes", "OpenImages": "masks"}


class WSOLSample(NamedTuple):
    """One image of a :class:`WSOLDataset`.

    Attributes:
        image: the image as the dataset's transform makes it (by default ``(3, H, W)`` float32).
        label: its class (``-1`` when the split has no labels).
        image_id: its id in ``image_ids.txt``.
        size: ``(width, height)`` of the original image (from ``image_sizes.txt``, else the file's).
        boxes: ``(K, 4)`` float64 ground-truth boxes ``(x0, y0, x1, y1)`` in original pixels (``K = 0`` for a
            mask data set).
        masks: ``(N, H0, W0)`` float32 grey levels of the instance masks at their file's size, or None.
        ignore: ``(H0, W0)`` grey levels of the ignore mask (zeros if none), or None.
    """

    image: Any
    label: int
    image_id: str
    size: tuple[int, int]
    boxes: Tensor
    masks: Tensor | None
    ignore: Tensor | None


class WSOLBatch(NamedTuple):
    """A batch of :class:`WSOLSample` s (:func:`collate_wsol`): the images stacked, the rest per image.

    Attributes:
        images: ``(B, 3, H, W)`` (stacked when the images are tensors of one shape, else the list).
        labels: ``(B,)`` int64.
        image_ids: the ``B`` ids.
        sizes: ``(B, 2)`` int64 ``(width, height)`` of the original images.
        boxes: ``B`` tensors ``(K_i, 4)`` in original pixels.
        masks: ``B`` mask tensors, or None for a box data set.
        ignore: ``B`` ignore masks, or None.
    """

    images: Any
    labels: Tensor
    image_ids: tuple[str, ...]
    sizes: Tensor
    boxes: list[Tensor]
    masks: list[Tensor] | None
    ignore: list[Tensor] | None


def collate_wsol(samples: Sequence[WSOLSample]) -> WSOLBatch:
    """Collate samples into a :class:`WSOLBatch` (use it as a ``DataLoader``'s ``collate_fn``).

    Example:
        >>> s = WSOLSample(torch.zeros(3, 2, 2), 1, "a.jpg", (4, 4), torch.zeros(1, 4), None, None)
        >>> batch = collate_wsol([s, s._replace(image_id="b.jpg")])
        >>> tuple(batch.images.shape), batch.labels.tolist(), batch.image_ids
        ((2, 3, 2, 2), [1, 1], ('a.jpg', 'b.jpg'))
    """
    if not samples:
        raise ValueError("collate_wsol needs at least one sample")
    images = [s.image for s in samples]
    if all(isinstance(i, Tensor) for i in images) and len({tuple(i.shape) for i in images}) == 1:
        stacked: Any = torch.stack(images)
    else:
        stacked = images
    has_masks = samples[0].masks is not None
    return WSOLBatch(
        images=stacked,
        labels=torch.tensor([s.label for s in samples], dtype=torch.int64),
        image_ids=tuple(s.image_id for s in samples),
        sizes=torch.tensor([s.size for s in samples], dtype=torch.int64),
        boxes=[s.boxes for s in samples],
        masks=[s.masks for s in samples if s.masks is not None] if has_masks else None,
        ignore=[s.ignore for s in samples if s.ignore is not None] if has_masks else None,
    )


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading images (lowcam.metrics.WSOLDataset, lowcam.data) needs Pillow: pip install pillow "
            "(or pip install 'lowcam[data]')"
        ) from error
    return Image


def _check_side(name: str, value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        pair: tuple[object, ...] = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise TypeError(f"{name} must be an int, a pair of ints (H, W) or None, got {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"{name} must be positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])  # type: ignore[call-overload]  # ints, checked above


_Channels = tuple[float, float, float]


def _channels(name: str, value: Sequence[float] | None) -> _Channels | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"{name} must be three numbers (R, G, B) or None, got {value!r}")
    return float(value[0]), float(value[1]), float(value[2])


def _normalisation(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[_Channels | None, _Channels | None]:
    """``(mean, std)`` checked: three numbers each or None, no zero in ``std`` (a ValueError naming it)."""
    checked_mean, checked_std = _channels("mean", mean), _channels("std", std)
    if checked_std is not None and any(s == 0 for s in checked_std):
        raise ValueError(f"std must not hold 0, got {std!r}")
    return checked_mean, checked_std


def _image_tensor(image: Any, mean: _Channels | None, std: _Channels | None) -> Tensor:
    """An RGB PIL image as ``(3, H, W)`` float32: its bytes over 255, minus ``mean``, over ``std`` (each
    skipped when None); for an RGB image, bit for bit torchvision's ``to_tensor`` then ``normalize``."""
    raw = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    x = raw.view(image.height, image.width, 3).permute(2, 0, 1).to(torch.float32) / 255
    if mean is not None:
        x = x - torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    if std is not None:
        x = x / torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return x


class WSOLDataset(Dataset[WSOLSample]):
    """One split of CUB, ILSVRC or OpenImages in wsolevaluation's layout, as a map-style ``Dataset``.

    Reads ``<metadata_root>/<dataset_name>/<split>/`` with :func:`~lowcam.metrics.read_wsol_metadata` (every
    problem a :class:`~lowcam.metrics.DataError` naming the file and line) and, per item, decodes
    ``<data_root>/<dataset_name>/<image_id>`` with Pillow as RGB. By default the image goes through
    wsolevaluation's evaluation transform: squashed to ``image_size`` (Pillow's bilinear resize, what
    ``torchvision.transforms.Resize`` does to a PIL image), scaled to ``[0, 1]`` and normalised with
    ``mean`` / ``std`` (ImageNet's), giving a ``(3, H, W)`` float32 tensor; ``transform`` replaces all of
    that (it gets the PIL image). The ground truth stays in the original image's frame (see
    :class:`WSOLSample`); :func:`~lowcam.metrics.evaluate_model` moves it into the score maps' frame.

    Args:
        data_root: the folder holding ``<dataset_name>/<image_id>``, e.g. ``dataset``.
        metadata_root: the folder holding ``<dataset_name>/<split>/*.txt``, e.g. ``metadata``.
        dataset_name: ``"CUB"``, ``"ILSVRC"``, ``"OpenImages"`` or another folder name.
        split: e.g. ``"test"`` or ``"val"``.
        image_size: ``(H, W)`` or a side to squash images to; None keeps their size.
        mean: per-channel mean subtracted after scaling to ``[0, 1]``; None for none.
        std: per-channel divisor after the mean; None for none.
        transform: a callable taking the RGB ``PIL.Image`` and returning the sample's image (replaces the
            three arguments above).
        localization: ``"boxes"`` or ``"masks"``; default by ``dataset_name`` (masks for OpenImages).
        mask_root: masks are read from ``<mask_root>/OpenImages/<mask path>``; default ``data_root``.
        require_labels: ``class_labels.txt`` must label every image (it does in the three data sets; the
            labels pick the class whose map is evaluated).
        boxes_outside: ``"error"`` or ``"keep"`` (see :func:`~lowcam.metrics.read_wsol_metadata`).

    Raises:
        DataError: a problem in the metadata (at construction) or an image that is missing or unreadable
            (when the item is read).
        TypeError, ValueError: a bad argument, named.
        ImportError: Pillow is not installed (when an item is read).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> meta = root / "metadata" / "CUB" / "test"
        >>> meta.mkdir(parents=True)
        >>> (root / "dataset" / "CUB" / "001").mkdir(parents=True)
        >>> Image.new("RGB", (40, 30), "red").save(root / "dataset" / "CUB" / "001" / "a.png")
        >>> _ = (meta / "image_ids.txt").write_text("001/a.png\\n")
        >>> _ = (meta / "class_labels.txt").write_text("001/a.png,0\\n")
        >>> _ = (meta / "image_sizes.txt").write_text("001/a.png,40,30\\n")
        >>> _ = (meta / "localization.txt").write_text("001/a.png,5,5,30,25\\n")
        >>> data = WSOLDataset(root / "dataset", root / "metadata", "CUB", "test")
        >>> sample = data[0]
        >>> len(data), tuple(sample.image.shape), sample.label, sample.size, sample.boxes.tolist()
        (1, (3, 224, 224), 0, (40, 30), [[5.0, 5.0, 30.0, 25.0]])
    """

    def __init__(
        self,
        data_root: str | os.PathLike[str],
        metadata_root: str | os.PathLike[str],
        dataset_name: str,
        split: str,
        *,
        image_size: int | tuple[int, int] | None = 224,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        transform: Callable[[Any], Any] | None = None,
        localization: Literal["boxes", "masks"] | None = None,
        mask_root: str | os.PathLike[str] | None = None,
        require_labels: bool = True,
        boxes_outside: Literal["error", "keep"] = "error",
    ) -> None:
        if not isinstance(dataset_name, str) or not dataset_name:
            raise TypeError(f"dataset_name must be a non-empty str, got {dataset_name!r}")
        if not isinstance(split, str) or not split:
            raise TypeError(f"split must be a non-empty str, got {split!r}")
        if localization is None:
            localization = "masks" if _LOCALIZATION.get(dataset_name) == "masks" else "boxes"
        if localization not in ("boxes", "masks"):
            raise ValueError(f"localization must be 'boxes', 'masks' or None, got {localization!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.image_size = _check_side("image_size", image_size)
        self.mean, self.std = _normalisation(mean, std)
        self.transform = transform
        self.localization: Literal["boxes", "masks"] = localization
        self.dataset_name = dataset_name
        self.split = split
        self.image_root = Path(data_root) / dataset_name
        self.mask_root = Path(mask_root if mask_root is not None else data_root) / "OpenImages"
        self.metadata: WSOLMetadata = read_wsol_metadata(
            Path(metadata_root) / dataset_name / split,
            localization=localization,
            require_localization=True,
            require_labels=require_labels,
            require_sizes=localization == "boxes",
            boxes_outside=boxes_outside,
        )

    @property
    def image_ids(self) -> tuple[str, ...]:
        """The split's image ids, in the order of ``image_ids.txt``."""
        return self.metadata.image_ids

    def __len__(self) -> int:
        return len(self.metadata.image_ids)

    def _open_image(self, image_id: str) -> Any:
        image_module = _pillow()
        path = self.image_root / image_id
        if not path.is_file():
            ids_path, line = self.metadata.origin(image_id)
            raise DataError(ids_path, line, f"image {image_id!r} not found: {path}")
        try:
            with image_module.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError, image_module.DecompressionBombError) as error:
            raise DataError(path, None, f"unreadable image (image {image_id!r}): {error}") from error

    def _to_tensor(self, image: Any) -> Tensor:
        if self.image_size is not None:
            height, width = self.image_size
            image = image.resize((width, height), _pillow().BILINEAR)
        return _image_tensor(image, self.mean, self.std)

    def _masks(self, image_id: str) -> tuple[Tensor, Tensor]:
        loc_path = self.metadata.directory / "localization.txt"

        def load(path: str, line: int, what: str) -> Tensor:
            file = self.mask_root / path
            if not file.is_file():
                raise DataError(loc_path, line, f"{what} of image {image_id!r} not found: {file}")
            return read_mask(file, size=None)

        masks = [load(ref.path, ref.line, "mask") for ref in self.metadata.masks[image_id]]
        shapes = {tuple(m.shape) for m in masks}
        if len(shapes) != 1:
            line = self.metadata.masks[image_id][0].line
            raise DataError(loc_path, line, f"masks of image {image_id!r} differ in size: {sorted(shapes)}")
        stacked = torch.stack(masks)
        ref = self.metadata.ignore.get(image_id)
        ignore = load(ref.path, ref.line, "ignore mask") if ref is not None else torch.zeros_like(stacked[0])
        return stacked, ignore

    def __getitem__(self, index: int) -> WSOLSample:
        if isinstance(index, bool):
            raise TypeError("index must be an int, got bool")
        try:
            index = operator.index(index)  # an int, or a NumPy / torch integer
        except TypeError:
            raise TypeError(f"index must be an int, got {type(index).__name__}") from None
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a split of {n} images")
        image_id = self.metadata.image_ids[index]
        pil = self._open_image(image_id)
        size = self.metadata.sizes.get(image_id, (pil.width, pil.height))
        image = self.transform(pil) if self.transform is not None else self._to_tensor(pil)
        boxes = torch.tensor(self.metadata.boxes.get(image_id, ()), dtype=torch.float64).view(-1, 4)
        masks: Tensor | None = None
        ignore: Tensor | None = None
        if self.localization == "masks":
            masks, ignore = self._masks(image_id)
        label = self.metadata.labels.get(image_id, -1)
        return WSOLSample(image, label, image_id, size, boxes, masks, ignore)
