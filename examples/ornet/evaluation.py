"""Evaluation of every available map with both protocols, ``metrics.json`` and score maps on disk.

Protocol ``"ornet"``: GT-known / Top-1 / Top-5 Loc on the raw maps (resize + centre crop). Protocol
``"wsoleval"``: MaxBoxAcc and MaxBoxAccV2 on :func:`lowcam.metrics.prepare_scoremap` maps (images
squashed to the crop size, boxes scaled to ``data.score_size``). Each process evaluates its shard (which
may be empty); the counts are summed over processes, every process computes and then takes rank 0's
results, and rank 0 alone formats and writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch
from torch import nn

import lowcam
from lowcam import metrics
from ornet import recipe, report
from ornet.distributed import all_reduce_sum, barrier, broadcast_object
from ornet.files import atomic_write, atomic_write_text
from ornet.models import CamNet, FineNet
from ornet.runtime import Context, autocast, batches, eval_loader, to_device
from ornet.stages import build_cam, cam_stages, load_fine_parts, trained_cam_output_stride
from ornet.training import checkpoint_path, load_model

#: ``(images, labels) -> (maps (B, 1, h, w) in [0, 1] for the "ornet" protocol, raw maps for
#: prepare_scoremap, logits (B, C) that give the predicted class)``
MapSource = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def map_sources(ctx: Context, strides: dict[str, int] | None = None) -> dict[str, MapSource]:
    """The maps to evaluate: stage 1, stage 2 (each with the evaluator's classes) and, for each CAM
    stage (``cam``, ``cam_s<stride>``) whose checkpoint exists, that CAM baseline (its own classes; the
    CAM of the ground-truth class, min–max normalised, at its own resolution: every map is evaluated at
    the resolution its network produces). ``strides``, when given, receives each CAM stage's output
    stride (the one its checkpoint was trained at)."""
    device = ctx.info.device
    if strides is None:
        strides = {}
    sources: dict[str, MapSource] = {}
    for stage in ("coarse", "fine"):
        if not checkpoint_path(ctx, stage).is_file():
            continue
        net, evaluator = load_fine_parts(ctx, stage)
        net.to(device).eval()
        evaluator.to(device).eval()

        def source(
            images: torch.Tensor, labels: torch.Tensor, net: FineNet = net, evaluator: nn.Module = evaluator
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            maps, logits = recipe.ornet_maps(net, evaluator, images)
            return maps, maps, logits

        sources[stage] = source
    for stage in cam_stages(ctx.cfg):
        if not checkpoint_path(ctx, stage).is_file():
            continue
        stride = trained_cam_output_stride(ctx, stage)
        cam_net = load_model(ctx, stage, build_cam(ctx, stage, output_stride=stride)).to(device).eval()

        def cam_source(
            images: torch.Tensor, labels: torch.Tensor, cam_net: CamNet = cam_net
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            logits, cams = cam_net.forward_maps(images)
            raw = lowcam.select_class_map(cams.float(), labels)
            return lowcam.normalize_map(raw), raw, logits.float()

        sources[stage] = cam_source
        strides[stage] = stride
    return sources


def box_accuracy(protocol: str, image_size: int) -> metrics.LocalizationAccuracy | metrics.MaxBoxAcc:
    """The box metric of ``protocol`` (``lowcam.metrics.BoxAccuracy`` picks it) on images of ``image_size`` pixels."""
    if protocol == "ornet":
        return metrics.BoxAccuracy("ornet", image_size=image_size)
    return metrics.BoxAccuracy(protocol)  # type: ignore[arg-type]


def scoremap_file(root: str | Path, image_id: str) -> Path:
    """``<root>/<image_id>.npy``, the file wsolevaluation reads (``image_id`` may hold ``/``).

    Raises:
        ValueError: an ``image_id`` that is absolute or climbs out of ``root`` with ``..``.
    """
    relative = PurePosixPath(image_id)
    if not image_id or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"image id {image_id!r} would leave eval.scoremap_root")
    return Path(root).joinpath(*relative.parts[:-1], relative.parts[-1] + ".npy")


def write_scoremaps(root: str | Path, image_ids: list[str], scoremaps: torch.Tensor) -> None:
    """Write each ``(H, W)`` map of ``scoremaps`` (values in [0, 1]) as float32 ``.npy``, atomically."""
    for image_id, scoremap in zip(image_ids, scoremaps):
        array = scoremap.detach().to("cpu", torch.float32).numpy()

        def save(handle: IO[bytes], array: np.ndarray = array) -> None:
            np.save(handle, array)

        atomic_write(scoremap_file(root, image_id), save)


@torch.no_grad()
def evaluate(ctx: Context) -> dict[str, Any]:
    """Evaluate every available map with both protocols; rank 0 writes ``metrics.json`` and the PNG
    grids; with ``eval.scoremap_root`` every process writes its images' score maps.

    Returns:
        rank 0's results on every process.
    """
    d, e = ctx.cfg.data, ctx.cfg.eval
    strides: dict[str, int] = {}
    sources = map_sources(ctx, strides)
    if not sources:
        raise RuntimeError(f"nothing to evaluate in {ctx.out}: train the coarse or fine stage first")
    if e.scoremap_root is not None and e.scoremap_source not in sources:
        raise RuntimeError(
            f"eval.scoremap_source is {e.scoremap_source!r} but {ctx.out} has no such map "
            f"(available: {', '.join(sources)})"
        )
    ornet_acc = {name: box_accuracy("ornet", d.crop) for name in sources}
    v1_acc = {name: box_accuracy("maxboxacc", d.score_size) for name in sources}
    v2_acc = {name: box_accuracy("maxboxacc_v2", d.score_size) for name in sources}
    correct = torch.zeros(len(sources) + 1, dtype=torch.int64, device=ctx.info.device)  # no sync per batch
    # per map: (h, w, 1) once this process has seen a batch; summed over processes, divided by the count
    sizes = torch.zeros(len(sources), 3, dtype=torch.float64)
    keep = e.pictures if ctx.info.is_main else 0
    kept: dict[str, list[torch.Tensor]] = {name: [] for name in sources}
    kept_images: list[torch.Tensor] = []
    kept_boxes: list[torch.Tensor] = []
    for images, labels, boxes, _ in batches(eval_loader(ctx, "ornet"), ctx, "eval (ornet)"):
        x, y = to_device(ctx, images), labels.to(ctx.info.device)
        room = max(0, keep - len(kept_boxes))
        kept_images.extend(images[:room])
        kept_boxes.extend(boxes[:room])
        for k, (name, source) in enumerate(sources.items()):
            with autocast(ctx):
                maps, _, logits = source(x, y)
            maps, logits = maps.float(), logits.float()
            sizes[k] = torch.tensor([maps.shape[-2], maps.shape[-1], 1.0], dtype=torch.float64)
            ornet_acc[name].update(maps, boxes, logits=logits, targets=y)  # boxes checked on the CPU
            correct[k] += (logits.argmax(1) == y).sum()
            kept[name].extend(maps[:room].cpu())
        correct[-1] += y.numel()
    for images, labels, boxes, indices in batches(eval_loader(ctx, "wsoleval"), ctx, "eval (wsoleval)"):
        x, y = to_device(ctx, images), labels.to(ctx.info.device)
        for name, source in sources.items():
            with autocast(ctx):
                _, raw, _ = source(x, y)
            scores = metrics.prepare_scoremap(raw.float(), size=d.score_size)
            v1_acc[name].update(scores, boxes)
            v2_acc[name].update(scores, boxes)
            if e.scoremap_root is not None and name == e.scoremap_source:
                ids = [ctx.test.samples[int(i)].image_id for i in indices]
                write_scoremaps(e.scoremap_root, ids, scores)
    correct = all_reduce_sum(correct.to("cpu", torch.float64), ctx.info)
    sizes = all_reduce_sum(sizes, ctx.info)
    # every process computes, in the same order, even with an empty shard (compute() sums the counts over
    # the processes: a collective); then all take rank 0's numbers
    results: dict[str, Any] = {}
    for k, name in enumerate(sources):
        computed = {}
        for key, acc in (
            ("ornet", ornet_acc[name]),
            ("maxboxacc", v1_acc[name]),
            ("maxboxacc_v2", v2_acc[name]),
        ):
            computed[key] = acc.compute().to_dict()
        top1 = 100.0 * correct[k].item() / max(correct[-1].item(), 1.0)
        seen = sizes[k, 2].item()
        map_size = [round(sizes[k, 0].item() / seen), round(sizes[k, 1].item() / seen)] if seen else None
        results[name] = {
            "classification_top1": top1,
            **computed,
            # the "wsoleval" family's metrics, grouped (the same values as the top-level keys above)
            "wsoleval": {"maxboxacc": computed["maxboxacc"], "maxboxacc_v2": computed["maxboxacc_v2"]},
            "map_size": map_size,
            **({"output_stride": strides[name]} if name in strides else {}),
        }
        results[name]["label"] = report.label(name, results[name])
    results = broadcast_object(results, ctx.info)
    if ctx.info.is_main:
        atomic_write_text(ctx.out / "metrics.json", json.dumps(results, indent=2) + "\n")
        if keep > 0 and kept_images:
            report.draw(ctx, results, kept, torch.stack(kept_images), kept_boxes)
        ctx.log.write(
            "eval",
            None,
            **{f"{n}/{k}": v for n, r in results.items() for k, v in report.headline(r).items()},
        )
    barrier(ctx.info)
    return results
