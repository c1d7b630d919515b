"""A folder of score maps written as a unit, in wsolevaluation's layout, for ``lowcam-eval``.

The folder holds one ``.npy`` file per image, ``<root>/<image_id>.npy`` (the image id keeps its extension and
its sub-folders, as wsolevaluation's ``np.save(os.path.join(scoremap_root, image_id), cam)`` names them), and
a manifest. It is written so that ``<root>`` is never seen half-written:

1. the maps go into a staging folder ``<root>.partial-<random>`` next to ``<root>``, each file written under a
   temporary name ending in ``.tmp`` and then renamed (:func:`os.replace`);
2. last, the manifest ``lowcam_scoremaps.json`` is written (atomically) into the staging folder:
   ``{"format": "lowcam-scoremaps", "version": 1, "count": N, "image_ids": [sorted image ids]}``;
3. the staging folder replaces ``<root>``: an existing ``<root>`` is renamed ``<root>.old-<random>``, the
   staging folder renamed ``<root>``, and the old folder removed.

A crash leaves either the old complete folder or the new complete one at ``<root>``, plus a ``.partial-*`` or
``.old-*`` sibling that the next writer of the same root removes. A reader refuses a folder holding a ``.tmp``
file, and checks the image ids it evaluates against the manifest when there is one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO

import numpy as np
import torch
from torch import Tensor

__all__ = ["MANIFEST_NAME", "ScoremapWriter", "write_scoremaps"]

#: The manifest's file name inside a score-map folder.
MANIFEST_NAME = "lowcam_scoremaps.json"
_FORMAT = "lowcam-scoremaps"
_VERSION = 1


def _check_image_id(image_id: object) -> str:
    if not isinstance(image_id, str) or not image_id:
        raise TypeError(f"image_id must be a non-empty str, got {image_id!r}")
    pure = PurePosixPath(image_id.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (len(image_id) > 1 and image_id[1] == ":"):
        raise ValueError(f"image_id must be a relative path inside the score-map root, got {image_id!r}")
    if str(pure) != image_id.replace("\\", "/") or pure.name in ("", "."):
        # "./a", "a//b", "x/./y" or "a/" would name the same file as another id, or no file at all
        raise ValueError(
            f"image_id must be a normalised relative path (no '.', empty or trailing parts), got {image_id!r}"
        )
    if image_id.endswith(".tmp") or image_id == MANIFEST_NAME:
        raise ValueError(f"image_id {image_id!r} clashes with the folder's own files")
    return image_id


def _as_array(name: str, scoremap: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(scoremap, Tensor):
        if scoremap.is_complex() or scoremap.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got {scoremap.dtype}")
        array = scoremap.detach().to("cpu").numpy()
    elif isinstance(scoremap, np.ndarray):
        array = scoremap
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(scoremap).__name__}")
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got {array.dtype}")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty (H, W) or (1, H, W) map, got shape {array.shape}")
    return np.ascontiguousarray(array)


def _write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``<path>.<random>.tmp`` and :func:`os.replace` (``write(file)`` fills it)."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _foreign_file(root: Path) -> Path | None:
    """The first file under ``root`` that a score-map folder does not hold (None if there is none)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not (path.suffix in (".npy", ".tmp") or path.name == MANIFEST_NAME):
            return path
    return None


class ScoremapWriter:
    """Write the score maps of a split into ``root`` as a unit (see the module docstring for the contract).

    Use it as a context manager: on a normal exit the folder is committed (the manifest written, the
    staging folder swapped in); on an exception the staging folder is removed and ``root`` is left as it
    was. Without ``with``, call :meth:`commit` or :meth:`abort`.

    One writer per ``root`` at a time: a new writer removes the ``.partial-*`` and ``.old-*`` siblings it
    finds, which a second writer running at once (e.g. every rank of a distributed job) would still be
    using; write from one process.

    An existing ``root`` is replaced only if it looks like a score-map folder (``.npy`` files, sub-folders
    of them, a manifest): anything else under it is a ``FileExistsError``, raised before anything is
    written, so that a wrong ``root`` never deletes a user's files.

    Args:
        root: the score-map folder, e.g. ``train_log/scoremaps``.

    Raises:
        FileExistsError: ``root`` exists and holds other files, or is a file.

    Example:
        >>> import tempfile, pathlib, torch
        >>> root = pathlib.Path(tempfile.mkdtemp()) / "scoremaps"
        >>> with ScoremapWriter(root) as writer:
        ...     writer.write("val/a.jpg", torch.rand(224, 224, dtype=torch.float64))
        ...     writer.write("val/b.jpg", torch.rand(224, 224, dtype=torch.float64))
        >>> sorted(p.relative_to(root).as_posix() for p in root.rglob("*.npy"))
        ['val/a.jpg.npy', 'val/b.jpg.npy']
        >>> import json; json.loads((root / MANIFEST_NAME).read_text())["count"]
        2
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise FileExistsError(f"score-map root {self.root} exists and is not a folder")
        if self.root.is_dir():
            foreign = _foreign_file(self.root)
            if foreign is not None:
                raise FileExistsError(
                    f"score-map root {self.root} holds {foreign}, which is not a score map: refusing to replace "
                    "the folder (pick an empty or new folder)"
                )
        parent = self.root.parent
        parent.mkdir(parents=True, exist_ok=True)
        for stale in [*parent.glob(f"{self.root.name}.partial-*"), *parent.glob(f"{self.root.name}.old-*")]:
            if stale.is_dir():  # left by a writer that crashed
                shutil.rmtree(stale, ignore_errors=True)
        self.staging = parent / f"{self.root.name}.partial-{secrets.token_hex(6)}"
        self.staging.mkdir()
        self._ids: set[str] = set()
        self._open = True

    @property
    def image_ids(self) -> list[str]:
        """The image ids written so far, sorted."""
        return sorted(self._ids)

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("this ScoremapWriter is already committed or aborted")

    def write(self, image_id: str, scoremap: Tensor | np.ndarray) -> None:
        """Write one score map as ``<staging>/<image_id>.npy`` (atomically), in its own dtype.

        Args:
            image_id: the image's id in ``image_ids.txt`` (a relative path; sub-folders are created).
            scoremap: ``(H, W)`` or ``(1, H, W)`` real tensor or array (saved on the CPU, detached).

        Raises:
            TypeError, ValueError: a bad id or map; ValueError also for an id written twice.
            RuntimeError: the writer is committed or aborted.
        """
        self._check_open()
        image_id = _check_image_id(image_id)
        if image_id in self._ids:
            raise ValueError(f"score map of image {image_id!r} written twice")
        array = _as_array(f"scoremap of image {image_id!r}", scoremap)
        path = self.staging / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, lambda handle: np.save(handle, array, allow_pickle=False))
        self._ids.add(image_id)

    def write_batch(self, image_ids: Iterable[str], scoremaps: Tensor | np.ndarray) -> None:
        """Write a batch: ``scoremaps`` ``(B, H, W)`` (or ``(B, 1, H, W)``), one map per id, in order.

        Raises:
            ValueError: the counts differ.
        """
        ids = list(image_ids)
        if len(ids) != len(scoremaps):
            raise ValueError(f"{len(ids)} image ids for {len(scoremaps)} score maps: expected one map per id")
        maps = scoremaps.detach().to("cpu") if isinstance(scoremaps, Tensor) else scoremaps
        for image_id, scoremap in zip(ids, maps):
            self.write(image_id, scoremap)

    def commit(self) -> Path:
        """Write the manifest and swap the staging folder in as ``root``; return ``root``.

        Raises:
            FileExistsError: ``root`` meanwhile got files that are not score maps (nothing is replaced; the
                staging folder is removed).
        """
        self._check_open()
        manifest = {
            "format": _FORMAT,
            "version": _VERSION,
            "count": len(self._ids),
            "image_ids": self.image_ids,
        }
        data = json.dumps(manifest, indent=1).encode("utf-8")
        _write_atomic(self.staging / MANIFEST_NAME, lambda handle: handle.write(data))
        old: Path | None = None
        if self.root.exists():
            foreign = _foreign_file(self.root) if self.root.is_dir() else self.root
            if foreign is not None:
                self.abort()
                raise FileExistsError(f"score-map root {self.root} holds {foreign}: refusing to replace it")
            old = self.root.with_name(f"{self.root.name}.old-{secrets.token_hex(6)}")
            os.replace(self.root, old)
        os.replace(self.staging, self.root)
        self._open = False
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.root

    def abort(self) -> None:
        """Remove the staging folder; ``root`` stays as it was."""
        self._open = False
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> ScoremapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._open:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_scoremaps(root: str | os.PathLike[str], scoremaps: Mapping[str, Tensor | np.ndarray]) -> Path:
    """Write ``{image_id: (H, W) map}`` into ``root`` as a unit (:class:`ScoremapWriter`); return ``root``.

    Example:
        >>> import tempfile, pathlib, torch
        >>> root = write_scoremaps(pathlib.Path(tempfile.mkdtemp()) / "maps", {"a.png": torch.zeros(4, 4)})
        >>> sorted(p.name for p in root.iterdir())
        ['a.png.npy', 'lowcam_scoremaps.json']
    """
    with ScoremapWriter(root) as writer:
        for image_id, scoremap in scoremaps.items():
            writer.write(image_id, scoremap)
    return writer.root
