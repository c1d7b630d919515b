"""Readers for ILSVRC 2012 in its own layout: training class folders, validation images with PASCAL-VOC XML.

Errors are :class:`lowcam.metrics.DataError` naming the file and line, as for every reader.
"""

from __future__ import annotations

import os
import xml.parsers.expat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lowcam.data.readers import (
    _IMAGE_EXTENSIONS,
    Box,
    DataSplit,
    Sample,
    VerifyMode,
    _check_box,
    _number,
    _require_file,
    verify_images,
)
from lowcam.metrics.metadata import DataError

__all__ = ["imagenet_classes", "read_imagenet_train", "read_imagenet_val", "read_voc_boxes"]


def _hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _IMAGE_EXTENSIONS
    )


def imagenet_classes(train_dir: str | os.PathLike[str]) -> list[str]:
    """The class folder names (WordNet ids) under ``train_dir``, sorted: index = label. Hidden folders
    (``.ipynb_checkpoints``) are not classes.

    Args:
        train_dir: the training folder (``train/<wnid>/``).

    Returns:
        the sorted folder names.

    Raises:
        DataError: the folder is missing or holds no class folder.
    """
    base = Path(train_dir)
    if not base.is_dir():
        raise DataError(base, None, "training folder not found")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(base, None, "no class folders found")
    return classes


def read_imagenet_train(train_dir: str | os.PathLike[str], verify: VerifyMode = "header") -> DataSplit:
    """Read ILSVRC 2012's training set: one folder per class (``train/<wnid>/*.JPEG``), no boxes.

    Args:
        train_dir: the training folder.
        verify: how much of each image to check (:func:`~lowcam.data.verify_images`).

    Returns:
        the :class:`~lowcam.data.DataSplit`; labels follow :func:`imagenet_classes`, the image ids are
        ``train/<wnid>/<file>``.

    Raises:
        DataError: a missing folder, a class folder with no image, or an unreadable image.
    """
    base = Path(train_dir)
    classes = imagenet_classes(base)
    samples: list[Sample] = []
    for label, wnid in enumerate(classes):
        images = _list_images(base / wnid)
        if not images:
            raise DataError(base / wnid, None, "class folder holds no images")
        samples.extend(
            Sample(path, label, (), (path, 0), image_id=path.relative_to(base.parent).as_posix())
            for path in images
        )
    verify_images(samples, verify)
    return DataSplit(samples, classes)


@dataclass
class _XmlNode:
    tag: str
    line: int
    children: list[_XmlNode] = field(default_factory=list)
    text: str = ""

    def find(self, tag: str) -> _XmlNode | None:
        return next((child for child in self.children if child.tag == tag), None)

    def findall(self, tag: str) -> list[_XmlNode]:
        return [child for child in self.children if child.tag == tag]


def _parse_xml(path: Path) -> _XmlNode:
    """Parse ``path`` into a tree that remembers each element's line (``expat`` keeps them)."""
    parser = xml.parsers.expat.ParserCreate()
    root = _XmlNode("#document", 0)
    stack = [root]

    def start(tag: str, _attrs: dict[str, str]) -> None:
        node = _XmlNode(tag, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(_require_file(path).read_bytes(), True)
    except xml.parsers.expat.ExpatError as error:
        raise DataError(
            path, error.lineno, f"malformed XML: {xml.parsers.expat.errors.messages[error.code]}"
        ) from None
    if not root.children:
        raise DataError(path, None, "empty XML document")
    return root.children[0]


def _xml_number(path: Path, node: _XmlNode, tag: str) -> float:
    child = node.find(tag)
    if child is None:
        raise DataError(path, node.line, f"<{node.tag}> has no <{tag}>")
    return float(_number(path, child.line, f"<{tag}>", child.text.strip()))


def read_voc_boxes(path: str | os.PathLike[str]) -> tuple[list[tuple[str, Box, int]], tuple[int, int] | None]:
    """Read a PASCAL-VOC annotation: ``[(name, (x0, y0, x1, y1), line), ...]`` and the image size.

    ILSVRC's boxes use VOC's inclusive pixel coordinates; they are returned as written.

    Args:
        path: the XML file.

    Returns:
        ``(objects, size)``: each object's ``(name, box, line)``, and ``(width, height)`` from ``<size>``
        (``None`` without it).

    Raises:
        DataError: a missing or malformed file, an object without a name or a box, a bad number or box,
            or no object at all, naming the line.
    """
    xml_path = Path(path)
    root = _parse_xml(xml_path)
    size = None
    size_node = root.find("size")
    if size_node is not None:
        size = (
            int(_xml_number(xml_path, size_node, "width")),
            int(_xml_number(xml_path, size_node, "height")),
        )
    objects = []
    for obj in root.findall("object"):
        name_node = obj.find("name")
        if name_node is None or not name_node.text.strip():
            raise DataError(xml_path, obj.line, "<object> has no <name>")
        box_node = obj.find("bndbox")
        if box_node is None:
            raise DataError(xml_path, obj.line, "<object> has no <bndbox>")
        box = tuple(_xml_number(xml_path, box_node, tag) for tag in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((name_node.text.strip(), _check_box(xml_path, box_node.line, box), box_node.line))  # type: ignore[arg-type]
    if not objects:
        raise DataError(xml_path, root.line, "no <object> with a box")
    return objects, size


def read_imagenet_val(
    val_dir: str | os.PathLike[str],
    annotations_dir: str | os.PathLike[str],
    classes: Sequence[str],
    verify: VerifyMode = "header",
) -> DataSplit:
    """Read ILSVRC 2012's validation set: images with one PASCAL-VOC XML file each (several boxes).

    ``val_dir`` holds the images, flat (``ILSVRC2012_val_00000001.JPEG``) or in class folders;
    ``annotations_dir`` holds ``ILSVRC2012_val_00000001.xml`` etc. The class of an image is the
    ``<name>`` (WordNet id) of its objects, looked up in ``classes`` (the training folders' order);
    every box of the image is kept.

    Args:
        val_dir: the folder of validation images.
        annotations_dir: the folder of XML files.
        classes: the class names in label order (:func:`imagenet_classes` of the training folder).
        verify: how much of each image to check (:func:`~lowcam.data.verify_images`).

    Returns:
        the :class:`~lowcam.data.DataSplit`, in the order of the XML files' names.

    Raises:
        DataError: an image with no XML, an XML with no image, a malformed XML, an unknown or mixed
            class, a bad box, or an unreadable image.
    """
    images_base, xml_base = Path(val_dir), Path(annotations_dir)
    for folder in (images_base, xml_base):
        if not folder.is_dir():
            raise DataError(folder, None, "folder not found")
    index = {wnid: k for k, wnid in enumerate(classes)}
    images: dict[str, Path] = {}
    for path in sorted(images_base.rglob("*")):
        if not path.is_file() or _hidden(path, images_base) or path.suffix.lower() not in _IMAGE_EXTENSIONS:
            continue
        if path.stem in images:
            raise DataError(
                path, None, f"two images share the stem {path.stem!r} ({images[path.stem].name}); remove one"
            )
        images[path.stem] = path
    xmls = {p.stem: p for p in sorted(xml_base.rglob("*.xml")) if not _hidden(p, xml_base)}
    for stem, image in sorted(images.items()):
        if stem not in xmls:
            raise DataError(image, None, f"image has no annotation {stem}.xml in {xml_base}")
    samples: list[Sample] = []
    for stem, xml_path in sorted(xmls.items()):
        objects, _ = read_voc_boxes(xml_path)
        if stem not in images:
            raise DataError(xml_path, 1, f"annotation has no image {stem}.* in {images_base}")
        names = {name for name, _, _ in objects}
        for name, _, line in objects:
            if name not in index:
                raise DataError(
                    xml_path, line, f"class {name!r} is not one of the {len(classes)} training classes"
                )
        if len(names) != 1:
            raise DataError(
                xml_path, objects[0][2], f"objects of several classes {sorted(names)} in one image"
            )
        label = index[objects[0][0]]
        samples.append(
            Sample(
                images[stem],
                label,
                tuple(box for _, box, _ in objects),
                (xml_path, 1),
                image_id=images[stem].relative_to(images_base.parent).as_posix(),
                box_origins=tuple((xml_path, line) for _, _, line in objects),
            )
        )
    verify_images(samples, verify)
    return DataSplit(samples, list(classes))
