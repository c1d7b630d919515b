"""PNG grids: each image with its activation map overlaid, the predicted box and the ground-truth boxes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ornet.files import atomic_write

#: Predicted box colour (red) and ground-truth box colour (green).
PRED_COLOUR = (255, 40, 40)
GT_COLOUR = (40, 230, 40)


def _heat(values: torch.Tensor) -> torch.Tensor:
    """A blue → cyan → yellow → red colour map of ``(H, W)`` values in ``[0, 1]``; ``(H, W, 3)`` in [0, 1]."""
    v = values.clamp(0, 1)
    red = (1.5 - (4 * v - 3).abs()).clamp(0, 1)
    green = (1.5 - (4 * v - 2).abs()).clamp(0, 1)
    blue = (1.5 - (4 * v - 1).abs()).clamp(0, 1)
    return torch.stack((red, green, blue), dim=-1)


def overlay(image: torch.Tensor, heat_map: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """Blend ``image`` (3, H, W in [0, 1]) with the colour-mapped ``heat_map`` (h, w in [0, 1])."""
    height, width = image.shape[-2:]
    resized = F.interpolate(
        heat_map[None, None].float(), size=(height, width), mode="bilinear", align_corners=False
    )
    blended = (1 - alpha) * image.permute(1, 2, 0) + alpha * _heat(resized[0, 0])
    return Image.fromarray((blended.clamp(0, 1) * 255).round().to(torch.uint8).numpy())


def save_grid(
    path: str | Path,
    images: torch.Tensor,
    maps: torch.Tensor,
    predicted: torch.Tensor,
    ground_truth: Sequence[torch.Tensor],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    columns: int = 8,
    title: str = "",
) -> Path:
    """Write a grid PNG of ``images`` (normalised, ``(N, 3, H, W)``) with ``maps`` (``(N, 1, h, w)`` in
    [0, 1]) overlaid, ``predicted`` boxes ``(N, 4)`` in red and the ``ground_truth`` boxes in green."""
    count = images.shape[0]
    height, width = images.shape[-2:]
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    banner = 14 if title else 0
    grid = Image.new("RGB", (columns * (width + 2), rows * (height + 2) + banner), (255, 255, 255))
    if title:
        ImageDraw.Draw(grid).text((2, 1), title, fill=(0, 0, 0))
    mean_t = torch.tensor(list(mean)).view(3, 1, 1)
    std_t = torch.tensor(list(std)).view(3, 1, 1)
    for k in range(count):
        picture = overlay((images[k].float().cpu() * std_t + mean_t).clamp(0, 1), maps[k, 0].float().cpu())
        draw = ImageDraw.Draw(picture)
        for box in ground_truth[k].tolist():
            draw.rectangle(box, outline=GT_COLOUR, width=1)
        draw.rectangle(predicted[k].tolist(), outline=PRED_COLOUR, width=1)
        row, column = divmod(k, columns)
        grid.paste(picture, (column * (width + 2) + 1, banner + row * (height + 2) + 1))
    target = Path(path)
    atomic_write(target, lambda handle: grid.save(handle, format="PNG"))
    return target
