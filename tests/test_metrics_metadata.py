"""lowcam.metrics.metadata: the wsolevaluation metadata readers, mask reading and the GT box frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from metrics_reference import ref_resize_nearest
from PIL import Image

from lowcam import metrics
from lowcam.metrics import DataError, read_wsol_metadata


def write_split(
    folder: Path,
    *,
    ids: str = "001.A/a_1.jpg\n001.A/a_2.jpg\n002.B/b_1.jpg\n",
    labels: str | None = "001.A/a_1.jpg,0\n001.A/a_2.jpg,0\n002.B/b_1.jpg,1\n",
    sizes: str | None = "001.A/a_1.jpg,500,300\n001.A/a_2.jpg,80,40\n002.B/b_1.jpg,100,100\n",
    localization: str | None = (
        "001.A/a_1.jpg,10,20,400,280\n001.A/a_2.jpg,45,10,79,30\n002.B/b_1.jpg,0,0,50,50\n"
        "002.B/b_1.jpg,5,5,100,100\n"
    ),
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "image_ids.txt").write_text(ids)
    for name, text in (
        ("class_labels.txt", labels),
        ("image_sizes.txt", sizes),
        ("localization.txt", localization),
    ):
        if text is not None:
            (folder / name).write_text(text)
    return folder


def test_reads_a_box_split(tmp_path: Path) -> None:
    meta = read_wsol_metadata(write_split(tmp_path / "CUB" / "test"), num_classes=2)
    assert meta.image_ids == ("001.A/a_1.jpg", "001.A/a_2.jpg", "002.B/b_1.jpg")
    assert meta.labels == {"001.A/a_1.jpg": 0, "001.A/a_2.jpg": 0, "002.B/b_1.jpg": 1}
    assert meta.sizes["001.A/a_1.jpg"] == (500, 300)
    assert meta.boxes["002.B/b_1.jpg"] == ((0.0, 0.0, 50.0, 50.0), (5.0, 5.0, 100.0, 100.0))
    assert meta.origin("002.B/b_1.jpg") == (tmp_path / "CUB" / "test" / "image_ids.txt", 3)
    assert meta.masks == {} and meta.ignore == {}


def test_identical_duplicate_label_lines_are_accepted(tmp_path: Path) -> None:
    labels = "001.A/a_1.jpg,0\n001.A/a_2.jpg,0\n002.B/b_1.jpg,1\n001.A/a_1.jpg,0\n"
    meta = read_wsol_metadata(write_split(tmp_path, labels=labels))
    assert meta.labels["001.A/a_1.jpg"] == 0


@pytest.mark.parametrize(
    ("field", "content", "file", "line", "message"),
    [
        ("ids", "x.jpg\ny.jpg\nx.jpg\n", "image_ids.txt", 3, "duplicate image 'x.jpg' \\(first on line 1\\)"),
        ("ids", "x.jpg\n../y.jpg\n", "image_ids.txt", 2, "relative path inside its root"),
        ("ids", "/abs/y.jpg\n", "image_ids.txt", 1, "relative path inside its root"),
        (
            "labels",
            "001.A/a_1.jpg,0\n001.A/a_2.jpg,0\n002.B/b_1.jpg,1\n001.A/a_1.jpg,1\n",
            "class_labels.txt",
            4,
            "has label 1 here but 0 on line 1",
        ),
        ("labels", "001.A/a_1.jpg,zero\n", "class_labels.txt", 1, "class label must be an integer"),
        ("labels", "001.A/a_1.jpg,0\n001.A/a_2.jpg,-1\n", "class_labels.txt", 2, "out of range"),
        ("labels", "001.A/a_1.jpg,0\n001.A/a_2.jpg,7\n", "class_labels.txt", 2, "out of range"),
        ("labels", "001.A/a_1.jpg,0\nc.jpg,0\n", "class_labels.txt", 2, "not in image_ids.txt"),
        ("labels", "001.A/a_1.jpg,0\n001.A/a_2.jpg,0\n", "image_ids.txt", 3, "no entry in class_labels.txt"),
        ("sizes", "001.A/a_1.jpg,500,3OO\n", "image_sizes.txt", 1, "height must be an integer"),
        ("sizes", "001.A/a_1.jpg,500\n", "image_sizes.txt", 1, "expected 3 fields, got 2"),
        ("sizes", "001.A/a_1.jpg,0,300\n", "image_sizes.txt", 1, "must be positive"),
        (
            "sizes",
            "001.A/a_1.jpg,500,300\n001.A/a_2.jpg,80,40\n002.B/b_1.jpg,100,100\n001.A/a_1.jpg,300,500\n",
            "image_sizes.txt",
            4,
            "has size 300x500 here but 500x300 on line 1",
        ),
        (
            "sizes",
            "001.A/a_1.jpg,500,300\n001.A/a_2.jpg,80,40\n",
            "image_ids.txt",
            3,
            "no entry in image_sizes",
        ),
        ("loc", "001.A/a_1.jpg,10,20,400\n", "localization.txt", 1, "expected 5 fields, got 4"),
        ("loc", "001.A/a_1.jpg,10,20,4OO,280\n", "localization.txt", 1, "x1 must be a number"),
        ("loc", "001.A/a_1.jpg,10,20,nan,280\n", "localization.txt", 1, "x1 must be finite"),
        ("loc", "001.A/a_1.jpg,10,20,5,280\n", "localization.txt", 1, "invalid box"),
        ("loc", "001.A/a_1.jpg,-1,20,50,280\n", "localization.txt", 1, "invalid box"),
        ("loc", "001.A/a_1.jpg,10,20,501,280\n", "localization.txt", 1, "leaves its 500x300 image"),
        (
            "loc",
            "001.A/a_1.jpg,10,20,50,280\n002.B/b_1.jpg,0,0,50,101\n",
            "localization.txt",
            2,
            "leaves its",
        ),
        ("loc", "001.A/a_1.jpg,10,20,50,280\nzzz.jpg,0,0,5,5\n", "localization.txt", 2, "not in image_ids"),
        ("loc", "001.A/a_1.jpg,10,20,50,280\n002.B/b_1.jpg,0,0,5,5\n", "image_ids.txt", 2, "has no box"),
    ],
)
def test_bad_lines_name_file_and_line(
    tmp_path: Path, field: str, content: str, file: str, line: int, message: str
) -> None:
    keys = {"ids": "ids", "labels": "labels", "sizes": "sizes", "loc": "localization"}
    folder = write_split(tmp_path, **{keys[field]: content})
    with pytest.raises(DataError, match=message) as caught:
        read_wsol_metadata(folder, num_classes=2)
    error = caught.value
    assert (error.path.name, error.line) == (file, line)
    assert str(error).startswith(f"{error.path}:{line}: ")


@pytest.mark.parametrize("name", ["image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"])
def test_missing_required_file(tmp_path: Path, name: str) -> None:
    folder = write_split(tmp_path)
    (folder / name).unlink()
    with pytest.raises(DataError, match="file not found") as caught:
        read_wsol_metadata(folder)
    assert (caught.value.path.name, caught.value.line) == (name, None)


def test_optional_files(tmp_path: Path) -> None:
    folder = write_split(tmp_path, labels=None, sizes=None, localization=None)
    meta = read_wsol_metadata(folder, require_localization=False, require_labels=False)
    assert meta.labels == {} and meta.sizes == {} and meta.boxes == {}
    # an optional file that exists is still checked
    (folder / "class_labels.txt").write_text("001.A/a_1.jpg,x\n")
    with pytest.raises(DataError, match="class label must be an integer"):
        read_wsol_metadata(folder, require_localization=False, require_labels=False)
    with pytest.raises(DataError, match="metadata folder not found"):
        read_wsol_metadata(tmp_path / "nowhere")


def test_reads_a_mask_split(tmp_path: Path) -> None:
    loc = "a.jpg,m/a_0.png,m/a_ignore.png\na.jpg,m/a_1.png,\nb.jpg,m/b_0.png,\n"
    folder = write_split(
        tmp_path, ids="a.jpg\nb.jpg\n", labels="a.jpg,0\nb.jpg,1\n", sizes=None, localization=loc
    )
    meta = read_wsol_metadata(folder, localization="masks")
    assert [m.path for m in meta.masks["a.jpg"]] == ["m/a_0.png", "m/a_1.png"]
    assert [m.line for m in meta.masks["a.jpg"]] == [1, 2]
    assert meta.ignore == {"a.jpg": metrics.MaskRef("m/a_ignore.png", 1)}
    bad = loc + "a.jpg,m/a_2.png,m/other_ignore.png\n"
    (folder / "localization.txt").write_text(bad)
    with pytest.raises(DataError, match="second ignore mask") as caught:
        read_wsol_metadata(folder, localization="masks")
    assert caught.value.line == 4
    (folder / "localization.txt").write_text("a.jpg,m/a_0.png,\n")
    with pytest.raises(DataError, match="has no mask") as caught:
        read_wsol_metadata(folder, localization="masks")
    assert (caught.value.path.name, caught.value.line) == ("image_ids.txt", 2)
    (folder / "localization.txt").write_text("a.jpg,,\n")
    with pytest.raises(DataError, match="expected 3 fields"):
        read_wsol_metadata(folder, localization="masks")
    (folder / "localization.txt").write_text("a.jpg,../../etc/passwd,\n")
    with pytest.raises(DataError, match="mask path must be a relative path"):
        read_wsol_metadata(folder, localization="masks")


# ------------------------------------------------------------------------------------------------ masks


@pytest.mark.parametrize("mode", ["L", "RGB", "1", "P"])
def test_read_mask_matches_opencv(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    grey = np.where(rng.random((37, 53)) < 0.4, 255, 0).astype(np.uint8)
    grey[3:9, 4:20] = 255
    path = tmp_path / f"mask_{mode}.png"
    image = Image.fromarray(grey, mode="L")
    image.convert(mode).save(path)
    expected = ref_resize_nearest(np.float32(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)), 224)
    got = metrics.read_mask(path)
    assert got.dtype == torch.float32 and got.shape == (224, 224)
    assert np.array_equal(got.numpy() > 0.5, expected > 0.5)
    assert np.array_equal(metrics.read_mask(path, size=None).numpy(), np.float32(cv2.imread(str(path), 0)))


def test_read_mask_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mask file not found"):
        metrics.read_mask(tmp_path / "none.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="unreadable mask image") as caught:
        metrics.read_mask(tmp_path / "junk.png")
    assert caught.value.path.name == "junk.png"


# -------------------------------------------------------------------------------------------- box frames


def test_wsoleval_gt_boxes_hand_values() -> None:
    # x·224/W truncated, the product first: 45·224/80 = 126 exactly (45·(224/80) = 125.99999999999999)
    out = metrics.wsoleval_gt_boxes([[45, 10, 79, 30]], (80, 40))
    assert out.dtype == torch.float64
    assert out.tolist() == [[126.0, 56.0, 221.0, 168.0]]
    # a (4,) box, a float CUB box, a non-square frame (H', W') = (100, 200)
    assert metrics.wsoleval_gt_boxes([5.5, 6.5, 12.5, 14.5], (40, 30)).tolist() == [[30.0, 48.0, 70.0, 108.0]]
    assert metrics.wsoleval_gt_boxes([[10, 10, 20, 30]], (40, 30), size=(100, 200)).tolist() == [
        [50.0, 33.0, 100.0, 100.0]
    ]


def test_wsoleval_gt_boxes_equal_the_reference_formula_everywhere() -> None:
    widths = torch.arange(1, 700)
    xs = [int(x) for w in widths[::7] for x in range(0, int(w) + 1, 3)]
    ws = [int(w) for w in widths[::7] for _ in range(0, int(w) + 1, 3)]
    boxes = torch.tensor([[x, x, x, x] for x in xs], dtype=torch.float64)
    got = torch.cat([metrics.wsoleval_gt_boxes(b, (w, w)) for b, w in zip(boxes, ws)])
    expected = [[int(float(x) * 224.0 / float(w))] * 4 for x, w in zip(xs, ws)]  # resize_bbox's arithmetic
    assert got.to(torch.int64).tolist() == expected


def test_ornet_gt_boxes_hand_values() -> None:
    # CUB (x, y, w, h) = (50, 30, 200, 120) in a 500×300 image: ×256/500, ×256/300, −16
    out = metrics.ornet_gt_boxes([[50, 30, 200, 120]], (500, 300), box_format="xywh")
    assert out[0].tolist() == pytest.approx([9.6, 9.6, 112.0, 112.0], abs=1e-12)
    same = metrics.ornet_gt_boxes(torch.tensor([[50.0, 30.0, 250.0, 150.0]]), (500, 300))
    assert torch.equal(out, same)
    # nothing is clipped: a box beyond the crop keeps its coordinates (−16 and 240 here)
    assert metrics.ornet_gt_boxes([[0, 0, 500, 300]], (500, 300)).tolist() == [[-16.0, -16.0, 240.0, 240.0]]
    # resize 320, crop 224: offset 48
    assert metrics.ornet_gt_boxes([[100, 100, 200, 200]], (200, 400), resize=320, crop=224).tolist() == [
        [112.0, 32.0, 272.0, 112.0]
    ]


def test_box_frame_errors() -> None:
    with pytest.raises(ValueError, match="shape \\(K, 4\\)"):
        metrics.wsoleval_gt_boxes([[1, 2, 3]], (10, 10))
    with pytest.raises(ValueError, match="image_size"):
        metrics.wsoleval_gt_boxes([[1, 2, 3, 4]], (0, 10))
    with pytest.raises(ValueError, match="box_format"):
        metrics.ornet_gt_boxes([[1, 2, 3, 4]], (10, 10), box_format="cxcywh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop"):
        metrics.ornet_gt_boxes([[1, 2, 3, 4]], (10, 10), resize=200, crop=224)


def test_boxes_outside_the_image_can_be_kept(tmp_path: Path) -> None:
    folder = write_split(tmp_path, localization="001.A/a_1.jpg,10,20,501,280\n")
    with pytest.raises(DataError, match="leaves its 500x300 image"):
        read_wsol_metadata(folder, require_localization=False)
    meta = read_wsol_metadata(folder, require_localization=False, boxes_outside="keep")
    assert meta.boxes["001.A/a_1.jpg"] == ((10.0, 20.0, 501.0, 280.0),)
    with pytest.raises(ValueError, match="boxes_outside"):
        read_wsol_metadata(folder, boxes_outside="clip")  # type: ignore[arg-type]


def test_read_mask_16_bit_keeps_the_top_byte_like_opencv(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 511], [32768, 65535, 128, 40000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), values)
    expected = np.float32(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    assert np.array_equal(metrics.read_mask(path, size=None).numpy(), expected)
