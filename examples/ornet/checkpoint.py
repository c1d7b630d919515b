"""Atomic checkpoints that resume a run exactly: model, optimizer, scheduler, epoch, RNG states, config.

A stage's checkpoint is ``<output_dir>/<stage>.pt``, written after every epoch through
:func:`ornet.files.atomic_write` (a kill leaves the old or the new file, never half of one). It holds
only tensors and plain Python values and is read with ``torch.load(weights_only=True)``.

Payload keys: ``model`` (the last epoch's weights), ``optimizer`` (``None`` once the stage has finished:
only an unfinished stage needs it), ``scheduler``, ``epoch``, ``epochs``,
``complete``, ``rng`` (one entry per process), ``config`` (the whole configuration) and ``classes``;
optionally ``selected_model`` / ``selected_epoch`` / ``selected_score`` (the evaluator epoch chosen by
``evaluator.select``; the later stages load it instead of ``model``).
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ornet.files import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or not what the stage needs; ``str(error)`` names it."""


def rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) generators, as checkpointable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_states`."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def atomic_save(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` atomically (see :func:`ornet.files.atomic_write`).

    Raises:
        ornet.files.WriteError: naming ``path`` (e.g. a full disk); no partial file is left behind.
    """
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: an empty, truncated or corrupted file, or one that is not a checkpoint dict.
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"checkpoint not found: {target} (run the previous stage first)")
    size = target.stat().st_size
    if size == 0:
        raise CheckpointError(f"{target}: the checkpoint is empty (0 bytes); delete it and rerun its stage")
    try:
        state = torch.load(target, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as error:
        # PyTorch's own message suggests weights_only=False, which would run arbitrary code: not repeated.
        raise CheckpointError(
            f"{target}: not a readable checkpoint ({size} bytes; {type(error).__name__}): it is truncated, "
            "corrupted or holds objects other than tensors and plain values; delete it and rerun its stage"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{target}: expected a dict checkpoint, got {type(state).__name__}")
    return state
