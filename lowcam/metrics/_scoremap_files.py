"""Score-map files of ``lowcam-eval``: ``.npy`` headers checked before any data is read, one map loaded
as the reference loads it, and a folder checked as a unit (no ``*.tmp`` leftovers, the manifest of a folder
that lowcam wrote). Private: :mod:`lowcam.metrics.evaluate` is its user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lowcam.metrics.metadata import DataError, WSOLMetadata
from lowcam.metrics.scoremap import prepare_scoremap
from lowcam.metrics.scoremap_writer import MANIFEST_NAME

__all__: list[str] = []

#: The reference squashes images, masks and score maps to 224×224.
_SCOREMAP_SIZE = 224
#: The manifest of a score-map folder written as a unit by lowcam (see docs/evaluate.md).
_MANIFEST = MANIFEST_NAME
#: The largest raw CAM ``--prepare_scoremaps`` reads (pixels): 2**26, 512 MiB in float64.
_MAX_PIXELS = 2**26


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """``(shape, dtype, offset of the data)`` of a ``.npy`` file, from its header only (no data is read).

    Raises:
        ValueError: not a ``.npy`` file, or a header that does not parse.
    """
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:  # pragma: no cover - numpy's read_magic rejects other versions
            raise ValueError(f"unsupported .npy version {version}")
        return tuple(int(v) for v in shape), dtype, handle.tell()


def _check_scoremap_file(root: Path, image_id: str, meta: WSOLMetadata, prepare: bool) -> Path:
    """The score map's path, after checking from its header alone that it exists and holds a 2-D real array
    of a size this run accepts, with as many bytes as the header promises (so that loading it is bounded)."""
    ids_path, line = meta.origin(image_id)
    path = root / f"{image_id}.npy"
    if not path.is_file():
        raise DataError(ids_path, line, f"score map of image {image_id!r} not found: {path}")
    where = f"score map of image {image_id!r} ({ids_path.name} line {line})"
    try:
        shape, dtype, offset = _npy_header(path)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(path, None, f"unreadable score map (image {image_id!r}): {error}") from error
    if dtype.kind not in "fiu" or dtype.hasobject:
        raise DataError(path, None, f"{where} must hold real numbers, got {dtype}")
    if len(shape) != 2 or 0 in shape:
        raise DataError(path, None, f"{where} must be a 2-D (H, W) array, got shape {shape}")
    if not prepare and shape != (_SCOREMAP_SIZE, _SCOREMAP_SIZE):
        raise DataError(
            path,
            None,
            f"{where} has shape {shape}; wsolevaluation evaluates 224x224 maps (its inference resizes "
            "each CAM bicubically to 224x224 and min-max normalises it): save such maps, or pass "
            "--prepare_scoremaps to do it here",
        )
    pixels = shape[0] * shape[1]
    if pixels > _MAX_PIXELS:
        raise DataError(
            path, None, f"{where} has shape {shape}: {pixels} pixels, more than the {_MAX_PIXELS} accepted"
        )
    expected = offset + pixels * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise DataError(
            path,
            None,
            f"{where}: its header promises a {shape} {dtype} array ({expected} bytes with the header), but the "
            f"file has {size} bytes",
        )
    return path


def _load_scoremap(root: Path, image_id: str, meta: WSOLMetadata, prepare: bool) -> Tensor:
    """One score map as a ``(224, 224)`` float64 tensor, checked as the reference's ``check_scoremap_validity``."""
    ids_path, line = meta.origin(image_id)
    path = _check_scoremap_file(root, image_id, meta, prepare)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(path, None, f"unreadable score map (image {image_id!r}): {error}") from error
    where = f"score map of image {image_id!r} ({ids_path.name} line {line})"
    values = np.asarray(array, dtype=np.float64)  # the reference evaluates maps in float64 (t2n)
    if prepare:
        if np.isinf(values).any():
            raise DataError(path, None, f"{where} holds an infinite value")
        return prepare_scoremap(torch.from_numpy(values)[None], size=_SCOREMAP_SIZE)[0]
    if np.isnan(values).any():
        raise DataError(path, None, f"{where} holds NaN (the reference rejects it too)")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise DataError(
            path,
            None,
            f"{where} must lie in [0, 1], got min {low} and max {high} (min-max normalise the maps, or pass "
            "--prepare_scoremaps)",
        )
    return torch.from_numpy(values)


def _check_scoremap_folder(root: Path, meta: WSOLMetadata) -> None:
    """The reader's side of a score-map folder written as a unit (docs/evaluate.md, "Score-map folders").

    Refuses a folder holding ``*.tmp`` files (an interrupted writer); with a manifest, refuses a manifest
    that is not lowcam's, an image to evaluate that it does not list, and a listed file that is missing.
    Without a manifest (e.g. wsolevaluation's own output) nothing more is checked here.
    """
    if not root.is_dir():
        raise DataError(root, None, "score-map folder (--scoremap_root) not found")
    leftovers = sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))
    if leftovers:
        shown = ", ".join(leftovers[:3]) + (f" and {len(leftovers) - 3} more" if len(leftovers) > 3 else "")
        raise DataError(
            root,
            None,
            f"holds {len(leftovers)} unfinished file(s) of an interrupted writer ({shown}); the folder may mix "
            "maps of two runs: write the score maps again (or remove the *.tmp files if you know the rest is "
            "complete)",
        )
    manifest = root / _MANIFEST
    if not manifest.exists():
        return
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(manifest, None, f"unreadable score-map manifest: {error}") from error
    ids = data.get("image_ids") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("format") != "lowcam-scoremaps"
        or data.get("version") != 1
        or not isinstance(ids, list)
        or not all(isinstance(i, str) for i in ids)
        or data.get("count") != len(ids)
    ):
        raise DataError(
            manifest,
            None,
            'not a lowcam score-map manifest: expected {"format": "lowcam-scoremaps", "version": 1, '
            '"count": N, "image_ids": [N image ids]}',
        )
    listed = set(ids)
    for image_id in meta.image_ids:
        if image_id not in listed:
            ids_path, line = meta.origin(image_id)
            raise DataError(
                manifest,
                None,
                f"does not list image {image_id!r} ({ids_path.name} line {line}): the folder was written for "
                "other images (another split or data set)",
            )
    for image_id in ids:
        if not (root / f"{image_id}.npy").is_file():
            raise DataError(
                manifest, None, f"lists image {image_id!r}, but {root / (image_id + '.npy')} is missing"
            )
