"""Synthetic WSOL data sets in CUB-200-2011's file format: the one writer (:func:`write_cub`) and the shapes.

:func:`write_shapes` draws the simplest set: each image holds one object whose class decides its shape and
its texture (pattern, pattern scale and a colour palette, jittered per image), at a random place and size on a
cluttered background of random colours (which can match any class's palette), with its tight bounding box.
The synthetic birds of :func:`~lowcam.data.write_birds` have the WSOL problem (the class is in a small part of
the object). Both are written by :func:`write_cub` in CUB's layout, which :func:`~lowcam.data.read_cub`
reads::

    <out>/images.txt                 <image_id> <class_dir>/<file>.jpg
    <out>/image_class_labels.txt     <image_id> <class_id>            (1-based)
    <out>/train_test_split.txt       <image_id> <1 = train | 0 = test>
    <out>/bounding_boxes.txt         <image_id> <x> <y> <width> <height>   (pixels, floats)
    <out>/classes.txt                <class_id> <class_name>
    <out>/images/<class_dir>/<file>.jpg

Generation is seeded and deterministic; the images are drawn with Pillow (imported on first use).
``examples/synthetic.py`` is the command line of :func:`write_shapes`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lowcam.metrics.dataset import _pillow as _pil
from lowcam.metrics.scoremap_writer import _write_atomic

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["SHAPES", "TEXTURES", "ShapesSpec", "render_shape", "write_cub", "write_shapes"]

#: A box ``(x, y, width, height)`` in pixels, as CUB's ``bounding_boxes.txt`` holds it.
_XYWH = tuple[int, int, int, int]


def _draw() -> Any:
    _pil()  # the error that names Pillow when it is missing
    from PIL import ImageDraw

    return ImageDraw


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` atomically (the score-map writer's ``.tmp`` + :func:`os.replace`): never half-written."""
    _write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_cub(
    out: str | os.PathLike[str],
    names: Sequence[str],
    train_per_class: int,
    test_per_class: int,
    render: Callable[[int, int], tuple[Image.Image, _XYWH, dict[str, _XYWH]]],
) -> int:
    """The one writer of a synthetic data set in CUB's file format under ``out``; returns the number of images.

    ``render(label, image_id)`` draws one image of class ``label`` (0-based): ``(image, box, extra)``, boxes
    ``(x, y, w, h)``, ``extra`` one more box per file name (``{"head_boxes.txt": head}``), written like
    ``bounding_boxes.txt``. Image ids are 1-based and interleave the classes (``render`` is called in id
    order); the first ``train_per_class`` images of each class are the training split. The index files are
    written last (atomically), after every image.

    Args:
        out: the folder (created if needed).
        names: the class folder names, CUB-style ``<id>.<name>`` (``001.Black_footed_Albatross``).
        train_per_class: training images per class.
        test_per_class: test images per class.
        render: draws one image, see above.

    Returns:
        the number of images written.

    Raises:
        ValueError: a name without a ``.``, or a count below 1.
    """
    bad = [name for name in names if "." not in name]
    if bad:
        raise ValueError(f"names must be CUB-style '<id>.<name>', got {bad[:3]}")
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError(
            f"train_per_class/test_per_class must be >= 1, got {train_per_class}/{test_per_class}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt")
    lines: dict[str, list[str]] = {name: [] for name in files}
    image_id = 0
    for index in range(train_per_class + test_per_class):
        for label, name in enumerate(names):
            image_id += 1
            image, box, extra = render(label, image_id)
            relative = f"{name}/{name.split('.', 1)[1]}_{index:04d}.jpg"
            path = out / "images" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, quality=95)
            lines["images.txt"].append(f"{image_id} {relative}")
            lines["image_class_labels.txt"].append(f"{image_id} {label + 1}")
            lines["train_test_split.txt"].append(f"{image_id} {1 if index < train_per_class else 0}")
            for filename, (x, y, w, h) in {"bounding_boxes.txt": box, **extra}.items():
                lines.setdefault(filename, []).append(f"{image_id} {x:.1f} {y:.1f} {w:.1f} {h:.1f}")
    for filename, content in lines.items():
        _write_text(out / filename, "\n".join(content) + "\n")
    _write_text(out / "classes.txt", "".join(f"{k + 1} {name}\n" for k, name in enumerate(names)))
    return image_id


#: Shapes, as polygon or ellipse makers on a unit square; the class index picks one.
SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "diamond", "ring", "star", "hexagon")
#: Textures painted inside the shape; the class index picks one (offset from the shape).
TEXTURES: tuple[str, ...] = ("hstripes", "checker", "dots", "vstripes", "diagonal", "solid", "grid", "rings")


@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of the shapes data set (:func:`write_shapes`), checked when it is built.

    Attributes:
        classes: number of classes (at most ``len(SHAPES)``).
        train_per_class: training images per class.
        test_per_class: test images per class.
        min_size: smallest image side in pixels (images have random sizes, as in CUB).
        max_size: largest image side in pixels.
        min_object: smallest object side as a fraction of the shorter image side.
        max_object: largest object side as a fraction of the shorter image side.
        clutter: number of background distractors (lines, small blobs) per image.
        seed: seed of the generator; the same seed writes the same files.
    """

    classes: int = 4
    train_per_class: int = 80
    test_per_class: int = 40
    min_size: int = 72
    max_size: int = 112
    min_object: float = 0.3
    max_object: float = 0.7
    clutter: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if (
            isinstance(self.classes, bool)
            or not isinstance(self.classes, int)
            or not 1 <= self.classes <= len(SHAPES)
        ):
            problems.append(f"classes: got {self.classes!r}, expected an int in 1..{len(SHAPES)}")
        if self.train_per_class < 1 or self.test_per_class < 1:
            problems.append(
                f"train_per_class/test_per_class: got {self.train_per_class}/{self.test_per_class}, expected >= 1"
            )
        if not 8 <= self.min_size <= self.max_size:
            problems.append(
                f"min_size/max_size: got {self.min_size}/{self.max_size}, expected 8 <= min <= max"
            )
        if not 0.0 < self.min_object <= self.max_object <= 1.0:
            problems.append(
                f"min_object/max_object: got {self.min_object}/{self.max_object}, expected 0 < min <= max <= 1"
            )
        if self.clutter < 0:
            problems.append(f"clutter: got {self.clutter}, expected >= 0")
        if problems:
            raise ValueError("ShapesSpec: " + "; ".join(problems))


def _shape_mask(shape: str, side: int) -> Image.Image:
    """A binary ``side × side`` mask ('L' mode) of ``shape`` filling the square."""
    mask: Image.Image = _pil().new("L", (side, side), 0)
    draw = _draw().Draw(mask)
    s = side - 1
    c = s / 2
    if shape == "disc":
        draw.ellipse((0, 0, s, s), fill=255)
    elif shape == "square":
        draw.rectangle((0, 0, s, s), fill=255)
    elif shape == "triangle":
        draw.polygon([(c, 0), (s, s), (0, s)], fill=255)
    elif shape == "cross":
        t = s / 3
        draw.rectangle((t, 0, 2 * t, s), fill=255)
        draw.rectangle((0, t, s, 2 * t), fill=255)
    elif shape == "diamond":
        draw.polygon([(c, 0), (s, c), (c, s), (0, c)], fill=255)
    elif shape == "ring":
        draw.ellipse((0, 0, s, s), fill=255)
        draw.ellipse((s * 0.3, s * 0.3, s * 0.7, s * 0.7), fill=0)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = c if k % 2 == 0 else c * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((c + radius * math.cos(angle), c + radius * math.sin(angle)))
        draw.polygon(points, fill=255)
    elif shape == "hexagon":
        draw.polygon(
            [(c + c * math.cos(a), c + c * math.sin(a)) for a in np.arange(6) * math.pi / 3], fill=255
        )
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(f"unknown shape {shape!r}")
    return mask


def _palette(label: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Two RGB colours (``2 × 3``, uint8) around the class's hue and its complement, jittered."""
    hue = label / classes + rng.uniform(-0.03, 0.03)
    colours = []
    for shift, value in ((0.0, rng.uniform(0.75, 1.0)), (0.5, rng.uniform(0.15, 0.4))):
        h = ((hue + shift) % 1.0) * 6
        s = rng.uniform(0.6, 1.0)
        c = value * s
        x = c * (1 - abs(h % 2 - 1))
        m = value - c
        r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
        colours.append([(r + m) * 255, (g + m) * 255, (b + m) * 255])
    palette: np.ndarray = np.asarray(colours).round().astype(np.uint8)
    return palette


def _texture(texture: str, side: int, colours: np.ndarray, label: int) -> np.ndarray:
    """A ``side × side × 3`` uint8 texture mixing two colours with the class's pattern and scale."""
    period = max(3, side // (4 + label % 3))
    y, x = np.mgrid[0:side, 0:side]
    patterns: dict[str, Callable[[], np.ndarray]] = {
        "hstripes": lambda: (y // period) % 2 == 0,
        "vstripes": lambda: (x // period) % 2 == 0,
        "checker": lambda: ((x // period) + (y // period)) % 2 == 0,
        "dots": lambda: ((x % period - period / 2) ** 2 + (y % period - period / 2) ** 2) < (period / 3) ** 2,
        "diagonal": lambda: ((x + y) // period) % 2 == 0,
        "solid": lambda: np.ones((side, side), dtype=bool),
        "grid": lambda: (x % period < 2) | (y % period < 2),
        "rings": lambda: (np.hypot(x - side / 2, y - side / 2) // period) % 2 == 0,
    }
    pick = patterns[texture]()
    texture_pixels: np.ndarray = np.where(pick[..., None], colours[0], colours[1]).astype(np.uint8)
    return texture_pixels


def _background(width: int, height: int, clutter: int, rng: np.random.Generator) -> Image.Image:
    """A cluttered background: a smooth colour gradient, noise, random lines and blobs."""
    top, bottom = rng.integers(0, 256, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    base = (1 - ramp) * top + ramp * bottom
    base = np.broadcast_to(base, (height, width, 3)) + rng.normal(0.0, 18.0, size=(height, width, 3))
    image: Image.Image = _pil().fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = _draw().Draw(image)
    for _ in range(clutter):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            x0, x1 = rng.integers(0, width, size=2)
            y0, y1 = rng.integers(0, height, size=2)
            draw.line((int(x0), int(y0), int(x1), int(y1)), fill=colour, width=int(rng.integers(1, 3)))
        else:
            r = int(rng.integers(2, max(3, min(width, height) // 10)))
            cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    return image


def render_shape(
    label: int, spec: ShapesSpec, rng: np.random.Generator
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Render one image of class ``label`` and its shape's tight box.

    Args:
        label: the class, ``0 … spec.classes - 1`` (it picks the shape and the texture).
        spec: the data set's parameters.
        rng: the generator the image is drawn from.

    Returns:
        ``(RGB image of a random size, box (x, y, width, height))``.
    """
    width = int(rng.integers(spec.min_size, spec.max_size + 1))
    height = int(rng.integers(spec.min_size, spec.max_size + 1))
    image = _background(width, height, spec.clutter, rng)
    short = min(width, height)
    side = round(short * rng.uniform(spec.min_object, spec.max_object))
    side = max(8, min(side, short))
    mask = _shape_mask(SHAPES[label % len(SHAPES)], side)
    colours = _palette(label, spec.classes, rng)
    texture = _texture(TEXTURES[(label + 1) % len(TEXTURES)], side, colours, label)
    x = int(rng.integers(0, width - side + 1))
    y = int(rng.integers(0, height - side + 1))
    image.paste(_pil().fromarray(texture), (x, y), mask)
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    box = (x + int(xs.min()), y + int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return image, box


def write_shapes(out: str | os.PathLike[str], spec: ShapesSpec) -> int:
    """Write the shapes data set under ``out`` in CUB's file format (:func:`write_cub`).

    One generator seeded with ``spec.seed`` draws the images in id order, so the same spec writes the same
    files.

    Args:
        out: the folder to write into (created if needed).
        spec: the shapes' parameters (:class:`ShapesSpec`).

    Returns:
        how many images were written: ``spec.classes · (train_per_class + test_per_class)``.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> write_shapes(out, ShapesSpec(classes=2, train_per_class=2, test_per_class=1, min_size=32, max_size=40))
        6
        >>> (out / "classes.txt").read_text().splitlines()
        ['1 001.disc_checker', '2 002.square_dots']
    """
    rng = np.random.default_rng(spec.seed)
    names = [f"{k + 1:03d}.{SHAPES[k]}_{TEXTURES[(k + 1) % len(TEXTURES)]}" for k in range(spec.classes)]

    def render(label: int, _image_id: int) -> tuple[Image.Image, tuple[int, int, int, int], dict[str, Any]]:
        image, box = render_shape(label, spec, rng)
        return image, box, {}

    return write_cub(out, names, spec.train_per_class, spec.test_per_class, render)
