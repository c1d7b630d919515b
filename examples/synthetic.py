"""Write a small synthetic WSOL data set in CUB-200-2011's exact file format.

Each image holds one object whose class decides its shape and its texture (pattern, pattern scale and
a colour palette, jittered per image), at a random place and size on a cluttered background of random
colours (which can match any class's palette), together with its tight bounding box. The layout is CUB's::

    <out>/images.txt                 <image_id> <class_dir>/<file>.jpg
    <out>/image_class_labels.txt     <image_id> <class_id>            (1-based)
    <out>/train_test_split.txt       <image_id> <1 = train | 0 = test>
    <out>/bounding_boxes.txt         <image_id> <x> <y> <width> <height>   (pixels, floats)
    <out>/classes.txt                <class_id> <class_name>
    <out>/images/<class_dir>/<file>.jpg

so the CUB reader of ``examples/ornet`` reads it unchanged. Generation is seeded and deterministic.

Usage::

    python examples/synthetic.py --out data/synthetic --classes 4 --train-per-class 100 --test-per-class 50
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from birds import spec_from_args, write_cub
from PIL import Image, ImageDraw

#: Shapes, as polygon or ellipse makers on a unit square; the class index picks one.
SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "diamond", "ring", "star", "hexagon")
#: Textures painted inside the shape; the class index picks one (offset from the shape).
TEXTURES: tuple[str, ...] = ("hstripes", "checker", "dots", "vstripes", "diagonal", "solid", "grid", "rings")


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic data set.

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


def _shape_mask(shape: str, side: int) -> Image.Image:
    """A binary ``side × side`` mask ('L' mode) of ``shape`` filling the square."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
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
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
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


def render_sample(
    label: int, spec: SyntheticSpec, rng: np.random.Generator
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Render one image of class ``label`` (0-based) and its tight box ``(x, y, width, height)``."""
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
    image.paste(Image.fromarray(texture), (x, y), mask)
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    box = (x + int(xs.min()), y + int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return image, box


def write_dataset(out: Path, spec: SyntheticSpec) -> int:
    """Write the data set under ``out`` in CUB's file format (:func:`birds.write_cub`); returns the number
    of images. One generator seeded with ``spec.seed`` draws the images in id order."""
    if not 1 <= spec.classes <= len(SHAPES):
        raise ValueError(f"classes must be in [1, {len(SHAPES)}], got {spec.classes}")
    if spec.train_per_class < 1 or spec.test_per_class < 1:
        raise ValueError(
            f"train_per_class and test_per_class must be >= 1, got {spec.train_per_class}, {spec.test_per_class}"
        )
    rng = np.random.default_rng(spec.seed)
    names = [f"{k + 1:03d}.{SHAPES[k]}_{TEXTURES[(k + 1) % len(TEXTURES)]}" for k in range(spec.classes)]

    def render(label: int, _image_id: int) -> tuple[Image.Image, tuple[int, int, int, int], dict[str, Any]]:
        image, box = render_sample(label, spec, rng)
        return image, box, {}

    return write_cub(out, names, spec.train_per_class, spec.test_per_class, render)


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low`` (argparse turns the ValueError into a usage error)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (CUB layout)")
    parser.add_argument(
        "--classes", type=_int_at_least(1), default=defaults.classes, help=f"1..{len(SHAPES)}"
    )
    parser.add_argument("--train-per-class", type=_int_at_least(1), default=defaults.train_per_class)
    parser.add_argument("--test-per-class", type=_int_at_least(1), default=defaults.test_per_class)
    parser.add_argument("--min-size", type=_int_at_least(8), default=defaults.min_size)
    parser.add_argument("--max-size", type=_int_at_least(8), default=defaults.max_size)
    parser.add_argument("--clutter", type=_int_at_least(0), default=defaults.clutter)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    if args.classes > len(SHAPES):
        parser.error(f"--classes must be at most {len(SHAPES)}, got {args.classes}")
    if args.max_size < args.min_size:
        parser.error(f"--max-size ({args.max_size}) must be at least --min-size ({args.min_size})")
    spec = spec_from_args(SyntheticSpec, args)
    count = write_dataset(args.out, spec)
    print(f"wrote {count} images ({spec.classes} classes) in CUB format to {args.out}")


if __name__ == "__main__":
    main()
