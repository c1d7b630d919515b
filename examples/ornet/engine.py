"""The stages of ORNet: evaluator (0), coarse (1), fine (2), the CAM baseline, and the evaluation.

Every training stage runs through :func:`train_epochs`, which owns the loop, bf16 autocast, progress
bars, the JSONL log, per-epoch atomic checkpoints and ``--resume``. A stage's checkpoint is
``<output_dir>/<stage>.pt``; the next stage reads it.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

import lowcam
from lowcam import metrics
from ornet import checkpoint, pictures
from ornet.config import Config, to_dict
from ornet.data import (
    DataSplit,
    WSOLDataset,
    collate,
    imagenet_classes,
    read_cub,
    read_imagenet_train,
    read_imagenet_val,
    read_wsol_metadata,
)
from ornet.distributed import DistInfo, all_reduce_sum, barrier, shard
from ornet.logs import RunLog
from ornet.models import CamNet, CoarseNet, FineNet, build_classifier
from ornet.transforms import ornet_test_transform, train_transform, wsol_test_transform

ModuleT = TypeVar("ModuleT", bound=nn.Module)
Batch = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]
STAGES = ("evaluator", "coarse", "fine", "cam", "eval")


class StageStopped(RuntimeError):
    """Raised when ``runtime.stop_after_epoch`` ends a stage early (a simulated kill)."""


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


# ------------------------------------------------------------------------------------------------ set-up


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (each rank differently, so augmentations differ across ranks)."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def load_data(cfg: Config) -> tuple[DataSplit, DataSplit]:
    """Read and check the training and evaluation splits (errors name the file and the line)."""
    d = cfg.data
    verify = d.verify_images
    if verify not in ("none", "header", "full"):
        raise ValueError(f"data.verify_images must be none, header or full, got {verify!r}")
    if d.format == "cub":
        if d.eval_split not in ("train", "test"):
            raise ValueError(f"data.eval_split must be 'train' or 'test' for CUB, got {d.eval_split!r}")
        train = read_cub(d.root, "train", verify)  # type: ignore[arg-type]
        test = read_cub(d.root, d.eval_split, verify)  # type: ignore[arg-type]
    elif d.format == "imagenet":
        classes = imagenet_classes(d.train_dir)
        train = read_imagenet_train(d.train_dir, verify)  # type: ignore[arg-type]
        test = read_imagenet_val(d.val_dir, d.annotations_dir, classes, verify)  # type: ignore[arg-type]
    elif d.format == "wsol":
        meta = Path(d.root) / d.metadata_dir
        train = read_wsol_metadata(meta / "train", d.root, require_boxes=False, verify=verify)  # type: ignore[arg-type]
        test = read_wsol_metadata(
            meta / d.eval_split,
            d.root,
            require_boxes=True,
            classes=train.classes,
            verify=verify,  # type: ignore[arg-type]
        )
    else:
        raise ValueError(f"data.format must be cub, imagenet or wsol, got {d.format!r}")
    if d.limit > 0:
        train = DataSplit(train.samples[: d.limit], train.classes)
        test = DataSplit(test.samples[: d.limit], test.classes)
    return train, test


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


def train_loader(ctx: Context, batch_size: int, epoch: int) -> DataLoader[Any]:
    """The training loader of ``epoch``: a distributed sampler (one replica without torchrun) whose
    shuffle depends only on the seed and the epoch, and a loader generator seeded the same way."""
    d = ctx.cfg.data
    dataset = WSOLDataset(ctx.train.samples, train_transform(d.resize, d.crop, d.flip, d.mean, d.std))
    sampler: DistributedSampler[Any] = DistributedSampler(
        dataset, num_replicas=ctx.info.world_size, rank=ctx.info.rank, shuffle=True, seed=ctx.cfg.seed
    )
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(ctx.cfg.seed * 1000 + epoch * 16 + ctx.info.rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=d.num_workers,
        collate_fn=collate,
        generator=generator,
        drop_last=len(dataset) // ctx.info.world_size > batch_size,
        persistent_workers=False,
        pin_memory=ctx.info.device.type == "cuda",
    )


def eval_loader(ctx: Context, protocol: str) -> DataLoader[Any]:
    """This rank's shard of the evaluation split, prepared for ``protocol`` (``"ornet"`` or ``"wsol"``)."""
    d = ctx.cfg.data
    if protocol == "ornet":
        dataset = WSOLDataset(ctx.test.samples, ornet_test_transform(d.resize, d.crop, d.mean, d.std))
    else:
        dataset = WSOLDataset(ctx.test.samples, wsol_test_transform(d.crop, d.mean, d.std), d.score_size)
    subset = Subset(dataset, shard(range(len(dataset)), ctx.info))
    return DataLoader(
        subset,
        batch_size=ctx.cfg.eval.batch_size,
        shuffle=False,
        num_workers=d.num_workers,
        collate_fn=collate,
    )


def cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine decay to zero over ``total_steps`` iterations (stepped per iteration, as the reference)."""
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )


def steps_per_epoch(ctx: Context, batch_size: int) -> int:
    """Number of iterations of one epoch (matches :func:`train_loader`)."""
    return len(train_loader(ctx, batch_size, 0))


# ----------------------------------------------------------------------------------------- the loop


def _gather_rng(ctx: Context) -> list[dict[str, Any]]:
    states = checkpoint.rng_states()
    if not ctx.info.distributed:
        return [states]
    gathered: list[Any] = [None] * ctx.info.world_size
    dist.all_gather_object(gathered, states)
    return gathered


def _mean_over_ranks(ctx: Context, sums: dict[str, float], count: int) -> dict[str, float]:
    keys = sorted(sums)
    packed = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64)
    packed = all_reduce_sum(packed, ctx.info)
    total = max(packed[-1].item(), 1.0)
    return {k: packed[i].item() / total for i, k in enumerate(keys)}


def stage_done(ctx: Context, stage: str) -> bool:
    """Whether ``<stage>.pt`` exists and is complete (then ``--resume`` skips the stage)."""
    path = ctx.out / f"{stage}.pt"
    return path.is_file() and bool(checkpoint.load(path).get("complete", False))


def train_epochs(
    ctx: Context,
    stage: str,
    model: nn.Module,
    runner: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int,
    step: Callable[[Batch], dict[str, torch.Tensor]],
    set_modes: Callable[[], None] = lambda: None,
) -> None:
    """Train ``model`` (through ``runner``, its DDP/compiled form) for ``epochs`` epochs.

    ``step(batch)`` returns a dict of losses whose ``"loss"`` entry is minimised. After each epoch the
    main process writes ``<stage>.pt`` atomically with the model, optimizer, scheduler, epoch, every
    rank's RNG states and the config. With ``ctx.resume`` an incomplete checkpoint is continued from its
    epoch with its RNG states, giving the result of an unbroken run.
    """
    path = ctx.out / f"{stage}.pt"
    scheduler = cosine(optimizer, epochs * steps_per_epoch(ctx, batch_size))
    start = 0
    if ctx.resume and path.is_file():
        state = checkpoint.load(path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["epoch"])
        rngs = state["rng"]
        if len(rngs) == ctx.info.world_size:
            checkpoint.set_rng_states(rngs[ctx.info.rank])
        else:
            ctx.print(
                f"[{stage}] world size changed ({len(rngs)} → {ctx.info.world_size}); RNG states reseeded"
            )
            seed_everything(ctx.cfg.seed + start, ctx.info.rank)
        ctx.print(f"[{stage}] resuming after epoch {start} of {epochs}")
    if epochs == 0 or start >= epochs:
        if ctx.info.is_main:
            _save(ctx, path, model, optimizer, scheduler, start, epochs, complete=True)
        barrier(ctx.info)
        return
    for epoch in range(start, epochs):
        loader = train_loader(ctx, batch_size, epoch)
        runner.train()
        set_modes()
        sums: dict[str, float] = {}
        count = 0
        began = time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"{stage} {epoch + 1}/{epochs}",
            leave=False,
            disable=not (ctx.info.is_main and ctx.cfg.runtime.progress),
            dynamic_ncols=True,
        )
        for batch in bar:
            with autocast(ctx):
                losses = step(batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            size = batch[0].shape[0]
            count += size
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * size
            bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
        means = _mean_over_ranks(ctx, sums, count)
        seconds = time.perf_counter() - began
        ctx.log.write(
            f"{stage}/epoch", epoch + 1, lr=scheduler.get_last_lr()[0], seconds=round(seconds, 2), **means
        )
        ctx.print(
            f"[{stage}] epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4f}" for k, v in means.items())
        )
        rngs = _gather_rng(ctx)
        if ctx.info.is_main:
            _save(
                ctx,
                path,
                model,
                optimizer,
                scheduler,
                epoch + 1,
                epochs,
                complete=epoch + 1 == epochs,
                rngs=rngs,
            )
        barrier(ctx.info)
        stop = ctx.cfg.runtime.stop_after_epoch
        if stop and epoch + 1 == stop and epoch + 1 < epochs:
            raise StageStopped(
                f"[{stage}] stopped after epoch {stop} (runtime.stop_after_epoch); continue with --resume"
            )


def _save(
    ctx: Context,
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    epochs: int,
    *,
    complete: bool,
    rngs: list[dict[str, Any]] | None = None,
) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "epochs": epochs,
        "complete": complete,
        "rng": rngs if rngs is not None else [checkpoint.rng_states()],
        "config": to_dict(ctx.cfg),
        "classes": list(ctx.train.classes),
    }
    checkpoint.atomic_save(payload, path)


def _load_model(ctx: Context, stage: str, model: ModuleT) -> ModuleT:
    state = checkpoint.load(ctx.out / f"{stage}.pt")
    if not state.get("complete", False):
        raise RuntimeError(
            f"{ctx.out / f'{stage}.pt'} is incomplete (epoch {state['epoch']}); resume stage {stage!r}"
        )
    model.load_state_dict(state["model"])
    return model


# ---------------------------------------------------------------------------------------------- stages


def _sgd(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def build_evaluator(ctx: Context, weights: str | None = None) -> nn.Module:
    """The evaluator classifier (``model.evaluator``) for this data set's classes."""
    return build_classifier(ctx.cfg.model.evaluator, ctx.num_classes, weights)


def stage_evaluator(ctx: Context) -> None:
    """Stage 0: fine-tune the evaluator classifier with SGD and cross-entropy."""
    s = ctx.cfg.evaluator
    model = build_evaluator(ctx, ctx.cfg.model.evaluator_weights)
    runner = prepare(ctx, model)
    optimizer = _sgd(model.parameters(), s.lr, s.momentum, s.weight_decay)

    def step(batch: Batch) -> dict[str, torch.Tensor]:
        images, labels = to_device(ctx, batch[0]), batch[1].to(ctx.info.device)
        logits = runner(images)
        return {
            "loss": F.cross_entropy(logits.float(), labels),
            "acc": (logits.argmax(1) == labels).float().mean(),
        }

    train_epochs(ctx, "evaluator", model, runner, optimizer, s.epochs, s.batch_size, step)


def stage_coarse(ctx: Context) -> None:
    """Stage 1: backbone split after its stem + generator, CE(generator logits) + CE(main logits)."""
    s, m = ctx.cfg.coarse, ctx.cfg.model
    model = CoarseNet(m.backbone, ctx.num_classes, m.generator_width, m.backbone_weights)
    runner = prepare(ctx, model)
    optimizer = _sgd(model.parameters(), s.lr, s.momentum, s.weight_decay)

    def step(batch: Batch) -> dict[str, torch.Tensor]:
        images, labels = to_device(ctx, batch[0]), batch[1].to(ctx.info.device)
        out = runner(images)
        ce_generator = F.cross_entropy(out.generator.logits.float(), labels)
        ce_main = F.cross_entropy(out.logits.float(), labels)
        return {"loss": ce_generator + ce_main, "ce_generator": ce_generator, "ce_main": ce_main}

    train_epochs(ctx, "coarse", model, runner, optimizer, s.epochs, s.batch_size, step)


def load_fine_parts(ctx: Context, stage: str) -> tuple[FineNet, lowcam.Evaluator]:
    """The stem + generator of ``stage`` (``"coarse"`` or ``"fine"``) and the trained evaluator."""
    m, q = ctx.cfg.model, ctx.cfg.quirks
    coarse = CoarseNet(m.backbone, ctx.num_classes, m.generator_width)
    if stage == "coarse":
        fine = FineNet.from_coarse(_load_model(ctx, "coarse", coarse))
    else:
        fine = _load_model(ctx, stage, FineNet.from_coarse(coarse))
    classifier = _load_model(ctx, "evaluator", build_evaluator(ctx))
    evaluator = lowcam.Evaluator(classifier, upsample=q.upsample, follow_parent_mode=q.frozen_train_mode)  # type: ignore[arg-type]
    return fine, evaluator


def stage_fine(ctx: Context) -> None:
    """Stage 2: refine the generator's last blocks through the frozen evaluator (ORNet's main step)."""
    s, q = ctx.cfg.fine, ctx.cfg.quirks
    model, evaluator = load_fine_parts(ctx, "coarse")
    trainable = model.freeze()
    runner = prepare(ctx, model)
    evaluator.to(ctx.info.device)
    if ctx.cfg.runtime.channels_last:
        evaluator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    erasing = lowcam.AttentiveErasing(
        p=s.erasing_p, max_factor=s.erasing_max_factor, min_size=s.erasing_min_size
    )
    area = lowcam.AreaLoss(topk=s.area_topk, skip=s.area_skip)
    entropy = lowcam.WeightedEntropyLoss(mu=s.entropy_mu, sigma=s.entropy_sigma)
    optimizer = torch.optim.Adam(trainable, lr=s.lr, weight_decay=s.weight_decay)

    def set_modes() -> None:
        evaluator.train()
        erasing.train()
        if not q.frozen_train_mode:
            for module in model.frozen_modules():
                module.eval()

    def step(batch: Batch) -> dict[str, torch.Tensor]:
        images, labels = to_device(ctx, batch[0]), batch[1].to(ctx.info.device)
        out = runner(images)
        activation = out.activation.float()
        erased, _ = erasing(activation)
        logits = evaluator(images, erased).float()
        ce = F.cross_entropy(logits, labels)
        area_term = area(activation, out.class_maps.float(), logits)
        entropy_term = entropy(activation)
        loss = ce + s.area_weight * area_term + s.entropy_weight * entropy_term
        return {"loss": loss, "ce": ce, "area": area_term, "entropy": entropy_term}

    train_epochs(ctx, "fine", model, runner, optimizer, s.epochs, s.batch_size, step, set_modes)


def stage_cam(ctx: Context) -> None:
    """The CAM baseline: the backbone trained as a plain classifier on the same data."""
    s, m = ctx.cfg.cam, ctx.cfg.model
    model = CamNet(m.backbone, ctx.num_classes, m.backbone_weights)
    runner = prepare(ctx, model)
    optimizer = _sgd(model.parameters(), s.lr, s.momentum, s.weight_decay)

    def step(batch: Batch) -> dict[str, torch.Tensor]:
        images, labels = to_device(ctx, batch[0]), batch[1].to(ctx.info.device)
        logits, _ = runner(images)
        return {
            "loss": F.cross_entropy(logits.float(), labels),
            "acc": (logits.argmax(1) == labels).float().mean(),
        }

    train_epochs(ctx, "cam", model, runner, optimizer, s.epochs, s.batch_size, step)


# -------------------------------------------------------------------------------------------- evaluation

#: ``(images, labels) -> (maps (B, 1, h, w) in [0, 1] for the "ornet" protocol, raw maps for
#: prepare_scoremap, logits (B, C) that give the predicted class)``
MapSource = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(2, 3), keepdim=True)
    high = maps.amax(dim=(2, 3), keepdim=True)
    return torch.where(high > low, (maps - low) / (high - low).clamp_min(1e-12), torch.zeros_like(maps))


def map_sources(ctx: Context) -> dict[str, MapSource]:
    """The maps to evaluate: stage 1, stage 2 (each with the evaluator's classes) and, when its
    checkpoint exists, the CAM baseline (its own classes; CAM of the ground-truth class, min–max
    normalised, then resized bilinearly to the stage maps' resolution)."""
    device = ctx.info.device
    sources: dict[str, MapSource] = {}
    for stage in ("coarse", "fine"):
        if not (ctx.out / f"{stage}.pt").is_file():
            continue
        net, evaluator = load_fine_parts(ctx, stage)
        net.to(device).eval()
        evaluator.to(device).eval()

        def source(
            images: torch.Tensor, labels: torch.Tensor, net: FineNet = net, evaluator: nn.Module = evaluator
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            maps = net(images).activation.float()
            return maps, maps, evaluator(images).float()

        sources[stage] = source
    if (ctx.out / "cam.pt").is_file():
        m = ctx.cfg.model
        cam_net = _load_model(ctx, "cam", CamNet(m.backbone, ctx.num_classes)).to(device).eval()
        size = math.ceil(ctx.cfg.data.crop / 4)

        def cam_source(
            images: torch.Tensor, labels: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            logits, cams = cam_net(images)
            raw = cams.float().gather(1, labels.view(-1, 1, 1, 1).expand(-1, 1, *cams.shape[2:]))
            # normalise, then resize: a constant CAM stays exactly zero whatever the batch it came in
            resized = F.interpolate(_minmax(raw), size=(size, size), mode="bilinear", align_corners=False)
            return resized.clamp(0, 1), raw, logits.float()

        sources["cam"] = cam_source
    return sources


def box_accuracy(protocol: metrics.Protocol, image_size: int) -> metrics.BoxAccuracy:
    """A :class:`lowcam.metrics.BoxAccuracy` for ``protocol`` on images of ``image_size`` pixels."""
    if protocol == "ornet":
        return metrics.BoxAccuracy("ornet", image_size=image_size)
    return metrics.BoxAccuracy(protocol)


def _batches(loader: DataLoader[Any], ctx: Context, desc: str) -> Iterator[Batch]:
    yield from tqdm(
        loader, desc=desc, leave=False, disable=not (ctx.info.is_main and ctx.cfg.runtime.progress)
    )


@torch.no_grad()
def evaluate(ctx: Context) -> dict[str, Any]:
    """Evaluate every available map with both protocols; write ``metrics.json`` and PNG grids.

    Protocol ``"ornet"``: GT-known / Top-1 / Top-5 Loc on the raw maps (resize + centre crop). Protocol
    ``"wsoleval"``: MaxBoxAcc and MaxBoxAccV2 on :func:`lowcam.metrics.prepare_scoremap` maps (images
    squashed to the crop size, boxes scaled to ``data.score_size``). Counts are summed over processes.
    """
    d = ctx.cfg.data
    sources = map_sources(ctx)
    if not sources:
        raise RuntimeError(f"nothing to evaluate in {ctx.out}: train the coarse or fine stage first")
    ornet_acc = {name: box_accuracy("ornet", d.crop) for name in sources}
    v1_acc = {name: box_accuracy("maxboxacc", d.score_size) for name in sources}
    v2_acc = {name: box_accuracy("maxboxacc_v2", d.score_size) for name in sources}
    correct = torch.zeros(len(sources) + 1, dtype=torch.float64)
    keep = ctx.cfg.eval.pictures
    kept: dict[str, list[Any]] = {name: [] for name in sources}
    kept_images: list[torch.Tensor] = []
    kept_boxes: list[torch.Tensor] = []
    for images, labels, boxes, _ in _batches(eval_loader(ctx, "ornet"), ctx, "eval (ornet)"):
        x, y = to_device(ctx, images), labels.to(ctx.info.device)
        device_boxes = [b.to(ctx.info.device) for b in boxes]
        room = max(0, keep - len(kept_boxes))
        kept_images.extend(images[:room])
        kept_boxes.extend(boxes[:room])
        for k, (name, source) in enumerate(sources.items()):
            with autocast(ctx):
                maps, _, logits = source(x, y)
            maps, logits = maps.float(), logits.float()
            ornet_acc[name].update(maps, device_boxes, logits=logits, targets=y)
            correct[k] += (logits.argmax(1) == y).sum().item()
            kept[name].extend(maps[:room].cpu())
        correct[-1] += y.numel()
    for images, labels, boxes, _ in _batches(eval_loader(ctx, "wsol"), ctx, "eval (wsoleval)"):
        x, y = to_device(ctx, images), labels.to(ctx.info.device)
        device_boxes = [b.to(ctx.info.device) for b in boxes]
        for name, source in sources.items():
            with autocast(ctx):
                _, raw, _ = source(x, y)
            scores = metrics.prepare_scoremap(raw.float(), size=d.score_size)
            v1_acc[name].update(scores, device_boxes)
            v2_acc[name].update(scores, device_boxes)
    correct = all_reduce_sum(correct, ctx.info)
    results: dict[str, Any] = {}
    for k, name in enumerate(sources):
        for acc in (ornet_acc[name], v1_acc[name], v2_acc[name]):
            if ctx.info.distributed:
                acc.sync()
        results[name] = {
            "classification_top1": 100.0 * correct[k].item() / max(correct[-1].item(), 1.0),
            "ornet": _jsonable(ornet_acc[name].compute()),
            "maxboxacc": _jsonable(v1_acc[name].compute()),
            "maxboxacc_v2": _jsonable(v2_acc[name].compute()),
        }
    if ctx.info.is_main:
        ctx.out.mkdir(parents=True, exist_ok=True)
        (ctx.out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        if keep > 0 and kept_images:
            _draw(ctx, results, kept, torch.stack(kept_images), kept_boxes)
        ctx.log.write(
            "eval", None, **{f"{n}/{k}": v for n, r in results.items() for k, v in _headline(r).items()}
        )
    return results


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _headline(result: dict[str, Any]) -> dict[str, float]:
    ornet = result["ornet"]
    return {
        "gt_known": float(ornet["gt_known"]),
        "top1_loc": float(ornet["top1_loc"]),
        "top5_loc": float(ornet["top5_loc"]),
        "maxboxacc": float(result["maxboxacc"]["value"]),
        "maxboxacc_v2": float(result["maxboxacc_v2"]["value"]),
        "cls_top1": float(result["classification_top1"]),
    }


def _draw(
    ctx: Context,
    results: dict[str, Any],
    kept: dict[str, list[Any]],
    images: torch.Tensor,
    boxes: list[torch.Tensor],
) -> None:
    d = ctx.cfg.data
    for name, maps_list in kept.items():
        maps = torch.stack(maps_list)
        threshold = float(results[name]["ornet"]["threshold"]["0.5"])
        scale = d.crop / maps.shape[-1]
        predicted = metrics.boxes_all_pixels(
            maps, torch.tensor([threshold], dtype=torch.float64), scale=scale
        )[0]
        title = f"{name}: GT-known {results[name]['ornet']['gt_known']:.1f}% at tau={threshold:.2f} (red: predicted, green: GT)"
        pictures.save_grid(
            ctx.out / f"maps_{name}.png",
            images,
            maps,
            predicted.float(),
            boxes,
            mean=d.mean,
            std=d.std,
            title=title,
        )


LABELS = {"coarse": "stage 1 map (coarse)", "fine": "stage 2 map (ORNet)", "cam": "CAM baseline"}


def format_table(results: dict[str, Any]) -> str:
    """The comparison table printed at the end of the evaluation."""
    header = ("map", "GT-known Loc", "Top-1 Loc", "Top-5 Loc", "MaxBoxAcc", "MaxBoxAccV2", "cls top-1")
    rows = []
    for name, result in results.items():
        h = _headline(result)
        values = (
            h["gt_known"],
            h["top1_loc"],
            h["top5_loc"],
            h["maxboxacc"],
            h["maxboxacc_v2"],
            h["cls_top1"],
        )
        rows.append((LABELS.get(name, name), *(f"{v:.2f}" for v in values)))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines.append("-+-".join("-" * w for w in widths))
    lines.extend(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)
    return "\n".join(lines)
