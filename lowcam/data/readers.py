"""Readers of CUB-200-2011's own files and of a wsolevaluation split into :class:`Sample` records.

ILSVRC 2012 in its own layout (class folders, PASCAL-VOC XML) is read by :mod:`lowcam.data.imagenet`.

Every reader checks its input completely before training starts: a missing file, a malformed line, an
id with no label or box, a label outside the class list or an unreadable image raises
:class:`lowcam.metrics.DataError`, whose message starts with ``<file>:<line>:`` (the line that names the
bad item).

Readers return :class:`Sample` records; boxes are ``(x0, y0, x1, y1)`` in pixels of the original image.
With ``verify`` ``"header"`` or ``"full"`` each box must lie inside its image (one pixel of slack for
inclusive-coordinate annotations). Images of any bit depth are read as 8-bit RGB (:func:`to_rgb`).
Hidden files and folders (names starting with ``.``) are never images or classes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from lowcam.metrics.dataset import _pillow
from lowcam.metrics.metadata import DataError, read_wsol_metadata

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Box",
    "DataSplit",
    "Sample",
    "VerifyMode",
    "open_rgb",
    "read_cub",
    "read_wsol_split",
    "to_rgb",
    "verify_images",
]

#: A box ``(x0, y0, x1, y1)`` in pixels of the original image.
Box = tuple[float, float, float, float]
#: How much of each image the readers check: nothing, its header (size; the default) or every pixel.
VerifyMode = Literal["none", "header", "full"]
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Sample:
    """One image of a data set.

    Attributes:
        path: the image file.
        label: 0-based class index.
        boxes: ground-truth boxes ``(x0, y0, x1, y1)`` in original pixels (may be empty for training).
        origin: ``(file, line)`` of the record that named the image, for error messages.
        image_id: the image's id in the wsolevaluation layout (its path relative to the data root,
            e.g. ``001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg``).
        box_origins: ``(file, line)`` of each box, for error messages (empty: ``origin``).
    """

    path: Path
    label: int
    boxes: tuple[Box, ...] = ()
    origin: tuple[Path, int] = field(default=(Path("?"), 0))
    image_id: str = ""
    box_origins: tuple[tuple[Path, int], ...] = ()


@dataclass(frozen=True)
class DataSplit:
    """The samples of one split and the class names (index = label)."""

    samples: list[Sample]
    classes: list[str]


# ----------------------------------------------------------------------------------------------- helpers


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(path, None, "file not found")
    return path


def _read_records(path: Path, fields: int) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of every non-blank line of ``path``, each with exactly ``fields`` fields,
    split on white space (the last one keeps any spaces in it, e.g. a file name)."""
    try:
        lines = _require_file(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, None, f"cannot read: {error}") from error
    records = [
        (number, raw.strip().split(None, fields - 1)) for number, raw in enumerate(lines, 1) if raw.strip()
    ]
    for number, parts in records:
        if len(parts) != fields:
            raise DataError(
                path, number, f"expected {fields} fields, got {len(parts)}: {lines[number - 1].strip()!r}"
            )
    return records


def _number(path: Path, line: int, name: str, value: str, kind: type[int] | type[float] = float) -> Any:
    """``value`` parsed as ``kind`` (an integer, or a finite number), or a :class:`DataError` at ``line``."""
    try:
        number = kind(value)
    except ValueError:
        raise DataError(
            path, line, f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if not math.isfinite(number):
        raise DataError(path, line, f"{name} must be finite, got {value!r}")
    return number


def _check_box(path: Path, line: int, box: Box) -> Box:
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
        raise DataError(
            path, line, f"invalid box (x0, y0, x1, y1) = {box}: needs 0 <= x0 < x1 and 0 <= y0 < y1"
        )
    return box


def _id_table(path: Path, fields: int, what: str) -> dict[int, tuple[int, list[str]]]:
    """Map ``id -> (line, remaining fields)`` for an id-keyed CUB file; duplicate ids are errors."""
    table: dict[int, tuple[int, list[str]]] = {}
    for line, parts in _read_records(path, fields):
        key = _number(path, line, f"{what} id", parts[0], int)
        if key in table:
            raise DataError(path, line, f"duplicate {what} id {key} (first on line {table[key][0]})")
        table[key] = (line, parts[1:])
    return table


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image``, scaling high bit depths instead of clipping them.

    16-bit images (``I;16*``) are divided by 257 (65535 → 255); 32-bit integer images (``I``) are
    taken as 16-bit when their maximum fits, else as 32-bit; float images (``F``) are taken as [0, 1]
    when their maximum is at most 1, else as [0, 255] (NaN → 0). Values are rounded and clipped to
    [0, 255]; grey images are repeated over the three channels. Other modes go through
    ``convert("RGB")``.

    Args:
        image: a Pillow image of any mode.

    Returns:
        an RGB Pillow image of the same size.
    """
    mode = image.mode
    if mode not in (*_SIXTEEN_BIT, "I", "F"):
        return image.convert("RGB")
    values = np.asarray(image).astype(np.float64)
    if mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
    elif mode == "I" and values.size and values.max() > 65535:
        scale = 255.0 / 4294967295.0
    else:
        scale = 255.0 / 65535.0
    grey = np.clip(np.round(values * scale), 0, 255).astype(np.uint8)
    rgb: Image.Image = _pillow().fromarray(np.repeat(grey[..., None], 3, axis=-1), mode="RGB")
    return rgb


def _read_image(sample: Sample, read: Callable[[Image.Image], _T]) -> _T:
    """``read(image)`` on ``sample``'s opened image file; a :class:`DataError` naming the record (file and
    line) for an unreadable image or a decompression bomb."""
    source, line = sample.origin
    image_module = _pillow()
    try:
        with image_module.open(sample.path) as raw:
            return read(raw)
    except image_module.DecompressionBombError as error:
        raise DataError(source, line, f"image {sample.path} is too large to decode safely: {error}") from None
    except (OSError, image_module.UnidentifiedImageError, ValueError) as error:
        raise DataError(source, line, f"unreadable image {sample.path}: {error}") from error


def open_rgb(sample: Sample) -> Image.Image:
    """Decode ``sample``'s image as 8-bit RGB (:func:`to_rgb`).

    Args:
        sample: the record whose ``path`` is read.

    Returns:
        the RGB Pillow image.

    Raises:
        DataError: naming the record (file and line) of an unreadable image or a decompression bomb.
    """
    return _read_image(sample, to_rgb)


def _check_inside(sample: Sample, width: int, height: int) -> None:
    for k, (x0, y0, x1, y1) in enumerate(sample.boxes):
        if x1 > width + 1 or y1 > height + 1:
            source, line = sample.box_origins[k] if k < len(sample.box_origins) else sample.origin
            raise DataError(
                source,
                line,
                f"box (x0, y0, x1, y1) = {(x0, y0, x1, y1)} leaves its {width}×{height} image {sample.path}",
            )


def verify_images(samples: Iterable[Sample], mode: VerifyMode = "header") -> None:
    """Check that every image exists and opens, and that its boxes lie inside it (one pixel of slack).

    Args:
        samples: the records to check.
        mode: ``"header"`` reads each image's header (its size), ``"full"`` also decodes the pixels,
            ``"none"`` checks nothing.

    Raises:
        DataError: naming the record (file and line) of the first bad image or box.
    """
    if mode == "none":
        return
    for sample in samples:
        source, line = sample.origin
        if not sample.path.is_file():
            raise DataError(source, line, f"image not found: {sample.path}")
        width, height = open_rgb(sample).size if mode == "full" else _read_image(sample, lambda i: i.size)
        if width < 1 or height < 1:
            raise DataError(source, line, f"empty image {sample.path}")
        _check_inside(sample, width, height)


# ------------------------------------------------------------------------------------------------- CUB


def read_cub(
    root: str | os.PathLike[str], split: Literal["train", "test"], verify: VerifyMode = "header"
) -> DataSplit:
    """Read one split of CUB-200-2011 from its own files under ``root``.

    Files: ``classes.txt`` (``<class id> <name>``), ``images.txt`` (``<id> <relative path>``, images
    under ``root/images``), ``image_class_labels.txt`` (``<id> <class id>``), ``train_test_split.txt``
    (``<id> <1 train | 0 test>``) and ``bounding_boxes.txt`` (``<id> <x> <y> <width> <height>`` in
    pixels, one box per image). Class ids are 1-based and dense.

    Args:
        root: the folder holding those files.
        split: ``"train"`` or ``"test"`` (``train_test_split.txt``'s 1 and 0).
        verify: how much of each image to check (:func:`verify_images`).

    Returns:
        the :class:`DataSplit`: the split's images in id order, labels 0-based, one box each
        ``(x0, y0, x1, y1) = (x, y, x + width, y + height)``; the class names from ``classes.txt``.

    Raises:
        ValueError: ``split`` is neither ``"train"`` nor ``"test"``.
        DataError: a missing file, a malformed line, an image id with no label, split or box, an id that
            names no image, a class id not in ``classes.txt``, a bad box, or an unreadable image.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> files = {"classes.txt": "1 001.Albatross", "images.txt": "1 001.Albatross/a.jpg",
        ...          "image_class_labels.txt": "1 1", "train_test_split.txt": "1 0",
        ...          "bounding_boxes.txt": "1 2.0 3.0 10.0 20.0"}
        >>> for name, text in files.items():
        ...     _ = (root / name).write_text(text + "\\n")
        >>> (root / "images" / "001.Albatross").mkdir(parents=True)
        >>> Image.new("RGB", (40, 30)).save(root / "images" / "001.Albatross" / "a.jpg")
        >>> test = read_cub(root, "test")
        >>> test.classes, test.samples[0].label, test.samples[0].boxes, test.samples[0].image_id
        (['001.Albatross'], 0, ((2.0, 3.0, 12.0, 23.0),), '001.Albatross/a.jpg')
        >>> _ = (root / "image_class_labels.txt").write_text("1 7\\n")
        >>> try:
        ...     read_cub(root, "test")
        ... except DataError as error:  # lowcam.metrics.DataError
        ...     print(pathlib.Path(str(error)).name)
        image_class_labels.txt:1: class id 7 is not in classes.txt
    """
    base = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    classes_path = base / "classes.txt"
    class_table = _id_table(classes_path, 2, "class")
    expected = list(range(1, len(class_table) + 1))
    if sorted(class_table) != expected:
        missing = sorted(set(expected) - set(class_table))
        line = max(line for line, _ in class_table.values())
        raise DataError(classes_path, line, f"class ids must be 1..{len(class_table)}; missing {missing[:5]}")
    classes = [class_table[k][1][0] for k in expected]

    images_path = base / "images.txt"
    images = _id_table(images_path, 2, "image")
    tables = {
        "image_class_labels.txt": _id_table(base / "image_class_labels.txt", 2, "image"),
        "train_test_split.txt": _id_table(base / "train_test_split.txt", 2, "image"),
        "bounding_boxes.txt": _id_table(base / "bounding_boxes.txt", 5, "image"),
    }
    for filename, table in tables.items():
        for image_id, (line, _) in table.items():
            if image_id not in images:
                raise DataError(base / filename, line, f"image id {image_id} is not in {images_path.name}")
        for image_id, (line, _) in images.items():
            if image_id not in table:
                raise DataError(images_path, line, f"image id {image_id} has no entry in {filename}")

    samples: list[Sample] = []
    want = 1 if split == "train" else 0
    for image_id in sorted(images):
        line, (relative,) = images[image_id]
        parts = Path(relative).parts
        if Path(relative).is_absolute() or ".." in parts:
            raise DataError(images_path, line, f"image path {relative!r} must stay inside {base / 'images'}")
        split_line, (flag,) = tables["train_test_split.txt"][image_id]
        is_train = _number(base / "train_test_split.txt", split_line, "split flag", flag, int)
        if is_train not in (0, 1):
            raise DataError(
                base / "train_test_split.txt", split_line, f"split flag must be 0 or 1, got {flag!r}"
            )
        label_line, (label_text,) = tables["image_class_labels.txt"][image_id]
        label = _number(base / "image_class_labels.txt", label_line, "class id", label_text, int)
        if label not in class_table:
            raise DataError(
                base / "image_class_labels.txt", label_line, f"class id {label} is not in {classes_path.name}"
            )
        box_path = base / "bounding_boxes.txt"
        box_line, numbers = tables["bounding_boxes.txt"][image_id]
        x, y, w, h = (_number(box_path, box_line, name, v) for name, v in zip("xywh", numbers))
        box = _check_box(box_path, box_line, (x, y, x + w, y + h))
        if is_train == want:
            samples.append(
                Sample(
                    base / "images" / relative,
                    label - 1,
                    (box,),
                    (images_path, line),
                    image_id=relative,
                    box_origins=((box_path, box_line),),
                )
            )
    verify_images(samples, verify)
    return DataSplit(samples, classes)


def read_wsol_split(
    metadata_dir: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    *,
    require_boxes: bool,
    classes: Sequence[str] | None = None,
    verify: VerifyMode = "header",
) -> DataSplit:
    """Read one split in the wsolevaluation metadata layout (Choe et al., CVPR 2020).

    A thin adapter over :func:`lowcam.metrics.read_wsol_metadata`, the reader ``lowcam-eval`` uses, so
    training and evaluation read (and reject) the same files; unlike :class:`lowcam.metrics.WSOLDataset`
    it reads a training split too (no boxes). ``metadata_dir`` (e.g.
    ``metadata/ILSVRC/val``) holds ``image_ids.txt`` (``<path>``), ``class_labels.txt``
    (``<path>,<label>``, 0-based), and for evaluation splits ``localization.txt``
    (``<path>,<x0>,<y0>,<x1>,<y1>``, one line per box, several per image) and ``image_sizes.txt``
    (``<path>,<width>,<height>``, optional here: the images are opened). Paths are relative to
    ``data_root``; one that leaves it is an error.

    Args:
        metadata_dir: the split's folder of metadata files.
        data_root: the folder the image ids are relative to.
        require_boxes: whether every image needs a box (an evaluation split) or none does (training).
        classes: the class names (their number bounds the labels); default ``"0"``, ``"1"``, ... up to the
            largest label.
        verify: how much of each image to check (:func:`verify_images`).

    Returns:
        the :class:`DataSplit`, in the order of ``image_ids.txt``.

    Raises:
        DataError: a missing file, a malformed line, an image with no label (or no box when
            ``require_boxes``), a line naming an image not in ``image_ids.txt``, or an unreadable image.
    """
    meta = read_wsol_metadata(
        metadata_dir,
        require_localization=require_boxes,
        require_sizes=False,
        num_classes=None if classes is None else len(classes),
        boxes_outside="keep",  # checked against the opened image, with one pixel of slack
    )
    root = Path(data_root)
    samples = [
        Sample(
            root / image_id,
            meta.labels[image_id],
            tuple(meta.boxes.get(image_id, ())),
            (meta.ids_path, meta.lines[image_id]),
            image_id=image_id,
        )
        for image_id in meta.image_ids
    ]
    if classes is None:
        classes = [str(k) for k in range(max(meta.labels.values(), default=-1) + 1)]
    verify_images(samples, verify)
    return DataSplit(samples, list(classes))
