"""``lowcam.data``: the readers and box-carrying transforms on hand-written CUB and ILSVRC fixtures.

Every fixture is written by the test into ``tmp_path``; the bad-input tests check that the error names
the file and the line at fault.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lowcam.data import (
    Compose,
    Resize,
    SampleDataset,
    imagenet_classes,
    ornet_test_transform,
    read_cub,
    read_imagenet_train,
    read_imagenet_val,
    read_voc_boxes,
    read_wsol_split,
)
from lowcam.metrics import DataError

# ------------------------------------------------------------------------------------------------ CUB


def _image(
    path: Path, size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (90, 120, 150)
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def write_cub(root: Path) -> Path:
    """Three images, two classes: ids 1 and 3 train, 2 test."""
    (root / "classes.txt").write_text("1 001.Albatross\n2 002.Auklet\n")
    (root / "images.txt").write_text(
        "1 001.Albatross/a_1.jpg\n2 001.Albatross/a_2.jpg\n3 002.Auklet/b_1.jpg\n"
    )
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")
    (root / "bounding_boxes.txt").write_text("1 2.0 3.0 10.0 20.0\n2 0 0 40 30\n3 5.5 6.5 7.0 8.0\n")
    for name in ("001.Albatross/a_1.jpg", "001.Albatross/a_2.jpg", "002.Auklet/b_1.jpg"):
        _image(root / "images" / name)
    return root


def test_cub_reads_splits_labels_and_xywh_boxes(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    train = read_cub(root, "train")
    test = read_cub(root, "test")
    assert train.classes == ["001.Albatross", "002.Auklet"]
    assert [s.path.name for s in train.samples] == ["a_1.jpg", "b_1.jpg"]
    assert [s.label for s in train.samples] == [0, 1]
    assert train.samples[0].boxes == ((2.0, 3.0, 12.0, 23.0),)  # x, y, w, h -> x0, y0, x1, y1
    assert train.samples[1].boxes == ((5.5, 6.5, 12.5, 14.5),)
    assert [s.path.name for s in test.samples] == ["a_2.jpg"]
    assert test.samples[0].origin == (root / "images.txt", 2)


@pytest.mark.parametrize(
    ("filename", "content", "line", "message"),
    [
        ("bounding_boxes.txt", "1 2.0 3.0 10.0 20.0\n2 0 0 40\n3 5.5 6.5 7.0 8.0\n", 2, "expected 5 fields"),
        (
            "bounding_boxes.txt",
            "1 2.0 3.0 10.0 20.0\n2 0 0 forty 30\n3 5.5 6.5 7.0 8.0\n",
            2,
            "w must be a number",
        ),
        ("bounding_boxes.txt", "1 2.0 3.0 10.0 20.0\n2 0 0 0 30\n3 5.5 6.5 7.0 8.0\n", 2, "invalid box"),
        (
            "bounding_boxes.txt",
            "1 2.0 3.0 10.0 20.0\n\n3 5.5 6.5 7.0 8.0\n",
            2,
            "has no entry in bounding_boxes",
        ),
        ("image_class_labels.txt", "1 1\n3 2\n", 2, "has no entry in image_class_labels"),
        ("image_class_labels.txt", "1 1\n2 7\n3 2\n", 2, "class id 7 is not in classes.txt"),
        ("image_class_labels.txt", "1 1\n2 x\n3 2\n", 2, "class id must be an integer"),
        ("image_class_labels.txt", "1 1\n2 1\n3 2\n9 1\n", 4, "image id 9 is not in images.txt"),
        ("train_test_split.txt", "1 1\n2 2\n3 1\n", 2, "split flag must be 0 or 1"),
        (
            "images.txt",
            "1 001.Albatross/a_1.jpg\n1 001.Albatross/a_2.jpg\n3 002.Auklet/b_1.jpg\n",
            2,
            "duplicate",
        ),
        (
            "images.txt",
            "1 001.Albatross/a_1.jpg\ntwo 001.Albatross/a_2.jpg\n3 002.Auklet/b_1.jpg\n",
            2,
            "image id",
        ),
        ("classes.txt", "1 001.Albatross\n3 003.Crow\n", 2, "class ids must be 1..2"),
    ],
)
def test_cub_bad_lines_name_file_and_line(
    tmp_path: Path, filename: str, content: str, line: int, message: str
) -> None:
    root = write_cub(tmp_path)
    (root / filename).write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        read_cub(root, "train")
    error = caught.value
    expected_file = "images.txt" if "has no entry" in message else filename
    assert error.path.name == expected_file
    assert error.line == line
    assert str(error).startswith(f"{error.path}:{line}: ")


@pytest.mark.parametrize(
    "filename", ["images.txt", "bounding_boxes.txt", "classes.txt", "train_test_split.txt"]
)
def test_cub_missing_file(tmp_path: Path, filename: str) -> None:
    root = write_cub(tmp_path)
    (root / filename).unlink()
    with pytest.raises(DataError, match="file not found") as caught:
        read_cub(root, "test")
    assert caught.value.path == root / filename


def test_cub_unreadable_or_missing_image_names_its_line(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    (root / "images" / "002.Auklet" / "b_1.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="unreadable image") as caught:
        read_cub(root, "train")
    assert (caught.value.path.name, caught.value.line) == ("images.txt", 3)
    (root / "images" / "002.Auklet" / "b_1.jpg").unlink()
    with pytest.raises(DataError, match="image not found") as caught:
        read_cub(root, "train")
    assert caught.value.line == 3
    read_cub(root, "train", verify="none")  # the check can be switched off


def test_cub_truncated_image_caught_by_full_check(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    path = root / "images" / "001.Albatross" / "a_1.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="unreadable image") as caught:
        read_cub(root, "train", verify="full")
    assert caught.value.line == 1


# ---------------------------------------------------------------------------------------------- ILSVRC

VOC = """<annotation>
  <folder>val</folder>
  <filename>{stem}</filename>
  <size><width>50</width><height>40</height><depth>3</depth></size>
{objects}</annotation>
"""
OBJECT = """  <object>
    <name>{wnid}</name>
    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
  </object>
"""


def write_imagenet(root: Path) -> tuple[Path, Path, Path]:
    train, val, xml = root / "train", root / "val", root / "val_xml"
    for wnid in ("n01440764", "n01443537"):
        for k in range(2):
            _image(train / wnid / f"{wnid}_{k}.JPEG")
    boxes = {
        "ILSVRC2012_val_00000001": ("n01443537", [(1, 2, 30, 20), (10, 12, 45, 38)]),
        "ILSVRC2012_val_00000002": ("n01440764", [(0, 0, 49, 39)]),
    }
    xml.mkdir(parents=True)
    for stem, (wnid, items) in boxes.items():
        _image(val / f"{stem}.JPEG", (50, 40))
        objects = "".join(OBJECT.format(wnid=wnid, x0=a, y0=b, x1=c, y1=d) for a, b, c, d in items)
        (xml / f"{stem}.xml").write_text(VOC.format(stem=stem, objects=objects))
    return train, val, xml


def test_imagenet_train_and_val_with_several_boxes(tmp_path: Path) -> None:
    train_dir, val_dir, xml_dir = write_imagenet(tmp_path)
    classes = imagenet_classes(train_dir)
    train = read_imagenet_train(train_dir)
    assert classes == ["n01440764", "n01443537"]
    assert [s.label for s in train.samples] == [0, 0, 1, 1]
    val = read_imagenet_val(val_dir, xml_dir, classes)
    assert [s.path.name for s in val.samples] == [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000002.JPEG",
    ]
    assert [s.label for s in val.samples] == [1, 0]
    assert val.samples[0].boxes == ((1.0, 2.0, 30.0, 20.0), (10.0, 12.0, 45.0, 38.0))
    objects, size = read_voc_boxes(xml_dir / "ILSVRC2012_val_00000001.xml")
    assert size == (50, 40)
    assert [line for _, _, line in objects] == [7, 11]


def test_imagenet_val_in_class_folders(tmp_path: Path) -> None:
    train_dir, val_dir, xml_dir = write_imagenet(tmp_path)
    (val_dir / "n01443537").mkdir()
    (val_dir / "ILSVRC2012_val_00000001.JPEG").rename(val_dir / "n01443537" / "ILSVRC2012_val_00000001.JPEG")
    val = read_imagenet_val(val_dir, xml_dir, imagenet_classes(train_dir))
    assert val.samples[0].path.parent.name == "n01443537"


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (lambda t: t.replace("<xmax>30</xmax>", "<xmax>abc</xmax>"), 7, "<xmax> must be a number"),
        (lambda t: t.replace("<ymax>20</ymax>", ""), 7, "<bndbox> has no <ymax>"),
        (lambda t: t.replace("<xmax>30</xmax>", "<xmax>0</xmax>"), 7, "invalid box"),
        (lambda t: t.replace("n01443537", "n99999999", 1), 7, "not one of the 2 training classes"),
        (lambda t: t.replace("</size>", ""), 13, "malformed XML: mismatched tag"),
        (lambda t: t.replace("<name>n01443537</name>", "", 1), 5, "<object> has no <name>"),
    ],
)
def test_imagenet_bad_xml_names_file_and_line(tmp_path: Path, edit: object, line: int, message: str) -> None:
    train_dir, val_dir, xml_dir = write_imagenet(tmp_path)
    path = xml_dir / "ILSVRC2012_val_00000001.xml"
    path.write_text(edit(path.read_text()))  # type: ignore[operator]
    with pytest.raises(DataError, match=message) as caught:
        read_imagenet_val(val_dir, xml_dir, imagenet_classes(train_dir))
    assert caught.value.path == path
    assert caught.value.line == line


def test_imagenet_image_without_annotation_and_unreadable_image(tmp_path: Path) -> None:
    train_dir, val_dir, xml_dir = write_imagenet(tmp_path)
    classes = imagenet_classes(train_dir)
    (xml_dir / "ILSVRC2012_val_00000002.xml").unlink()
    with pytest.raises(DataError, match="has no annotation") as caught:
        read_imagenet_val(val_dir, xml_dir, classes)
    assert caught.value.path.name == "ILSVRC2012_val_00000002.JPEG"
    (val_dir / "ILSVRC2012_val_00000002.JPEG").unlink()
    (val_dir / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match="unreadable image") as caught:
        read_imagenet_val(val_dir, xml_dir, classes)
    assert caught.value.path.name == "ILSVRC2012_val_00000001.xml"


def test_wsol_metadata_layout(tmp_path: Path) -> None:
    meta = tmp_path / "metadata" / "ILSVRC" / "val"
    meta.mkdir(parents=True)
    for name in ("val/a.JPEG", "val/b.JPEG"):
        _image(tmp_path / name, (50, 40))
    (meta / "image_ids.txt").write_text("val/a.JPEG\nval/b.JPEG\n")
    (meta / "class_labels.txt").write_text("val/a.JPEG,3\nval/b.JPEG,0\n")
    (meta / "image_sizes.txt").write_text("val/a.JPEG,50,40\nval/b.JPEG,50,40\n")
    (meta / "localization.txt").write_text(
        "val/a.JPEG,1,2,30,20\nval/b.JPEG,0,0,10,10\nval/a.JPEG,10,12,45,38\n"
    )
    split = read_wsol_split(meta, tmp_path, require_boxes=True, classes=[str(k) for k in range(5)])
    assert [s.label for s in split.samples] == [3, 0]
    assert split.samples[0].boxes == ((1.0, 2.0, 30.0, 20.0), (10.0, 12.0, 45.0, 38.0))
    (meta / "localization.txt").write_text("val/a.JPEG,1,2,30,20\n")
    with pytest.raises(DataError, match="has no box") as caught:
        read_wsol_split(meta, tmp_path, require_boxes=True)
    assert (caught.value.path.name, caught.value.line) == ("image_ids.txt", 2)
    read_wsol_split(meta, tmp_path, require_boxes=False)  # a training split needs no boxes
    (meta / "localization.txt").write_text("val/a.JPEG,1,2,30,20\nval/b.JPEG,0,0,10\n")
    with pytest.raises(DataError, match="expected 5 fields") as caught:
        read_wsol_split(meta, tmp_path, require_boxes=True)
    assert (caught.value.path.name, caught.value.line) == ("localization.txt", 2)
    (meta / "localization.txt").write_text("val/a.JPEG,1,2,30,20\nval/c.JPEG,0,0,10,10\n")
    with pytest.raises(DataError, match="not in image_ids.txt") as caught:
        read_wsol_split(meta, tmp_path, require_boxes=True)
    assert caught.value.line == 2
    (meta / "localization.txt").write_text("val/a.JPEG,1,2,30,20\n")
    (meta / "class_labels.txt").write_text("val/a.JPEG,3\n")
    with pytest.raises(DataError, match="has no entry in class_labels.txt") as caught:
        read_wsol_split(meta, tmp_path, require_boxes=False)
    assert (caught.value.path.name, caught.value.line) == ("image_ids.txt", 2)


# ----------------------------------------------------------------------------------------- the dataset


def test_dataset_wsol_boxes_are_truncated_to_the_score_frame(tmp_path: Path) -> None:
    root = write_cub(tmp_path)
    split = read_cub(root, "train")
    dataset = SampleDataset(split.samples, Compose([Resize(32)]), wsol_score_size=224)
    image, label, boxes, index = dataset[1]
    assert image.shape == (3, 32, 32) and (label, index) == (1, 1)
    # (5.5, 6.5, 12.5, 14.5) in a 40×30 image -> int(x·224/40), int(y·224/30)
    assert boxes.tolist() == [[30.0, 48.0, 70.0, 108.0]]


# -------------------------------------------------------------------------- images and layouts (issue 12)


def test_sixteen_bit_png_and_float_tiff_scale_to_eight_bits(tmp_path: Path) -> None:
    import numpy as np

    from lowcam.data import Sample, open_rgb

    values16 = np.array([[0, 32896, 65535]], dtype=np.uint16)  # 32896 = 128 · 257
    Image.fromarray(values16).save(tmp_path / "deep.png")
    Image.fromarray(np.array([[0.0, 0.2, 1.0]], dtype=np.float32), mode="F").save(tmp_path / "float.tiff")
    for name, expected in (("deep.png", [0, 128, 255]), ("float.tiff", [0, 51, 255])):
        rgb = open_rgb(Sample(tmp_path / name, 0))
        assert rgb.mode == "RGB"
        pixels = np.asarray(rgb)
        assert pixels[0, :, 0].tolist() == expected, name  # convert("RGB") gave [0, 255, 255] / [0, 0, 1]
        assert (pixels[..., 0] == pixels[..., 2]).all()


def test_decompression_bomb_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_cub(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 40×30 images are now > 2× the limit
    with pytest.raises(DataError, match="too large to decode safely") as caught:
        read_cub(root, "train")
    assert caught.value.path == root / "images.txt" and caught.value.line == 1
    train = read_cub(root, "train", "none")
    with pytest.raises(DataError, match="too large"):
        SampleDataset(train.samples, ornet_test_transform(36, 32, (0.5,) * 3, (0.5,) * 3))[0]


@pytest.mark.parametrize("relative", ["../outside.jpg", "/etc/passwd", "001.Albatross/../../x.jpg"])
def test_cub_image_paths_stay_inside_the_root(tmp_path: Path, relative: str) -> None:
    root = write_cub(tmp_path)
    (root / "images.txt").write_text(f"1 001.Albatross/a_1.jpg\n2 {relative}\n3 002.Auklet/b_1.jpg\n")
    with pytest.raises(DataError, match="must stay inside") as caught:
        read_cub(root, "train", "none")
    assert (caught.value.path.name, caught.value.line) == ("images.txt", 2)


def test_cub_box_outside_its_image_names_the_box_line(tmp_path: Path) -> None:
    root = write_cub(tmp_path)  # images are 40×30
    (root / "bounding_boxes.txt").write_text("1 2.0 3.0 10.0 20.0\n2 0 0 40 30\n3 5.5 6.5 70.0 8.0\n")
    with pytest.raises(DataError, match="leaves its 40×30 image") as caught:
        read_cub(root, "train")
    assert (caught.value.path.name, caught.value.line) == ("bounding_boxes.txt", 3)
    assert len(read_cub(root, "test").samples) == 1  # the box of the full image (x1 = W) is fine


def test_imagenet_hidden_folders_are_not_classes_or_images(tmp_path: Path) -> None:
    train, val, xml = write_imagenet(tmp_path)
    _image(train / ".ipynb_checkpoints" / "stray.JPEG")
    _image(val / ".ipynb_checkpoints" / "ILSVRC2012_val_00000001.JPEG", (5, 5))
    assert imagenet_classes(train) == ["n01440764", "n01443537"]
    split = read_imagenet_val(val, xml, imagenet_classes(train))
    assert all(".ipynb_checkpoints" not in str(s.path) for s in split.samples)
    assert split.samples[0].image_id == "val/ILSVRC2012_val_00000001.JPEG"


def test_imagenet_stray_same_stem_file_is_an_error(tmp_path: Path) -> None:
    train, val, xml = write_imagenet(tmp_path)
    _image(val / "ILSVRC2012_val_00000001.png", (5, 5))  # would have replaced the annotated JPEG
    with pytest.raises(DataError, match="share the stem 'ILSVRC2012_val_00000001'"):
        read_imagenet_val(val, xml, imagenet_classes(train))


def test_imagenet_box_outside_the_image_names_the_xml_line(tmp_path: Path) -> None:
    train, val, xml = write_imagenet(tmp_path)
    path = xml / "ILSVRC2012_val_00000002.xml"
    path.write_text(path.read_text().replace("<xmax>49</xmax>", "<xmax>90</xmax>"))
    with pytest.raises(DataError, match="leaves its 50×40 image") as caught:
        read_imagenet_val(val, xml, imagenet_classes(train))
    assert caught.value.path == path and caught.value.line is not None and caught.value.line > 1
