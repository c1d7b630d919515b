"""The synthetic birds of ``lowcam.data.write_birds`` (and its command line ``examples/birds.py``): CUB format,
boxes, the class decided by the head only."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import birds
from PIL import Image

import lowcam.data
from lowcam.data import read_cub

SPEC = lowcam.data.BirdSpec(classes=3, train_per_class=3, test_per_class=2, seed=5)


def _box_of_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(np.any(a != b, axis=-1))
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _inside(inner: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    return x <= inner[0] and y <= inner[1] and inner[2] < x + w and inner[3] < y + h


def test_files_round_trip_through_the_cub_reader(tmp_path: Path) -> None:
    count = lowcam.data.write_birds(tmp_path, SPEC)
    assert count == 15
    train, test = read_cub(tmp_path, "train", verify="full"), read_cub(tmp_path, "test", verify="full")
    assert len(train.samples) == 9 and len(test.samples) == 6
    assert train.classes == ["001.red_solid_head", "002.green_crown_head", "003.blue_eyestripe_head"]
    assert sorted(s.label for s in test.samples) == [0, 0, 1, 1, 2, 2]
    heads = {
        int(line.split()[0]): tuple(float(v) for v in line.split()[1:])
        for line in (tmp_path / "head_boxes.txt").read_text().splitlines()
    }
    for sample in train.samples + test.samples:
        with Image.open(sample.path) as image:
            assert image.size == (128, 128)
        (x0, y0, x1, y1) = sample.boxes[0]
        image_id = int(sample.path.stem.rsplit("_", 1)[1]) * 3 + sample.label + 1
        hx, hy, hw, hh = heads[image_id]
        assert x0 <= hx and y0 <= hy and hx + hw <= x1 and hy + hh <= y1  # the head is inside the bird
        assert hw * hh < 0.25 * (x1 - x0) * (y1 - y0)  # and a small part of it
    again = tmp_path / "again"
    lowcam.data.write_birds(again, SPEC)
    for name in ("images.txt", "bounding_boxes.txt", "head_boxes.txt", "classes.txt"):
        assert (again / name).read_text() == (tmp_path / name).read_text()
    first = train.samples[0].path.relative_to(tmp_path)
    assert (again / first).read_bytes() == (tmp_path / first).read_bytes()


def test_box_is_the_tight_box_of_every_bird_pixel() -> None:
    spec = lowcam.data.BirdSpec(clutter=3)
    for image_seed in range(4):
        image, bird, head = lowcam.data.render_bird_masks(1, spec, np.random.default_rng([0, image_seed]))
        # the background alone, from the same draws (render_bird_masks draws the cue, then the background)
        rng = np.random.default_rng([0, image_seed])
        rng.random()
        background = np.asarray(lowcam.data.birds._draw_background(128, 3, None, rng))
        pixels = np.asarray(image)
        changed = np.any(pixels != background, axis=-1)
        assert not changed[~bird].any()  # nothing but the bird is drawn over the background
        assert changed[bird].mean() > 0.95
        assert head.sum() < 0.3 * bird.sum() and not (head & ~bird).any()
        box = lowcam.data.render_bird(1, spec, np.random.default_rng([0, image_seed]))[1]
        ys, xs = np.nonzero(bird)
        assert box == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert box[2] > 0.5 * 128 and box[3] > 0.2 * 128


def test_class_is_decided_by_the_head_only() -> None:
    for image_seed in range(6):
        renders = [lowcam.data.render_bird(k, SPEC, np.random.default_rng([0, image_seed])) for k in range(3)]
        boxes = {(r[1], r[2]) for r in renders}
        assert len(boxes) == 1  # the same bird and head box for every class
        _, bird, head = renders[0]
        for k in (1, 2):
            diff = _box_of_difference(np.asarray(renders[0][0]), np.asarray(renders[k][0]))
            assert diff is not None and _inside(diff, head) and _inside(diff, bird)


def test_background_cue_changes_the_background_with_the_class() -> None:
    spec = lowcam.data.BirdSpec(classes=3, background_cue=1.0)
    a, _, head = lowcam.data.render_bird(0, spec, np.random.default_rng([0, 1]))
    b, _, _ = lowcam.data.render_bird(1, spec, np.random.default_rng([0, 1]))
    diff = _box_of_difference(np.asarray(a), np.asarray(b))
    assert diff is not None and not _inside(diff, head)
    mean_a, mean_b = np.asarray(a)[:8].reshape(-1, 3).mean(0), np.asarray(b)[:8].reshape(-1, 3).mean(0)
    assert np.abs(mean_a - mean_b).max() > 10  # the corner's colour follows the class


def test_bad_spec_is_named() -> None:
    with pytest.raises(ValueError, match="classes: got 1, expected 2..12"):
        lowcam.data.BirdSpec(classes=1)
    with pytest.raises(ValueError, match="background_cue: got 1.5, expected 0..1"):
        lowcam.data.BirdSpec(background_cue=1.5)
    with pytest.raises(ValueError, match="label: got 3, expected 0..2"):
        lowcam.data.render_bird(3, SPEC, np.random.default_rng(0))


def test_cli_writes_birds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    birds.main(
        ["--out", str(tmp_path), "--classes", "2", "--train-per-class", "1",
         "--test-per-class", "1", "--size", "64"]
    )  # fmt: skip
    assert "wrote 4 bird images" in capsys.readouterr().out
    assert len(read_cub(tmp_path, "train").samples) == 2
    with Image.open(read_cub(tmp_path, "test").samples[0].path) as image:
        assert image.size == (64, 64)


def test_body_cue_tints_the_body_with_the_class_and_leaves_cue_free_birds_unchanged() -> None:
    spec = lowcam.data.BirdSpec(classes=3, body_cue=1.0)
    a, bird, head = lowcam.data.render_bird_masks(0, spec, np.random.default_rng([0, 1]))
    b, _, _ = lowcam.data.render_bird_masks(1, spec, np.random.default_rng([0, 1]))
    body = bird & ~head
    colour_a, colour_b = np.asarray(a)[body].mean(0), np.asarray(b)[body].mean(0)
    assert np.abs(colour_a - colour_b).max() > 20  # the body's colour follows the class
    assert (np.asarray(a)[~bird] == np.asarray(b)[~bird]).all()  # the background does not
    # body_cue=0 draws the very birds the generator drew before body_cue existed (the benchmarks' data):
    # the digest of these renders, taken with the generator of commit f032e99 (Pillow's drawing included)
    digest = hashlib.sha256()
    for options in ({}, {"classes": 8}, {"background_cue": 0.9, "seed": 14}):
        plain = lowcam.data.BirdSpec(**options)
        for image_id in (1, 2, 3):
            for label in range(plain.classes):
                image, bird_box, head_box = lowcam.data.render_bird(
                    label, plain, np.random.default_rng([plain.seed, image_id])
                )
                digest.update(np.asarray(image).tobytes())
                digest.update(repr((bird_box, head_box)).encode())
    assert digest.hexdigest() == "8ab18576e97a4988653fd70af5693e906ffd9b3c144c02c369e19d90aa7deb0c"
    with pytest.raises(ValueError, match="body_cue: got -0.1, expected 0..1"):
        lowcam.data.BirdSpec(body_cue=-0.1)
