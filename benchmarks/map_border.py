"""Where a trained stage-1 map puts its highest values: on the object, or along the image's border?

Loads ``<run>/coarse.pt`` of ``examples/train_ornet.py`` (with the run's own ``config.yaml``), computes the
stage-1 map of the first ``--images`` evaluation images of ``--data`` (the reference test transform), and
prints the share of each map's ``--top`` highest pixels that lie in its ``--ring``-pixel border, against
the border's share of the map (what a map indifferent to the border would give), the mean value on and
inside the border, and the spread within an image against the spread of the image means.

Usage::

    python benchmarks/map_border.py --run runs/pretrained --data data/birds
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from ornet import checkpoint, recipe  # noqa: E402
from ornet.config import load_config  # noqa: E402
from ornet.data import WSOLDataset, collate, read_cub  # noqa: E402
from ornet.models import FineNet  # noqa: E402
from ornet.transforms import IMAGENET_MEAN, IMAGENET_STD, ornet_test_transform  # noqa: E402

__all__ = ["border_statistics", "main"]


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
    cfg = load_config(args.run / "config.yaml", {"data.root": str(args.data)})
    weights = checkpoint.load(args.run / "coarse.pt")["model"]
    split = read_cub(args.data, "test")
    classes = len(split.classes)
    net = recipe.coarse_net(cfg, classes, head=recipe.saved_coarse_head(weights, classes))
    net.load_state_dict(weights)
    transform = ornet_test_transform(cfg.data.resize, cfg.data.crop, IMAGENET_MEAN, IMAGENET_STD)
    loader = DataLoader(
        WSOLDataset(split.samples[: args.images], transform), batch_size=args.images, collate_fn=collate
    )
    with torch.no_grad():
        maps = FineNet(net).eval()(next(iter(loader))[0]).activation[:, 0]
    stats = border_statistics(maps, args.ring, args.top)
    print(
        f"{args.run}: {stats['top_on_border']:.2f} of each map's top-{args.top} pixels in the {args.ring}-pixel "
        f"border ({stats['border_area']:.2f} of the map); mean {stats['border_mean']:.3f} on the border, "
        f"{stats['interior_mean']:.3f} inside; std within an image {stats['std_within']:.3f}, "
        f"between image means {stats['std_between']:.3f} ({len(maps)} images)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
