"""Atomic output files: every file the pipeline writes appears whole or not at all.

A file is written to a temporary ``.<name>.<random>.tmp`` in the target's folder, flushed and fsync'ed,
renamed over the target with ``os.replace`` and the folder fsync'ed, so a kill or a full disk leaves the
old file (or none), never half of one. :func:`remove_temporaries` deletes the parts that a killed run left.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


class WriteError(OSError):
    """An output file could not be written; ``str(error)`` names the file. Nothing half-written remains."""


def _fsync_folder(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it over ``path`` atomically.

    Raises:
        WriteError: naming ``path`` when writing fails (a full disk, a serialisation error); the
            temporary file is removed and an existing ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, Exception):
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            raise WriteError(
                f"could not write {target} ({reason}); the previous file, if any, is kept"
            ) from error
        raise
    _fsync_folder(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode("utf-8")

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    return atomic_write(path, write)


def check_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it (a temporary one, removed).

    Raises:
        WriteError: naming ``folder`` when it is a file, lies under a file, or cannot be written.
    """
    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise WriteError(
            f"could not write {target} ({reason}): the output folder must be a writable folder"
        ) from error
    return target


def remove_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` parts a killed run left in ``folder``; returns what was removed."""
    base = Path(folder)
    if not base.is_dir():
        return []
    removed = []
    for part in sorted(base.glob(".*.tmp")):
        if part.is_file():
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed
