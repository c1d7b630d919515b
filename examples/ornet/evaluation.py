"""Evaluation of every available map with both protocols, ``metrics.json`` and score maps on disk.

Protocol ``"ornet"``: GT-known / Top-1 / Top-5 Loc on the raw maps (resize + centre crop). Protocol
``"wsoleval"``: MaxBoxAcc and MaxBoxAccV2 on :func:`lowcam.metrics.prepare_scoremap` maps (images
squashed to the crop size, boxes scaled to ``data.score_size``). Each process evaluates its shard (which
may be empty); the counts are summed over processes, every process computes and then takes rank 0's
results, and rank 0 alone formats and writes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import lowcam
from lowcam import metrics
from ornet import recipe, report
from ornet.distributed import all_reduce_sum, barrier, broadcast_object, gather_to_main
from ornet.files import WriteError, atomic_write_text
from ornet.models import FineNet
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
    the resolution its network produces), and ``center_gaussian``, the data-free baseline
    (:func:`lowcam.metrics.center_gaussian` at the image's resolution, the same map for every image; its
    class is the evaluator's, so its Top-1 Loc is comparable to the ORNet maps', or the ground truth when
    no evaluator was trained). ``strides``, when given, receives each CAM stage's output stride (the one
    its checkpoint was trained at)."""
    device = ctx.info.device
    if strides is None:
        strides = {}
    sources: dict[str, MapSource] = {}
    classifier: nn.Module | None = None
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
        classifier = evaluator
    for stage in cam_stages(ctx.cfg):
        if not checkpoint_path(ctx, stage).is_file():
            continue
        stride = trained_cam_output_stride(ctx, stage)
        cam_net = load_model(ctx, stage, build_cam(ctx, stage, output_stride=stride)).to(device).eval()

        def cam_source(
            images: torch.Tensor, labels: torch.Tensor, cam_net: lowcam.CamNet = cam_net
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            logits, cams = cam_net.forward_maps(images)
            raw = lowcam.select_class_map(cams.float(), labels)
            return lowcam.normalize_map(raw), raw, logits.float()

        sources[stage] = cam_source
        strides[stage] = stride
    if sources:

        def gaussian_source(
            images: torch.Tensor, labels: torch.Tensor, classifier: nn.Module | None = classifier
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            b, _, h, w = images.shape
            maps = metrics.center_gaussian(b, h, w, device=images.device)[:, None]
            if classifier is None:
                logits = torch.nn.functional.one_hot(labels, ctx.num_classes).float()
            else:
                logits = classifier(images).float()
            return maps, maps, logits

        sources["center_gaussian"] = gaussian_source
    return sources


def _open_writer(root: str, ctx: Context) -> metrics.ScoremapWriter | contextlib.nullcontext[None]:
    """The writer of ``eval.scoremap_root`` on rank 0 (a context that gives ``None`` elsewhere), opened
    before anything is evaluated; leaving it commits the maps, an exception removes them. A root that is a
    file or holds other files is a :class:`~ornet.files.WriteError` naming it (exit status 2) on every
    process, decided together: the others would otherwise meet a dead peer in the next collective (a
    connection error with gloo, a wait until its timeout with NCCL)."""
    writer, failure = None, None
    if ctx.info.is_main:
        try:
            writer = metrics.ScoremapWriter(root)
        except OSError as error:
            failure = WriteError(f"could not write eval.scoremap_root: {error}")
            failure.__cause__ = error
    failed = all_reduce_sum(torch.tensor([0.0 if failure is None else 1.0], dtype=torch.float64), ctx.info)
    if failure is not None:
        raise failure
    if failed.item() > 0:
        raise WriteError("could not write eval.scoremap_root: rank 0 could not open it (see its message)")
    return contextlib.nullcontext() if writer is None else writer


def _scoremap_steps(batch_count: int, ctx: Context) -> int:
    """The number of evaluation batches of the largest shard (every process sends that many)."""
    counts = torch.zeros(ctx.info.world_size, dtype=torch.float64)
    counts[ctx.info.rank] = batch_count
    return int(all_reduce_sum(counts, ctx.info).max().item())


def _send_scoremaps(
    writer: metrics.ScoremapWriter | None, image_ids: list[str], scores: torch.Tensor, ctx: Context
) -> None:
    """Gather one batch of score maps of every process on rank 0, which writes them into ``writer``
    (a collective: every process calls it once per step, with an empty batch past the end of its shard).
    Rank 0 holds ``world_size`` batches at a time, never the split."""
    gathered = gather_to_main((image_ids, scores.detach().to("cpu", torch.float32)), ctx.info)
    if writer is None or gathered is None:
        return
    for ids, maps in gathered:
        if ids:
            writer.write_batch(ids, maps)


@torch.no_grad()
def evaluate(ctx: Context) -> dict[str, Any]:
    """Evaluate every available map with both protocols; rank 0 writes ``metrics.json``, the PNG
    grids and, with ``eval.scoremap_root``, the score maps of every process's images (gathered batch by
    batch) as one folder.

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
    ornet_acc = {name: metrics.BoxAccuracy("ornet", image_size=d.crop) for name in sources}
    v1_acc = {name: metrics.BoxAccuracy("maxboxacc") for name in sources}
    v2_acc = {name: metrics.BoxAccuracy("maxboxacc_v2") for name in sources}
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
    loader = eval_loader(ctx, "wsoleval")
    # score maps: rank 0 alone writes eval.scoremap_root, as a unit (lowcam.metrics.ScoremapWriter: a
    # staging folder, the manifest last, one swap); it is opened before any map, so that a root holding
    # other files stops the evaluation at once, and an exception leaves the previous folder as it was
    writing = e.scoremap_root is not None
    with _open_writer(e.scoremap_root, ctx) if writing else contextlib.nullcontext() as writer:
        steps = _scoremap_steps(len(loader), ctx) if writing else 0
        for images, labels, boxes, indices in batches(loader, ctx, "eval (wsoleval)"):
            x, y = to_device(ctx, images), labels.to(ctx.info.device)
            for name, source in sources.items():
                with autocast(ctx):
                    _, raw, _ = source(x, y)
                scores = metrics.prepare_scoremap(raw.float(), size=d.score_size)
                v1_acc[name].update(scores, boxes)
                v2_acc[name].update(scores, boxes)
                if writing and name == e.scoremap_source:
                    ids = [ctx.test.samples[int(i)].image_id for i in indices]
                    _send_scoremaps(writer, ids, scores, ctx)
                    steps -= 1
        for _ in range(steps):  # this shard is shorter than the largest one
            _send_scoremaps(writer, [], torch.empty(0, d.score_size, d.score_size), ctx)
    correct = all_reduce_sum(correct.to("cpu", torch.float64), ctx.info)
    sizes = all_reduce_sum(sizes, ctx.info)
    # every process computes, in the same order, even with an empty shard (compute() sums the counts over
    # the processes: a collective); then all take rank 0's numbers
    results: dict[str, Any] = {}
    for k, name in enumerate(sources):
        accs = {"ornet": ornet_acc[name], "maxboxacc": v1_acc[name], "maxboxacc_v2": v2_acc[name]}
        computed = {key: acc.compute().to_dict() for key, acc in accs.items()}  # in this order on every rank
        top1 = 100.0 * correct[k].item() / max(correct[-1].item(), 1.0)
        seen = sizes[k, 2].item()
        map_size = [round(sizes[k, 0].item() / seen), round(sizes[k, 1].item() / seen)] if seen else None
        results[name] = {
            "classification_top1": top1,
            **computed,
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
