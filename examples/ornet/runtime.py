"""Set-up shared by every stage: the run's context, seeds and determinism, the data, loaders, devices.

Nothing here is specific to ORNet; :mod:`ornet.recipe` holds the method and :mod:`ornet.stages` puts
the two together.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from lowcam.data import (
    DataSplit,
    Sample,
    SampleDataset,
    collate_samples,
    imagenet_classes,
    ornet_test_transform,
    read_cub,
    read_imagenet_train,
    read_imagenet_val,
    read_wsol_split,
    train_transform,
    wsol_test_transform,
)
from lowcam.metrics import DataError
from ornet.config import Config
from ornet.distributed import DistInfo, shard
from ornet.logs import RunLog

T = TypeVar("T")

#: ``(images, labels, boxes, indices)`` as :func:`lowcam.data.collate_samples` stacks them.
Batch = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]


@dataclass
class Context:
    """What every stage needs: the config, this process's place, the data and the log."""

    cfg: Config
    info: DistInfo
    train: DataSplit
    test: DataSplit
    log: RunLog
    resume: bool = False

    @property
    def out(self) -> Path:
        """The output folder."""
        return Path(self.cfg.output_dir)

    @property
    def num_classes(self) -> int:
        """Number of classes of the data set."""
        return len(self.train.classes)

    def print(self, *args: Any) -> None:
        """Print on the main process only."""
        if self.info.is_main:
            tqdm.write(" ".join(str(a) for a in args))


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (each rank differently, so augmentations differ across ranks)."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def set_determinism(deterministic: bool) -> None:
    """``runtime.deterministic``: cuDNN's deterministic algorithms and no autotuning (``true``), or
    autotuned, possibly non-deterministic algorithms (``false``). Other PyTorch operations are left alone
    (``torch.use_deterministic_algorithms`` is not switched on)."""
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def load_data(cfg: Config) -> tuple[DataSplit, DataSplit]:
    """Read and check the training and evaluation splits (errors name the file and the line).

    Raises:
        DataError: a bad data file, or a split with no image at all.
    """
    d = cfg.data
    verify = d.verify_images
    if d.format == "cub":
        train = read_cub(d.root, "train", verify)
        test = read_cub(d.root, d.eval_split, verify)  # type: ignore[arg-type]
        sources = (Path(d.root) / "train_test_split.txt",) * 2
    elif d.format == "imagenet":
        classes = imagenet_classes(d.train_dir)
        train = read_imagenet_train(d.train_dir, verify)
        test = read_imagenet_val(d.val_dir, d.annotations_dir, classes, verify)
        sources = (Path(d.train_dir), Path(d.val_dir))
    else:
        meta = Path(d.root) / d.metadata_dir
        train = read_wsol_split(meta / "train", d.root, require_boxes=False, verify=verify)
        test = read_wsol_split(
            meta / d.eval_split, d.root, require_boxes=True, classes=train.classes, verify=verify
        )
        sources = (meta / "train" / "image_ids.txt", meta / d.eval_split / "image_ids.txt")
    if d.limit > 0:
        train = DataSplit(train.samples[: d.limit], train.classes)
        test = DataSplit(test.samples[: d.limit], test.classes)
    for split, source, what in ((train, sources[0], "training"), (test, sources[1], "evaluation")):
        if not split.samples:
            raise DataError(source, None, f"the {what} split holds no image; nothing to train or evaluate")
    return train, test


def holdout_split(
    items: Sequence[T],
    count: Callable[[int], int],
    *,
    groups: Sequence[Hashable] | None = None,
    seed: int | None = None,
) -> tuple[list[T], list[T]]:
    """The one hold-out splitter: ``(kept, held_out)``, both in the order of ``items``.

    From each group of ``groups`` (one label per item; ``None``: all items form one group) of ``n``
    items, ``count(n)`` items are held out, clamped to ``[0, n]``: a random draw with ``seed``
    (:func:`torch.randperm`), or the group's last ones when ``seed`` is ``None``.

    Example: the evaluator's hold-out (``evaluator.select: holdout``) is
    ``holdout_split(samples, lambda n: min(n - 1, max(1, round(fraction * n))), seed=seed)``.
    """
    labels: Sequence[Hashable] = [0] * len(items) if groups is None else groups
    members: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    held: set[int] = set()
    for indices in members.values():
        n = min(len(indices), max(0, count(len(indices))))
        if seed is None:
            chosen = indices[len(indices) - n :]
        else:
            order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed)).tolist()
            chosen = [indices[k] for k in order[:n]]
        held.update(chosen)
    kept = [item for k, item in enumerate(items) if k not in held]
    return kept, [item for k, item in enumerate(items) if k in held]


def autocast(ctx: Context) -> AbstractContextManager[Any]:
    """bf16 autocast on the run's device when ``runtime.bf16`` is on."""
    if not ctx.cfg.runtime.bf16:
        return nullcontext()
    return torch.autocast(device_type=ctx.info.device.type, dtype=torch.bfloat16)


def to_device(ctx: Context, images: torch.Tensor) -> torch.Tensor:
    """Move a batch of images to the device (channels-last when asked)."""
    fmt = torch.channels_last if ctx.cfg.runtime.channels_last else torch.contiguous_format
    return images.to(ctx.info.device, non_blocking=True).contiguous(memory_format=fmt)


def prepare(ctx: Context, model: nn.Module) -> nn.Module:
    """Device, memory format, DistributedDataParallel and ``torch.compile`` as configured.

    The returned module runs the forward pass; save ``model`` itself (not the wrapper).
    """
    model.to(ctx.info.device)
    if ctx.cfg.runtime.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    runner: nn.Module = model
    if ctx.info.distributed and any(p.requires_grad for p in model.parameters()):
        ids = [ctx.info.device.index] if ctx.info.device.type == "cuda" else None
        runner = DistributedDataParallel(model, device_ids=ids)
    if ctx.cfg.runtime.compile:
        runner = torch.compile(runner)  # type: ignore[assignment]
    return runner


def train_loader(
    ctx: Context, samples: list[Sample], batch_size: int, epoch: int, seed: int
) -> DataLoader[Any]:
    """The training loader of ``epoch``: a distributed sampler (one replica without torchrun) whose
    shuffle depends only on the stage's ``seed`` and the epoch, and a loader generator seeded the same
    way. ``data.drop_last`` drops the last, incomplete batch (the reference keeps it)."""
    d = ctx.cfg.data
    dataset = SampleDataset(samples, train_transform(d.resize, d.crop, d.flip, d.mean, d.std))
    sampler: DistributedSampler[Any] = DistributedSampler(
        dataset, num_replicas=ctx.info.world_size, rank=ctx.info.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 1000 + epoch * 16 + ctx.info.rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=d.num_workers,
        collate_fn=collate_samples,
        generator=generator,
        drop_last=d.drop_last and len(sampler) > batch_size,
        persistent_workers=False,
        pin_memory=ctx.info.device.type == "cuda",
    )


def eval_loader(ctx: Context, protocol: str, samples: list[Sample] | None = None) -> DataLoader[Any]:
    """This rank's shard of ``samples`` (default: the evaluation split), prepared for ``protocol``
    (``"ornet"``: resize + centre crop; ``"wsoleval"``: squashed, boxes scaled to ``data.score_size``).
    A shard may be empty when there are fewer images than processes."""
    d = ctx.cfg.data
    chosen = ctx.test.samples if samples is None else samples
    if protocol == "ornet":
        dataset = SampleDataset(chosen, ornet_test_transform(d.resize, d.crop, d.mean, d.std))
    else:
        dataset = SampleDataset(chosen, wsol_test_transform(d.crop, d.mean, d.std), d.score_size)
    subset = Subset(dataset, shard(range(len(dataset)), ctx.info))
    return DataLoader(
        subset,
        batch_size=ctx.cfg.eval.batch_size,
        shuffle=False,
        num_workers=d.num_workers,
        collate_fn=collate_samples,
    )


def cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay to zero over ``total_steps`` iterations (stepped per iteration, as the reference)."""
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )


def batches(loader: DataLoader[Any], ctx: Context, desc: str) -> Any:
    """``loader`` with a progress bar on the main process (when ``runtime.progress``)."""
    return tqdm(loader, desc=desc, leave=False, disable=not (ctx.info.is_main and ctx.cfg.runtime.progress))
