"""Training data for WSOL: CUB-200-2011's and ILSVRC's own files, wsolevaluation splits, box-aware transforms.

The readers turn a data set into :class:`Sample` records (image path, 0-based label, ground-truth boxes
``(x0, y0, x1, y1)`` in original pixels, and the file and line that named the image) and check it whole
before anything trains: every problem is a :class:`lowcam.metrics.DataError` that names the file and the
line. :class:`SampleDataset` feeds the records through a box-aware transform to a ``DataLoader``
(:func:`collate_samples` batches them): the ORNet protocol's training and test transforms carry the boxes
along unclipped, wsolevaluation's squashes the image and rescales the boxes as it does.

- :func:`read_cub`: CUB-200-2011's own files (``images.txt``, ``bounding_boxes.txt``, ...).
- :func:`read_imagenet_train`, :func:`read_imagenet_val`: ILSVRC 2012's class folders and PASCAL-VOC XML.
- :func:`read_wsol_split`: a split in wsolevaluation's metadata layout, training splits included (the
  evaluation of saved maps is :mod:`lowcam.metrics`'s: :class:`lowcam.metrics.WSOLDataset`, ``lowcam-eval``).
- :func:`train_transform`, :func:`ornet_test_transform`, :func:`wsol_test_transform` and their pieces.
- Synthetic data sets in CUB's file format (:func:`write_cub`): :func:`write_birds`, birds whose class is
  decided by the head alone (the WSOL problem: a classifier's CAM box is too small), and
  :func:`write_shapes`, textured shapes on clutter.

Images are decoded with Pillow, imported on first use (``pip install 'lowcam[data]'``); nothing else
beyond torch and NumPy.
"""

from lowcam.data.birds import (
    HEAD_PATTERNS,
    BirdSpec,
    bird_class_names,
    render_bird,
    render_bird_masks,
    tight_box,
    write_birds,
)
from lowcam.data.dataset import SampleDataset, collate_samples
from lowcam.data.imagenet import imagenet_classes, read_imagenet_train, read_imagenet_val, read_voc_boxes
from lowcam.data.readers import (
    Box,
    DataSplit,
    Sample,
    VerifyMode,
    open_rgb,
    read_cub,
    read_wsol_split,
    to_rgb,
    verify_images,
)
from lowcam.data.synthetic import ShapesSpec, render_shape, write_cub, write_shapes
from lowcam.data.transforms import (
    BoxTransform,
    CenterCrop,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    ornet_test_transform,
    train_transform,
    wsol_test_transform,
)

__all__ = [
    "HEAD_PATTERNS",
    "BirdSpec",
    "Box",
    "BoxTransform",
    "CenterCrop",
    "Compose",
    "DataSplit",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Resize",
    "Sample",
    "SampleDataset",
    "ShapesSpec",
    "VerifyMode",
    "bird_class_names",
    "collate_samples",
    "imagenet_classes",
    "open_rgb",
    "ornet_test_transform",
    "read_cub",
    "read_imagenet_train",
    "read_imagenet_val",
    "read_voc_boxes",
    "read_wsol_split",
    "render_bird",
    "render_bird_masks",
    "render_shape",
    "tight_box",
    "to_rgb",
    "train_transform",
    "verify_images",
    "write_birds",
    "write_cub",
    "write_shapes",
    "wsol_test_transform",
]
