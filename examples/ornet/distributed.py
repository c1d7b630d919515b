"""Helpers for ``torchrun``: process group set-up, the evaluation shard, reductions.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything degrades to one process.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world_size``, its ``local_rank`` and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def parse_device(device: str) -> tuple[str, int | None]:
    """Check ``runtime.device``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` → ``(kind, index)``.

    Raises:
        ValueError: any other value (e.g. ``"gpu"``), naming ``runtime.device``.
    """
    kind, colon, index = device.partition(":")
    if kind in ("auto", "cpu", "cuda") and not colon:
        return kind, None
    if kind == "cuda" and index.isdigit():
        return kind, int(index)
    raise ValueError(f"runtime.device must be auto, cpu, cuda or cuda:N, got {device!r}")


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by ``torchrun`` and pick this process's device.

    ``device``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (one
    process; under ``torchrun`` each process takes ``cuda:LOCAL_RANK``). The backend is NCCL on CUDA
    and gloo on CPU.

    Raises:
        ValueError: an unknown device, CUDA asked for but not available, or ``cuda:N`` under torchrun.
    """
    kind, index = parse_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if kind == "auto" else kind == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError(f"runtime.device is {device!r} but CUDA is not available here; use auto or cpu")
    if index is not None and world_size > 1:
        raise ValueError(
            f"runtime.device {device!r} names one GPU; under torchrun use cuda (one per process)"
        )
    if use_cuda:
        chosen = torch.device("cuda", local_rank if index is None else index)
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(f"runtime.device {device!r}: only {torch.cuda.device_count()} GPU(s) here")
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, chosen)


def teardown() -> None:
    """Destroy the process group if one was created."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: Sequence[int], info: DistInfo) -> list[int]:
    """This rank's share of ``indices`` for evaluation: every ``world_size``-th item, no padding, so
    that counts summed over ranks equal a single process's counts."""
    return list(indices)[info.rank :: info.world_size]


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``values`` over processes (a no-op in one process)."""
    if info.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_object(value: T, info: DistInfo) -> T:
    """Rank 0's ``value`` on every process (``value`` itself in one process)."""
    if not info.distributed:
        return value
    box: list[Any] = [value if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return typing.cast(T, box[0])


def gather_to_main(value: T, info: DistInfo) -> list[T] | None:
    """Every process's ``value``, in rank order, on rank 0 (``[value]`` in one process); None elsewhere.

    Only rank 0 receives, so its memory holds ``world_size`` values at a time (a collective: every
    process calls it the same number of times)."""
    if not info.distributed:
        return [value]
    received: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(value, received, dst=0)
    return typing.cast("list[T] | None", received)


def barrier(info: DistInfo) -> None:
    """Wait for every process."""
    if info.distributed:
        dist.barrier()
