"""PNG pictures of the evaluation, drawn by :func:`lowcam.metrics.plot_localization` (matplotlib).

Each panel is an image (the normalisation undone) with a map stretched over it as a translucent overlay,
the map's predicted box and the ground-truth boxes. :func:`save_grid` draws one map over several images
(``maps_<map>.png``), :func:`save_comparison` every map of the same images side by side (``maps.png``).
Figures are made with :class:`matplotlib.figure.Figure` (no pyplot, no global state) and written
atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lowcam import metrics
from ornet.files import atomic_write

#: Predicted box colour and ground-truth box colour (dashed), as the titles say.
PRED_COLOUR = "red"
GT_COLOUR = "lime"
#: Side of one panel in inches (at ``DPI`` dots per inch).
PANEL = 1.6
DPI = 80


def _figure(rows: int, columns: int, title: str, headings: bool = False) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    banner = (0.3 if title else 0.0) + (0.25 if headings else 0.0)
    figure = Figure(figsize=(columns * PANEL, rows * PANEL + banner), dpi=DPI)
    axes = figure.subplots(rows, columns, squeeze=False)
    if title:
        figure.suptitle(title, fontsize=8)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, wspace=0.04, hspace=0.18)
    figure.subplots_adjust(top=1.0 - banner / (rows * PANEL + banner) if banner else 0.99)
    return figure, axes


def _image(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(3, H, W)`` in [0, 1]: the normalisation undone."""
    mean_t = torch.tensor(list(mean)).view(3, 1, 1)
    std_t = torch.tensor(list(std)).view(3, 1, 1)
    return (image.float().cpu() * std_t + mean_t).clamp(0, 1)


def _save(path: str | Path, figure: Any) -> Path:
    target = Path(path)
    atomic_write(target, lambda handle: figure.savefig(handle, format="png"))
    return target


def _panel(
    ax: Any,
    image: torch.Tensor,
    heat_map: torch.Tensor | None,
    predicted: torch.Tensor | None,
    ground_truth: torch.Tensor,
    title: str | None = None,
) -> None:
    metrics.plot_localization(
        image,
        None if heat_map is None else heat_map.float().cpu(),
        pred_box=None if predicted is None else predicted.cpu(),
        gt_boxes=ground_truth.cpu(),
        ax=ax,
        pred_color=PRED_COLOUR,
        gt_color=GT_COLOUR,
        title=title,
    )
    if title is not None:
        ax.title.set_fontsize(7)


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
    """Write a grid PNG of ``images`` (normalised, ``(N, 3, H, W)``) with ``maps`` (``(N, 1, h, w)``)
    overlaid, the ``predicted`` boxes ``(N, 4)`` (image pixels) and the ``ground_truth`` boxes."""
    count = images.shape[0]
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    figure, axes = _figure(rows, columns, title)
    for k, ax in enumerate(axes.flat):
        if k < count:
            _panel(ax, _image(images[k], mean, std), maps[k, 0], predicted[k], ground_truth[k])
        else:
            ax.set_axis_off()
    return _save(path, figure)


def save_comparison(
    path: str | Path,
    images: torch.Tensor,
    maps: dict[str, tuple[str, torch.Tensor, torch.Tensor]],
    ground_truth: Sequence[torch.Tensor],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    title: str = "",
) -> Path:
    """Write a PNG with one row per image: the image with its ground-truth boxes, then each map of
    ``maps`` (``{name: (column title, maps (N, 1, h, w), predicted boxes (N, 4))}``) with its box."""
    count = images.shape[0]
    figure, axes = _figure(count, 1 + len(maps), title, headings=True)
    for k in range(count):
        picture = _image(images[k], mean, std)
        _panel(axes[k, 0], picture, None, None, ground_truth[k], "image" if k == 0 else None)
        for column, (heading, stack, predicted) in enumerate(maps.values(), start=1):
            _panel(
                axes[k, column],
                picture,
                stack[k, 0],
                predicted[k],
                ground_truth[k],
                heading if k == 0 else None,
            )
    return _save(path, figure)
