"""A JSONL log of losses and metrics, optional TensorBoard, and a console printer for rank 0."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ornet.files import atomic_write_text


class RunLog:
    """Append one JSON object per event to ``<output_dir>/log.jsonl``; mirror scalars to TensorBoard.

    Only the main process should hold an enabled log; the others pass ``enabled=False``.
    """

    def __init__(self, output_dir: str | Path, *, enabled: bool = True, tensorboard: bool = False) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / "log.jsonl"
        self.writer: Any = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as error:  # the tensorboard package is optional
                    raise RuntimeError(
                        "runtime.tensorboard is on but TensorBoard is not installed (pip install tensorboard)"
                    ) from error
                self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def write(self, event: str, step: int | None = None, **values: Any) -> None:
        """Log ``values`` under ``event`` (e.g. ``"coarse/epoch"``)."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), "event": event, "step": step, **values}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")
        if self.writer is not None and step is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{event}/{key}", value, step)

    def prune(self, event: str, *, after_step: int) -> None:
        """Drop the ``event`` records with a step above ``after_step`` (and a torn last line): a stage
        that resumes after epoch ``after_step`` or starts again logs each of its epochs once."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        changed = False
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                changed = True  # torn by a kill during the append
                continue
            step = record.get("step")
            if record.get("event") == event and isinstance(step, int) and step > after_step:
                changed = True
                continue
            kept.append(line)
        if changed:
            atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()
