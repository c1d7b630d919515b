"""Where a trained stage-1 map puts its highest values: on the object, or along the image's border?

Loads ``<run>/coarse.pt`` of ``examples/train_ornet.py`` (with the run's own ``config.yaml``), computes the
stage-1 map of the first ``--images`` evaluation images of ``--data`` (the reference test transform), and
prints the share of each map's ``--top`` highest pixels that lie in its ``--ring``-pixel border, against
the border's share of the map (what a map indifferent to the border would give), the mean value on and
inside the border, the spread within an image against the spread of the image means, and the generator's
accuracy and map mean in eval mode (what the evaluation uses) and in train mode. On a set of
``examples/birds.py`` (it has ``head_boxes.txt``) it also prints, for the map ``p`` and for the generator's
class map of the true class ``f_y``, the share of the top pixels on the head, on the rest of the bird and
on the background, against the areas of the head and the rest of the bird.

Usage::

    python benchmarks/map_border.py --run runs/pretrained --data data/birds
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from ornet.models import FineNet  # noqa: E402
from ornet.stages import load_coarse  # noqa: E402

from benchmarks._runs import run_context  # noqa: E402
from lowcam.data import (  # noqa: E402
    SampleDataset,
    collate_samples,
    ornet_test_transform,
    read_cub,
)
from lowcam.metrics import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

__all__ = ["border_statistics", "box_masks", "main", "measure", "part_statistics"]


def border_statistics(maps: torch.Tensor, ring: int = 2, top: int = 20) -> dict[str, float]:
    """Statistics of ``(B, H, W)`` maps: ``top_on_border`` (share of each map's ``top`` highest pixels in
    its ``ring``-pixel border), ``border_area``, ``border_mean``, ``interior_mean``, ``std_within`` (mean
    over images of each map's std) and ``std_between`` (std of the images' means)."""
    h, w = maps.shape[-2:]
    border = torch.zeros(h, w, dtype=torch.bool, device=maps.device)
    border[:ring], border[-ring:], border[:, :ring], border[:, -ring:] = True, True, True, True
    flat = maps.flatten(1)
    highest = flat.topk(min(top, flat.shape[1]), dim=1).indices
    return {
        "top_on_border": border.flatten()[highest].float().mean().item(),
        "border_area": border.float().mean().item(),
        "border_mean": maps[:, border].mean().item(),
        "interior_mean": maps[:, ~border].mean().item(),
        "std_within": flat.std(1).mean().item(),
        "std_between": flat.mean(1).std().item(),
    }


def box_masks(boxes: torch.Tensor, size: int, stride: float) -> torch.Tensor:
    """``(B, size, size)`` masks of the map pixels whose centres lie in ``(B, 4)`` boxes ``(x0, y0, x1, y1)``
    given in image pixels (a map pixel is ``stride`` image pixels)."""
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) * stride
    x0, y0, x1, y1 = (boxes[:, k, None].to(torch.float64) for k in range(4))
    inside_x = (centres >= x0) & (centres <= x1)  # (B, size)
    inside_y = (centres >= y0) & (centres <= y1)
    return inside_y[:, :, None] & inside_x[:, None, :]


def part_statistics(
    maps: torch.Tensor, head: torch.Tensor, bird: torch.Tensor, top: int = 20
) -> dict[str, float]:
    """Where the ``top`` highest pixels of each ``(B, H, W)`` map lie: ``top_head``, ``top_body`` (the bird
    but its head), ``top_background``, each a share averaged over the images, and ``head_area`` and
    ``body_area`` (the shares a map indifferent to the bird would give); ``head`` and ``bird`` are the
    boolean masks of :func:`box_masks`."""
    body = bird & ~head
    flat = maps.flatten(1)
    highest = flat.topk(min(top, flat.shape[1]), dim=1).indices
    on_head = head.flatten(1).gather(1, highest).double().mean().item()
    on_body = body.flatten(1).gather(1, highest).double().mean().item()
    return {
        "top_head": on_head,
        "top_body": on_body,
        "top_background": 1.0 - on_head - on_body,
        "head_area": head.double().mean().item(),
        "body_area": body.double().mean().item(),
    }


def _with_head_boxes(data: Path, samples: list[Any]) -> list[Any]:
    """``samples`` with their head box (``head_boxes.txt`` of ``examples/birds.py``) as their one box."""
    paths = dict(line.split() for line in (data / "images.txt").read_text().splitlines() if line.strip())
    heads = {}
    for line in (data / "head_boxes.txt").read_text().splitlines():
        if line.strip():
            image, x, y, w, h = line.split()
            if image not in paths:  # a validation split lists only some of the images
                continue
            heads[paths[image]] = (float(x), float(y), float(x) + float(w), float(y) + float(h))
    return [
        dataclasses.replace(s, boxes=(heads[s.path.relative_to(data / "images").as_posix()],))
        for s in samples
    ]


def measure(run: Path, data: Path, images: int = 40, ring: int = 2, top: int = 20) -> dict[str, Any]:
    """Every statistic ``main`` prints, of the stage-1 network in ``run`` on the first ``images`` evaluation
    images of ``data``: :func:`border_statistics` of the map (eval mode), ``images``, the generator's
    ``accuracy_eval``/``accuracy_train`` and ``map_mean_eval``/``map_mean_train`` (a forward pass in train
    mode, on a copy, uses batch statistics), and with ``head_boxes.txt`` ``p`` and ``f_y`` (the true
    class's class map): :func:`part_statistics`, ``f_y`` also its spread (``std_within``, ``std_between``)."""
    ctx = run_context(run, data)
    cfg, split = ctx.cfg, read_cub(data, "test")
    net = load_coarse(ctx)
    transform = ornet_test_transform(cfg.data.resize, cfg.data.crop, IMAGENET_MEAN, IMAGENET_STD)
    samples = split.samples[:images]
    loader = DataLoader(SampleDataset(samples, transform), batch_size=images, collate_fn=collate_samples)
    x, labels, boxes, _ = next(iter(loader))
    with torch.no_grad():
        out = FineNet(net).eval()(x)
        batch_stats = FineNet(copy.deepcopy(net)).train()(x)  # a copy: train mode moves running statistics
    maps = out.activation[:, 0]
    result: dict[str, Any] = {**border_statistics(maps, ring, top), "images": len(maps)}
    for key, o in (("eval", out), ("train", batch_stats)):
        result[f"accuracy_{key}"] = (o.logits.argmax(1) == labels).double().mean().item()
        result[f"map_mean_{key}"] = o.activation.mean().item()
    if (data / "head_boxes.txt").is_file():
        heads = SampleDataset(_with_head_boxes(data, samples), transform)
        _, _, head_boxes, _ = next(iter(DataLoader(heads, batch_size=images, collate_fn=collate_samples)))
        size, stride = maps.shape[-1], cfg.data.crop / maps.shape[-1]
        head = box_masks(torch.stack([b[0] for b in head_boxes]), size, stride)
        bird = box_masks(torch.stack([b[0] for b in boxes]), size, stride)
        class_map = out.class_maps[torch.arange(len(labels)), labels]
        spread = border_statistics(class_map, ring, top)
        result["p"] = part_statistics(maps, head, bird, top)
        result["f_y"] = {
            **part_statistics(class_map, head, bird, top),
            "std_within": spread["std_within"],
            "std_between": spread["std_between"],
        }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="an output_dir of train_ornet.py")
    parser.add_argument("--data", type=Path, required=True, help="a CUB-format folder (its test split)")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--ring", type=int, default=2, help="border width in map pixels")
    parser.add_argument("--top", type=int, default=20, help="highest pixels per map")
    args = parser.parse_args(argv)
    m = measure(args.run, args.data, args.images, args.ring, args.top)
    print(
        f"{args.run}: {m['top_on_border']:.2f} of each map's top-{args.top} pixels in the {args.ring}-pixel "
        f"border ({m['border_area']:.2f} of the map); mean {m['border_mean']:.3f} on the border, "
        f"{m['interior_mean']:.3f} inside; std within an image {m['std_within']:.3f}, "
        f"between image means {m['std_between']:.3f} ({m['images']} images)"
    )
    for mode, key in (("eval mode (running statistics)", "eval"), ("train mode (batch statistics)", "train")):
        print(
            f"generator in {mode}: accuracy {m[f'accuracy_{key}']:.2f}, map mean {m[f'map_mean_{key}']:.3f}"
        )
    for name in ("p", "f_y"):
        if name in m:
            s = m[name]
            print(
                f"{name}: top-{args.top} pixels {s['top_head']:.2f} on the head ({s['head_area']:.2f} of the map), "
                f"{s['top_body']:.2f} on the rest of the bird ({s['body_area']:.2f}), "
                f"{s['top_background']:.2f} on the background"
            )
    if "f_y" in m:
        print(
            f"f_y: std within an image {m['f_y']['std_within']:.3f}, between image means "
            f"{m['f_y']['std_between']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
