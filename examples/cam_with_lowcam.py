"""lowcam's losses inside a plain CAM classifier: the other way to use the library.

A ResNet classifier produces class activation maps (CAMs) from its last convolutional layer. Here its
maps go through a sigmoid, ``f = σ(CAM)``, and the map of the true class ``p = f[y]`` (the predicted
class at inference) gets ORNet's two map losses next to the cross-entropy:

    loss = CE(logits, y) + area_weight · AreaLoss(p, f, logits) + entropy_weight · WeightedEntropyLoss(p)

The area loss keeps ``p`` and the maps of low-ranked classes small; the weighted entropy loss pushes the
pixels of ``p`` away from 0.5. The script trains the same network with and without the two losses (same
seed, same data, same schedule) and compares their maps with both evaluation protocols.

Usage (on the synthetic data of ``examples/synthetic.py``)::

    python examples/synthetic.py --out data/synthetic
    python examples/cam_with_lowcam.py --data data/synthetic --epochs 6
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from ornet.data import WSOLDataset, collate, read_cub
from ornet.files import atomic_write_text
from ornet.models import CamNet
from ornet.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ornet_test_transform,
    train_transform,
    wsol_test_transform,
)
from torch.utils.data import DataLoader

import lowcam
from lowcam import metrics


def class_maps(cams: torch.Tensor) -> torch.Tensor:
    """``f = σ(CAM)``: the class maps the losses see, ``(B, C, h, w)`` in ``(0, 1)``."""
    return torch.sigmoid(cams)


def pick(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The map of one class per image: ``(B, C, h, w)``, ``(B,)`` → ``(B, 1, h, w)``."""
    index = classes.view(-1, 1, 1, 1).expand(-1, 1, *maps.shape[2:])
    return maps.gather(1, index)


def train(
    args: argparse.Namespace, loader_fn: Any, num_classes: int, *, with_lowcam: bool
) -> tuple[CamNet, list[dict[str, float]]]:
    """Train one CAM classifier; with ``with_lowcam`` add the area and weighted entropy losses."""
    torch.manual_seed(args.seed)
    model = CamNet(args.backbone, num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    steps = max(1, args.epochs * len(loader_fn(0)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    area = lowcam.AreaLoss(topk=args.area_topk, skip=args.area_skip)
    entropy = lowcam.WeightedEntropyLoss()
    history = []
    for epoch in range(args.epochs):
        model.train()
        totals = {"loss": 0.0, "ce": 0.0, "area": 0.0, "entropy": 0.0}
        count = 0
        for images, labels, _, _ in loader_fn(epoch):
            logits, cams = model(images)
            f = class_maps(cams)
            p = pick(f, labels)
            ce = F.cross_entropy(logits, labels)
            area_term = area(p, f, logits)
            entropy_term = entropy(p)
            loss = (
                ce + args.area_weight * area_term + args.entropy_weight * entropy_term if with_lowcam else ce
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            n = images.shape[0]
            count += n
            for key, value in (("loss", loss), ("ce", ce), ("area", area_term), ("entropy", entropy_term)):
                totals[key] += float(value.detach()) * n
        history.append({k: v / max(count, 1) for k, v in totals.items()})
        name = "CAM + lowcam losses" if with_lowcam else "plain CAM"
        print(
            f"[{name}] epoch {epoch + 1}/{args.epochs} "
            + " ".join(f"{k}={v:.4f}" for k, v in history[-1].items())
        )
    return model, history


@torch.no_grad()
def evaluate(
    model: CamNet, ornet_loader: DataLoader[Any], wsol_loader: DataLoader[Any], crop: int, score_size: int
) -> dict[str, Any]:
    """GT-known / Top-1 Loc (protocol "ornet") and MaxBoxAccV2 of the ground-truth class's CAM.

    For the "ornet" protocol the CAM is min–max normalised and resized bilinearly to ``crop / 4`` (the
    resolution of ORNet's maps); the "wsoleval" protocol prepares it with ``prepare_scoremap``.
    """
    model.eval()
    ornet = metrics.BoxAccuracy("ornet", image_size=crop)
    v2 = metrics.BoxAccuracy("maxboxacc_v2")
    size = math.ceil(crop / 4)
    for images, labels, boxes, _ in ornet_loader:
        logits, cams = model(images)
        maps = pick(cams, labels)
        low, high = maps.amin((2, 3), keepdim=True), maps.amax((2, 3), keepdim=True)
        maps = torch.where(high > low, (maps - low) / (high - low).clamp_min(1e-12), torch.zeros_like(maps))
        maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        ornet.update(maps, boxes, logits=logits, targets=labels)
    for images, labels, boxes, _ in wsol_loader:
        _, cams = model(images)
        v2.update(metrics.prepare_scoremap(pick(cams, labels), size=score_size), boxes)
    o, w = ornet.compute(), v2.compute()
    return {"gt_known": o["gt_known"], "top1_loc": o["top1_loc"], "maxboxacc_v2": w["value"]}


def main(argv: Sequence[str] | None = None) -> int:
    """Train both variants, print the comparison and write ``metrics.json``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"), help="a CUB-format data set")
    parser.add_argument("--out", type=Path, default=Path("runs/cam_with_lowcam"))
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--resize", type=int, default=72)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--area-weight", type=float, default=0.1)
    parser.add_argument("--entropy-weight", type=float, default=0.5)
    parser.add_argument("--area-topk", type=int, default=4)
    parser.add_argument("--area-skip", type=int, default=1)
    parser.add_argument("--score-size", type=int, default=224, help="score map size of the wsoleval protocol")
    parser.add_argument("--seed", type=int, default=517)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    train_split, test_split = read_cub(args.data, "train"), read_cub(args.data, "test")
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    train_set = WSOLDataset(train_split.samples, train_transform(args.resize, args.crop, True, mean, std))

    def loader_fn(epoch: int) -> DataLoader[Any]:
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        return DataLoader(
            train_set,
            batch_size=args.batch_size,
            shuffle=True,
            generator=generator,
            collate_fn=collate,
            # a batch larger than the training set must still give one (smaller) batch per epoch
            drop_last=len(train_set) > args.batch_size,
        )

    ornet_set = WSOLDataset(test_split.samples, ornet_test_transform(args.resize, args.crop, mean, std))
    wsol_set = WSOLDataset(
        test_split.samples, wsol_test_transform(args.crop, mean, std), wsol_score_size=args.score_size
    )
    ornet_loader = DataLoader(ornet_set, batch_size=50, collate_fn=collate)
    wsol_loader = DataLoader(wsol_set, batch_size=50, collate_fn=collate)
    results: dict[str, Any] = {}
    began = time.perf_counter()
    for name, with_lowcam in (("plain CAM", False), ("CAM + lowcam losses", True)):
        model, history = train(args, loader_fn, len(train_split.classes), with_lowcam=with_lowcam)
        scores = evaluate(model, ornet_loader, wsol_loader, args.crop, args.score_size)
        results[name] = {**scores, "history": history}
    atomic_write_text(args.out / "metrics.json", json.dumps(results, indent=2) + "\n")
    print(f"\n{'model':<22} | GT-known Loc | Top-1 Loc | MaxBoxAccV2")
    for name, r in results.items():
        print(f"{name:<22} | {r['gt_known']:12.2f} | {r['top1_loc']:9.2f} | {r['maxboxacc_v2']:11.2f}")
    print(f"({time.perf_counter() - began:.0f} s; metrics in {args.out / 'metrics.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
