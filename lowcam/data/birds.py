"""Synthetic "birds" in CUB-200-2011's file format: a data set that has the WSOL problem (:func:`write_birds`).

Every image holds one bird: a body, a wing, a tail, a beak and an eye that **every class shares** (their
colours are drawn from one distribution of earth tones, the same for all classes), and a head whose
**colour and pattern are the class** (class ``k``: its own hue and one of four patterns: solid, crown,
eye stripe, spots). The head covers about 15 % of the bird's box, so a classifier needs only the head, and
the object box is the whole bird (body, tail, head and beak): a CAM that finds only the head gives a box
much smaller than the object's — the reason WSOL methods exist. (Whether a given network's CAM does
depends on its receptive field against the image size: ``benchmarks/wsol_problem.py`` measures it.)
The background is neutral clutter (a muted gradient, noise, branches and leaves of
random muted colours, independent of the class), or, with ``background_cue > 0``, a background whose hue
follows the class with that probability (the "waterbirds" shortcut). With ``body_cue > 0`` the body and
wing take the class's hue with that probability: a weaker, unreliable cue spread over the whole bird, as
a real species' plumage is (the head stays the one reliable part), so that a map covering the body
carries evidence of the class once the head is erased.

Images are ``size`` × ``size`` pixels (128 by default). The layout is CUB's (:func:`~lowcam.data.write_cub`),
which :func:`~lowcam.data.read_cub` reads::

    <out>/images.txt                 <image_id> <class_dir>/<file>.jpg
    <out>/image_class_labels.txt     <image_id> <class_id>            (1-based)
    <out>/train_test_split.txt       <image_id> <1 = train | 0 = test>
    <out>/bounding_boxes.txt         <image_id> <x> <y> <width> <height>   (the whole bird, pixels)
    <out>/classes.txt                <class_id> <class_name>
    <out>/images/<class_dir>/<file>.jpg

plus ``head_boxes.txt`` (same format: the head, the part that decides the class), which CUB readers
ignore. Each image is drawn from its own generator, seeded with ``(seed, image_id)``, so the files are
deterministic and an image does not depend on the others.

``examples/birds.py`` is its command line (``make demo`` runs it).
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lowcam.data.synthetic import _XYWH, _draw, write_cub
from lowcam.metrics.dataset import _pillow as _pil

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "HEAD_PATTERNS", "BirdSpec", "bird_class_names", "render_bird", "render_bird_masks", "tight_box", "write_birds",
]  # fmt: skip

#: Head patterns; class ``k`` has pattern ``HEAD_PATTERNS[k % 4]`` and hue ``k / classes``.
HEAD_PATTERNS: tuple[str, ...] = ("solid", "crown", "eyestripe", "spots")
_HUE_NAMES = (
    "red",
    "orange",
    "yellow",
    "lime",
    "green",
    "teal",
    "cyan",
    "azure",
    "blue",
    "violet",
    "purple",
    "pink",
)


@dataclass(frozen=True)
class BirdSpec:
    """Parameters of the bird data set.

    Attributes:
        classes: number of classes (2 to 12; each has its own head hue and pattern).
        train_per_class: training images per class.
        test_per_class: test images per class.
        size: image side in pixels.
        min_bird: smallest bird length (beak to tail) as a fraction of ``size``.
        max_bird: largest bird length as a fraction of ``size``.
        head: head radius as a fraction of the bird's length (0.13: the head's box is ~15 % of the bird's).
        clutter: branches and leaves drawn behind the bird.
        background_cue: probability that the background's hue is the class's (0: a neutral background).
        body_cue: probability that the body and wing take the class's hue (0: every body an earth tone):
            weaker, less reliable evidence of the class than the head, as a real bird's plumage is. The
            tint is the head's hue at a low saturation, so it is a weaker cue for classes whose hue is
            near the earth tones (red, orange: hues 0.04-0.14) than for the others.
        seed: seed of the generator; the same seed writes the same files.
    """

    classes: int = 4
    train_per_class: int = 150
    test_per_class: int = 50
    size: int = 128
    min_bird: float = 0.55
    max_bird: float = 0.85
    head: float = 0.13
    clutter: int = 10
    background_cue: float = 0.0
    body_cue: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 2 <= self.classes <= len(_HUE_NAMES):
            problems.append(f"classes: got {self.classes}, expected 2..{len(_HUE_NAMES)}")
        if self.train_per_class < 1 or self.test_per_class < 1:
            problems.append(
                f"train_per_class/test_per_class: got {self.train_per_class}/{self.test_per_class}, expected >= 1"
            )
        if self.size < 32:
            problems.append(f"size: got {self.size}, expected >= 32")
        if not 0.2 <= self.min_bird <= self.max_bird <= 0.9:
            problems.append(
                f"min_bird/max_bird: got {self.min_bird}/{self.max_bird}, expected 0.2 <= min <= max <= 0.9"
            )
        if not 0.05 <= self.head <= 0.3:
            problems.append(f"head: got {self.head}, expected 0.05..0.3")
        if self.clutter < 0:
            problems.append(f"clutter: got {self.clutter}, expected >= 0")
        if not 0.0 <= self.background_cue <= 1.0:
            problems.append(f"background_cue: got {self.background_cue}, expected 0..1")
        if not 0.0 <= self.body_cue <= 1.0:
            problems.append(f"body_cue: got {self.body_cue}, expected 0..1")
        if problems:
            raise ValueError("BirdSpec: " + "; ".join(problems))


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return round(r * 255), round(g * 255), round(b * 255)


def _muted(rng: np.random.Generator) -> tuple[int, int, int]:
    return _rgb(rng.random(), rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.85))


def _draw_background(size: int, clutter: int, hue: float | None, rng: np.random.Generator) -> Image.Image:
    """A muted vertical gradient with noise, then ``clutter`` branches and leaves of muted colours.

    ``hue`` (the class cue) replaces the gradient's random hues when given; the random draws are the same
    either way, so the rest of the image does not change.
    """
    hues = rng.random(2)
    sats = rng.uniform(0.05, 0.3, 2)
    vals = rng.uniform(0.35, 0.85, 2)
    if hue is not None:
        hues, sats = np.array([hue, hue]), np.array([0.45, 0.45])
    top, bottom = (np.array(_rgb(h, s, v), dtype=np.float64) for h, s, v in zip(hues, sats, vals))
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    base = (1 - ramp) * top + ramp * bottom + rng.normal(0.0, 10.0, size=(size, size, 3))
    image: Image.Image = _pil().fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = _draw().Draw(image)
    for _ in range(clutter):
        colour = _muted(rng)
        kind = rng.random()
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, size=4))
        width = int(rng.integers(1, 4))
        radius = int(rng.integers(2, max(3, size // 14)))
        if kind < 0.5:
            draw.line((x0, y0, x1, y1), fill=colour, width=width)
        else:
            draw.ellipse((x0 - radius, y0 - radius // 2, x0 + radius, y0 + radius // 2), fill=colour)
    return image


def render_bird(label: int, spec: BirdSpec, rng: np.random.Generator) -> tuple[Image.Image, _XYWH, _XYWH]:
    """One image of class ``label`` (0-based): ``(image, bird box, head box)``, boxes ``(x, y, w, h)``, the
    tight boxes of the bird's pixels (body, wing, tail, beak, head, eye) and of the head's.

    The random draws do not depend on ``label``: the same ``rng`` state gives the same bird, pose and
    background for every class, and only the head's colours and pattern (and, with ``background_cue``,
    the background's hue; with ``body_cue``, the body's and wing's hue) change with the class.

    Args:
        label: the class, ``0 … spec.classes - 1``.
        spec: the data set's parameters.
        rng: the generator the bird is drawn from.

    Returns:
        ``(RGB image (spec.size²), bird box, head box)``.

    Raises:
        ValueError: ``label`` out of range.
    """
    image, bird, head = render_bird_masks(label, spec, rng)
    return image, tight_box(bird), tight_box(head)


def render_bird_masks(
    label: int, spec: BirdSpec, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """:func:`render_bird` with the masks: ``(image, bird mask, head mask)``, boolean ``(size, size)``.

    Args:
        label: the class, ``0 … spec.classes - 1``.
        spec: the data set's parameters.
        rng: the generator the bird is drawn from (the same state as :func:`render_bird`'s gives the same
            bird).

    Returns:
        ``(RGB image, bird mask, head mask)``.

    Raises:
        ValueError: ``label`` out of range.
    """
    if not 0 <= label < spec.classes:
        raise ValueError(f"label: got {label}, expected 0..{spec.classes - 1}")
    size = spec.size
    cue = rng.random() < spec.background_cue
    background = _draw_background(size, spec.clutter, label / spec.classes if cue else None, rng)

    length = rng.uniform(spec.min_bird, spec.max_bird) * size  # beak tip to tail tip
    facing_left = rng.random() < 0.5
    body_hsv = (rng.uniform(0.04, 0.14), rng.uniform(0.15, 0.5), rng.uniform(0.35, 0.75))
    wing_shade = [rng.uniform(0.55, 0.8) for _ in range(3)]
    beak_colour = _rgb(rng.uniform(0.1, 0.16), rng.uniform(0.2, 0.5), rng.uniform(0.6, 0.9))
    head_jitter = rng.uniform(-0.02, 0.02), rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)
    spot_seed = int(rng.integers(0, 2**31))

    # geometry on a canvas facing right, in units of the length; mirrored at the end when facing left
    r = spec.head * length
    body_w, body_h = 0.55 * length, 0.3 * length
    tail_len = 0.3 * length
    beak_len = 0.08 * length
    width = tail_len + body_w * 0.9 + 1.6 * r + beak_len  # tail tip to beak tip
    x_start = rng.uniform(1, max(2.0, size - width - 1))
    cy = rng.uniform(0.3 * size, 0.7 * size)
    cy = float(np.clip(cy, 0.14 * length + r + 1, size - body_h / 2 - 1))
    # drawn last, and only with a body cue, so that body_cue=0 draws exactly the birds it always drew
    if spec.body_cue > 0 and rng.random() < spec.body_cue:  # a body tinted with the class's hue
        body_hsv = (label / spec.classes + head_jitter[0], max(body_hsv[1], 0.35), body_hsv[2])
    body_colour = _rgb(*body_hsv)
    wing_colour = tuple(int(c * f) for c, f in zip(body_colour, wing_shade))
    body_x0 = x_start + tail_len
    body_cx = body_x0 + body_w / 2
    head_cx = body_x0 + body_w * 0.9 + r * 0.6
    head_cy = cy - 0.14 * length
    canvas = _pil().new("RGBA", (size, size), (0, 0, 0, 0))
    draw = _draw().Draw(canvas)
    # tail, body, wing, beak (shared by every class)
    draw.polygon(
        [(body_x0 + 0.1 * body_w, cy), (x_start, cy - 0.1 * length), (x_start, cy + 0.1 * length)],
        fill=(*wing_colour, 255),
    )
    draw.ellipse((body_x0, cy - body_h / 2, body_x0 + body_w, cy + body_h / 2), fill=(*body_colour, 255))
    draw.ellipse(
        (body_cx - body_w * 0.3, cy - body_h * 0.25, body_cx + body_w * 0.2, cy + body_h * 0.2),
        fill=(*wing_colour, 255),
    )
    beak_x0 = head_cx + r * 0.8
    draw.polygon(
        [
            (beak_x0, head_cy - r * 0.3),
            (beak_x0 + beak_len + r * 0.2, head_cy + r * 0.05),
            (beak_x0, head_cy + r * 0.3),
        ],
        fill=(*beak_colour, 255),
    )
    # the head: the only class-specific part
    hue = label / spec.classes + head_jitter[0]
    main = _rgb(hue, head_jitter[1], head_jitter[2])
    second = _rgb(hue + 0.5, 0.15, 0.95)  # a near-white of the complementary hue
    head = (head_cx - r, head_cy - r, head_cx + r, head_cy + r)
    head_mask = _pil().new("L", (size, size), 0)
    _draw().Draw(head_mask).ellipse(head, fill=255)
    pattern_layer = _pil().new("RGBA", (size, size), (*main, 255))
    pattern_draw = _draw().Draw(pattern_layer)
    pattern = HEAD_PATTERNS[label % len(HEAD_PATTERNS)]
    if pattern == "crown":
        pattern_draw.rectangle((head[0], head[1], head[2], head_cy - r * 0.35), fill=(*second, 255))
    elif pattern == "eyestripe":
        pattern_draw.rectangle((head[0], head_cy - r * 0.3, head[2], head_cy + r * 0.05), fill=(*second, 255))
    elif pattern == "spots":
        spots = np.random.default_rng(spot_seed)
        for _ in range(6):
            sx, sy = spots.uniform(-0.7, 0.7, 2) * r
            sr = max(1.0, 0.18 * r)
            pattern_draw.ellipse(
                (head_cx + sx - sr, head_cy + sy - sr, head_cx + sx + sr, head_cy + sy + sr),
                fill=(*second, 255),
            )
    canvas.paste(pattern_layer, (0, 0), head_mask)
    eye_r = max(1.0, 0.16 * r)
    ex, ey = head_cx + r * 0.35, head_cy - r * 0.15
    draw.ellipse((ex - eye_r, ey - eye_r, ex + eye_r, ey + eye_r), fill=(15, 15, 15, 255))
    head_mask_array = np.asarray(head_mask) > 0
    if facing_left:
        canvas = canvas.transpose(_pil().Transpose.FLIP_LEFT_RIGHT)
        head_mask_array = head_mask_array[:, ::-1]
    alpha = np.asarray(canvas)[..., 3] > 0
    background.paste(canvas.convert("RGB"), (0, 0), _pil().fromarray((alpha * 255).astype(np.uint8)))
    return background, alpha, head_mask_array


def tight_box(mask: np.ndarray) -> _XYWH:
    """The smallest box holding every ``True`` pixel of a mask.

    Args:
        mask: a boolean ``(H, W)`` array with at least one ``True``.

    Returns:
        ``(x, y, w, h)`` in pixels.

    Raises:
        ValueError: ``mask`` is not 2-D or holds no ``True`` pixel.
    """
    if mask.ndim != 2 or not mask.any():
        raise ValueError(f"mask must be a 2-D array with a True pixel, got shape {mask.shape}")
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def bird_class_names(classes: int) -> list[str]:
    """The birds' CUB-style class folder names: ``001.red_solid_head``, … (the head's hue and pattern).

    Args:
        classes: the number of classes.

    Returns:
        one name per class, in label order.
    """
    names = []
    for k in range(classes):
        hue = _HUE_NAMES[round(k / classes * len(_HUE_NAMES)) % len(_HUE_NAMES)]
        names.append(f"{k + 1:03d}.{hue}_{HEAD_PATTERNS[k % len(HEAD_PATTERNS)]}_head")
    return names


def write_birds(out: str | os.PathLike[str], spec: BirdSpec) -> int:
    """Write the bird data set under ``out`` in CUB's file format (:func:`~lowcam.data.write_cub`), with
    ``head_boxes.txt`` (the heads' boxes, same format as ``bounding_boxes.txt``).

    Image ``i`` is drawn from its own generator, seeded with ``(spec.seed, i)``: the files are deterministic
    and an image does not depend on the others.

    Args:
        out: the folder (created if needed).
        spec: the data set's parameters.

    Returns:
        the number of images written.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> write_birds(out, BirdSpec(classes=2, train_per_class=2, test_per_class=1, size=48))
        6
        >>> from lowcam.data import read_cub
        >>> read_cub(out, "test").classes
        ['001.red_solid_head', '002.cyan_crown_head']
    """

    def render(label: int, image_id: int) -> tuple[Image.Image, _XYWH, dict[str, _XYWH]]:
        image, bird, head = render_bird(label, spec, np.random.default_rng([spec.seed, image_id]))
        return image, bird, {"head_boxes.txt": head}

    return write_cub(out, bird_class_names(spec.classes), spec.train_per_class, spec.test_per_class, render)
