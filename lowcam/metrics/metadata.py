"""The wsolevaluation metadata layout, and the ground-truth boxes of both protocols in the maps' frame.

clovaai/wsolevaluation (Choe et al., CVPR 2020) describes a split of a data set with a folder
``<metadata_root>/<DATASET>/<split>/`` of comma-separated text files, one record a line:

- ``image_ids.txt``: ``<image_id>`` (a path relative to the data set's root, e.g. ``val/a/b.JPEG``);
- ``class_labels.txt``: ``<image_id>,<label>`` (0-based);
- ``image_sizes.txt``: ``<image_id>,<width>,<height>`` (needed to rescale boxes);
- ``localization.txt``: either boxes, ``<image_id>,<x0>,<y0>,<x1>,<y1>`` in pixels of the original image,
  one line per box (several per image), or (OpenImages) masks, ``<image_id>,<mask_path>,<ignore_path>``,
  one line per instance mask, the ignore mask named on an image's first line only.

:func:`read_wsol_metadata` reads such a folder and checks it completely; every problem raises
:class:`DataError` naming the file and the line. The boxes it reads are in the original image's pixels;
``lowcam/metrics/frames.py`` moves them into the frame the maps live in.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "DataError",
    "MaskRef",
    "WSOLMetadata",
    "read_mask",
    "read_wsol_metadata",
]

Box = tuple[float, float, float, float]


class DataError(ValueError):
    """A problem in a data file; ``str(error)`` reads ``<file>:<line>: <message>``.

    Attributes:
        path: the file at fault.
        line: the 1-based line number, or ``None`` when the whole file is at fault (e.g. missing).
        message: the message without the location.
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {message}")


class MaskRef(NamedTuple):
    """A mask file named in ``localization.txt``: its path (relative to the mask root) and the line."""

    path: str
    line: int


@dataclass(frozen=True)
class WSOLMetadata:
    """One split in the wsolevaluation layout, checked.

    Attributes:
        directory: the split's folder (``<metadata_root>/<DATASET>/<split>``).
        image_ids: the images in the order of ``image_ids.txt``.
        lines: ``image_id -> line`` in ``image_ids.txt`` (for error messages).
        labels: ``image_id -> label`` (empty when ``class_labels.txt`` is absent and not required).
        sizes: ``image_id -> (width, height)`` from ``image_sizes.txt`` (empty when absent).
        boxes: ``image_id -> ((x0, y0, x1, y1), ...)`` in original pixels, in file order.
        masks: ``image_id -> (MaskRef, ...)``, the instance masks (OpenImages layout).
        ignore: ``image_id -> MaskRef`` of the ignore mask, for the images that have one.
    """

    directory: Path
    image_ids: tuple[str, ...]
    lines: dict[str, int]
    labels: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, tuple[Box, ...]] = field(default_factory=dict)
    masks: dict[str, tuple[MaskRef, ...]] = field(default_factory=dict)
    ignore: dict[str, MaskRef] = field(default_factory=dict)

    @property
    def ids_path(self) -> Path:
        """The ``image_ids.txt`` file."""
        return self.directory / "image_ids.txt"

    def origin(self, image_id: str) -> tuple[Path, int]:
        """``(image_ids.txt, line)`` of an image, for error messages."""
        return self.ids_path, self.lines[image_id]


# ----------------------------------------------------------------------------------------------- parsing


def _read_records(path: Path, fields: int, *, last_may_be_empty: bool = False) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of every non-blank line of ``path``, split on commas, stripped."""
    if not path.is_file():
        raise DataError(path, None, "file not found")
    try:
        text = path.read_text(
            encoding="utf-8-sig"
        )  # a UTF-8 byte-order mark (some editors write one) is dropped
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, None, f"cannot read: {error}") from error
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if "\x00" in raw or "\ufeff" in raw:
            what = "a NUL byte" if "\x00" in raw else "a byte-order mark inside the file"
            raise DataError(path, number, f"holds {what}: {raw!r:.80}; expected plain UTF-8 text")
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        checked = parts[:-1] if last_may_be_empty else parts
        if len(parts) != fields or any(p == "" for p in checked):
            raise DataError(path, number, f"expected {fields} fields, got {len(parts)}: {line!r}")
        records.append((number, parts))
    return records


def _parse_int(path: Path, line: int, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(path, line, f"{name} must be an integer, got {value!r}") from None


def _parse_float(path: Path, line: int, name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DataError(path, line, f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise DataError(path, line, f"{name} must be finite, got {value!r}")
    return number


def _check_relative(path: Path, line: int, what: str, value: str) -> str:
    """Reject a path that would leave its root: absolute, or with a ``..`` component."""
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (len(value) > 1 and value[1] == ":"):
        raise DataError(path, line, f"{what} must be a relative path inside its root, got {value!r}")
    return value


def read_wsol_metadata(
    metadata_dir: str | os.PathLike[str],
    *,
    localization: Literal["boxes", "masks"] = "boxes",
    require_localization: bool = True,
    require_labels: bool = True,
    require_sizes: bool | None = None,
    num_classes: int | None = None,
    boxes_outside: Literal["error", "keep"] = "error",
) -> WSOLMetadata:
    """Read and check one split in the wsolevaluation metadata layout (see the module docstring).

    Stricter than the reference's readers, which take the last of conflicting lines, crash on a missing
    entry (``KeyError``) or accept a box outside its image: here each of these is an error. A file that is
    not required is still read, and checked, when it exists.

    Args:
        metadata_dir: the split's folder, e.g. ``metadata/CUB/test``.
        localization: what ``localization.txt`` holds: ``"boxes"`` (CUB, ILSVRC) or ``"masks"``
            (OpenImages).
        require_localization: every image must have at least one box (one mask); ``localization.txt`` must
            exist. False for training splits.
        require_labels: ``class_labels.txt`` must exist and give every image a label.
        require_sizes: ``image_sizes.txt`` must exist and give every image its size; ``None`` means
            ``localization == "boxes" and require_localization`` (the boxes are rescaled with the sizes).
        num_classes: when given, labels must be below it.
        boxes_outside: a box reaching beyond its image's size (``x1 > width`` or ``y1 > height``) is an
            ``"error"`` (default), or is kept (``"keep"``, the reference's behaviour).

    Returns:
        The checked :class:`WSOLMetadata`. Boxes are ``(x0, y0, x1, y1)`` floats in original pixels; with
        the image's size known (and ``boxes_outside="error"``), ``0 <= x0 < x1 <= width`` and
        ``0 <= y0 < y1 <= height``.

    Raises:
        DataError: a missing required file; a malformed line (field count, a non-numeric label, size or
            coordinate); a duplicate image id; conflicting duplicate label or size lines; a line naming
            an image not in ``image_ids.txt``; a path that leaves its root (absolute or ``..``); a size
            that is not positive; a box with ``x1 <= x0`` or ``y1 <= y0``, a negative coordinate, or one
            outside its image; a second, different ignore mask; an image without a required entry.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "image_ids.txt").write_text("a.jpg\\nb.jpg\\n")
        >>> _ = (d / "class_labels.txt").write_text("a.jpg,0\\nb.jpg,1\\n")
        >>> _ = (d / "image_sizes.txt").write_text("a.jpg,500,300\\nb.jpg,100,100\\n")
        >>> _ = (d / "localization.txt").write_text("a.jpg,10,20,400,280\\nb.jpg,0,0,50,50\\nb.jpg,5,5,99,99\\n")
        >>> meta = read_wsol_metadata(d)
        >>> meta.image_ids, meta.sizes["a.jpg"], len(meta.boxes["b.jpg"])
        (('a.jpg', 'b.jpg'), (500, 300), 2)
    """
    if localization not in ("boxes", "masks"):
        raise ValueError(f"localization must be 'boxes' or 'masks', got {localization!r}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
        raise TypeError(f"num_classes must be an int or None, got {type(num_classes).__name__}")
    if boxes_outside not in ("error", "keep"):
        raise ValueError(f"boxes_outside must be 'error' or 'keep', got {boxes_outside!r}")
    if require_sizes is None:
        require_sizes = localization == "boxes" and require_localization
    meta = Path(metadata_dir)
    if not meta.is_dir():
        raise DataError(meta, None, "metadata folder not found")

    ids_path = meta / "image_ids.txt"
    lines: dict[str, int] = {}
    for line, (image_id,) in _read_records(ids_path, 1):
        _check_relative(ids_path, line, "image id", image_id)
        if image_id in lines:
            raise DataError(ids_path, line, f"duplicate image {image_id!r} (first on line {lines[image_id]})")
        lines[image_id] = line

    def owned(path: Path, line: int, image_id: str) -> str:
        if image_id not in lines:
            raise DataError(path, line, f"image {image_id!r} is not in {ids_path.name}")
        return image_id

    labels_path = meta / "class_labels.txt"
    labels: dict[str, int] = {}
    label_lines: dict[str, int] = {}
    if require_labels or labels_path.exists():
        for line, (image_id, text) in _read_records(labels_path, 2):
            owned(labels_path, line, image_id)
            label = _parse_int(labels_path, line, "class label", text)
            if label < 0 or (num_classes is not None and label >= num_classes):
                expected = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
                raise DataError(labels_path, line, f"class label {label} out of range (expected {expected})")
            if image_id in labels and labels[image_id] != label:
                raise DataError(
                    labels_path,
                    line,
                    f"image {image_id!r} has label {label} here but {labels[image_id]} on line "
                    f"{label_lines[image_id]}",
                )
            labels[image_id] = label
            label_lines.setdefault(image_id, line)

    sizes_path = meta / "image_sizes.txt"
    sizes: dict[str, tuple[int, int]] = {}
    size_lines: dict[str, int] = {}
    if require_sizes or sizes_path.exists():
        for line, (image_id, w_text, h_text) in _read_records(sizes_path, 3):
            owned(sizes_path, line, image_id)
            width = _parse_int(sizes_path, line, "width", w_text)
            height = _parse_int(sizes_path, line, "height", h_text)
            if width <= 0 or height <= 0:
                raise DataError(sizes_path, line, f"image size must be positive, got {width}x{height}")
            if image_id in sizes and sizes[image_id] != (width, height):
                w0, h0 = sizes[image_id]
                raise DataError(
                    sizes_path,
                    line,
                    f"image {image_id!r} has size {width}x{height} here but {w0}x{h0} on line "
                    f"{size_lines[image_id]}",
                )
            sizes[image_id] = (width, height)
            size_lines.setdefault(image_id, line)

    loc_path = meta / "localization.txt"
    boxes: dict[str, list[Box]] = {}
    masks: dict[str, list[MaskRef]] = {}
    ignore: dict[str, MaskRef] = {}
    if require_localization or loc_path.exists():
        if localization == "boxes":
            for line, parts in _read_records(loc_path, 5):
                image_id = owned(loc_path, line, parts[0])
                x0, y0, x1, y1 = (
                    _parse_float(loc_path, line, name, v)
                    for name, v in zip(("x0", "y0", "x1", "y1"), parts[1:])
                )
                if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
                    raise DataError(
                        loc_path,
                        line,
                        f"invalid box (x0, y0, x1, y1) = {(x0, y0, x1, y1)}: needs 0 <= x0 < x1 and 0 <= y0 < y1",
                    )
                if image_id in sizes and boxes_outside == "error":
                    width, height = sizes[image_id]
                    if x1 > width or y1 > height:
                        raise DataError(
                            loc_path,
                            line,
                            f"box (x0, y0, x1, y1) = {(x0, y0, x1, y1)} leaves its {width}x{height} image "
                            f"(image_sizes.txt line {size_lines[image_id]})",
                        )
                boxes.setdefault(image_id, []).append((x0, y0, x1, y1))
        else:
            for line, (image_id, mask_path, ignore_path) in _read_records(
                loc_path, 3, last_may_be_empty=True
            ):
                owned(loc_path, line, image_id)
                _check_relative(loc_path, line, "mask path", mask_path)
                if ignore_path:
                    _check_relative(loc_path, line, "ignore mask path", ignore_path)
                    first = ignore.get(image_id)
                    if first is not None and first.path != ignore_path:
                        raise DataError(
                            loc_path,
                            line,
                            f"image {image_id!r} has a second ignore mask {ignore_path!r} "
                            f"({first.path!r} on line {first.line}); an image has one ignore mask",
                        )
                    ignore.setdefault(image_id, MaskRef(ignore_path, line))
                masks.setdefault(image_id, []).append(MaskRef(mask_path, line))

    for image_id, line in lines.items():
        if require_labels and image_id not in labels:
            raise DataError(ids_path, line, f"image {image_id!r} has no entry in {labels_path.name}")
        if require_sizes and image_id not in sizes:
            raise DataError(ids_path, line, f"image {image_id!r} has no entry in {sizes_path.name}")
        if require_localization and localization == "boxes" and image_id not in boxes:
            raise DataError(ids_path, line, f"image {image_id!r} has no box in {loc_path.name}")
        if require_localization and localization == "masks" and image_id not in masks:
            raise DataError(ids_path, line, f"image {image_id!r} has no mask in {loc_path.name}")

    return WSOLMetadata(
        directory=meta,
        image_ids=tuple(lines),
        lines=lines,
        labels=labels,
        sizes=sizes,
        boxes={k: tuple(v) for k, v in boxes.items()},
        masks={k: tuple(v) for k, v in masks.items()},
        ignore=ignore,
    )


# ------------------------------------------------------------------------------------------------- masks


def read_mask(path: str | os.PathLike[str], *, size: int | tuple[int, int] | None = 224) -> Tensor:
    """Read a mask image as the reference does: 8-bit grey levels, resized with OpenCV's nearest rule.

    wsolevaluation reads masks with ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` and resizes them to 224×224
    with ``INTER_NEAREST``; foreground is then ``mask > 0.5``. Here the file is decoded with Pillow
    (imported on first use: ``pip install pillow``, or the ``examples`` extra) and converted to grey with
    ``convert("L")`` (the same ITU-R 601 weights as OpenCV; binary masks read the same), then resized with
    :func:`~lowcam.metrics.resize_nearest`.

    Args:
        path: the mask file (PNG, or any format Pillow reads).
        size: ``(H, W)`` or a side to resize to; None keeps the file's size.

    Returns:
        ``(H, W)`` float32 grey levels in ``[0, 255]``.

    Raises:
        DataError: the file is missing or not a readable image (the message names it).
        ImportError: Pillow is not installed.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading mask images needs Pillow: pip install pillow (or pip install 'lowcam[data]')"
        ) from error
    import numpy as np

    from lowcam.metrics.pxap import resize_nearest

    mask_path = Path(path)
    if not mask_path.is_file():
        raise DataError(mask_path, None, "mask file not found")
    try:
        with Image.open(mask_path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                # OpenCV's IMREAD_GRAYSCALE keeps the top 8 bits of a 16-bit image
                grey = torch.from_numpy(np.asarray(image).astype(np.int64)) // 256
                data = grey.clamp(0, 255).to(torch.float32)
            else:
                converted = image.convert("L")
                raw = torch.frombuffer(bytearray(converted.tobytes()), dtype=torch.uint8)
                data = raw.view(converted.height, converted.width).to(torch.float32)
    except (OSError, ValueError, Image.DecompressionBombError, UnidentifiedImageError) as error:
        raise DataError(mask_path, None, f"unreadable mask image: {error}") from error
    if size is None:
        return data
    out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return resize_nearest(data, out)
