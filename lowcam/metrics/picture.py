"""``plot_localization``: an image, its map as an overlay, the predicted and the ground-truth boxes; a grid of them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["plot_localization", "plot_localization_grid"]


def _image_array(image: Any) -> np.ndarray:
    """``(H, W, 3)`` or ``(H, W)`` float array in ``[0, 1]`` from a tensor, an array or a PIL image."""
    if isinstance(image, Tensor):
        array = image.detach().to("cpu")
        if array.dim() == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        out = array.numpy()
    elif isinstance(image, np.ndarray):
        out = image
    elif hasattr(image, "convert"):  # a PIL image
        out = np.asarray(image.convert("RGB"))
    else:
        raise TypeError(f"image must be a tensor, an array or a PIL image, got {type(image).__name__}")
    if out.ndim == 3 and out.shape[-1] == 1:
        out = out[..., 0]
    if out.ndim not in (2, 3) or (out.ndim == 3 and out.shape[-1] != 3) or 0 in out.shape:
        raise ValueError(f"image must be (3, H, W), (H, W, 3) or (H, W), got shape {tuple(out.shape)}")
    if out.dtype == np.uint8:
        return out.astype(np.float64) / 255.0
    if out.dtype.kind not in "fiu":
        raise TypeError(f"image must hold real numbers, got {out.dtype}")
    return np.clip(out.astype(np.float64), 0.0, 1.0)


def _boxes(name: str, boxes: Any) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, 4))
    array = (
        boxes.detach().to("cpu").to(torch.float64).numpy() if isinstance(boxes, Tensor) else np.asarray(boxes)
    )
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (4,) or (K, 4), got shape {tuple(array.shape)}")
    return array


def plot_localization(
    image: Any,
    scoremap: Tensor | np.ndarray | None = None,
    pred_box: Tensor | Sequence[float] | None = None,
    gt_boxes: Tensor | Sequence[Sequence[float]] | None = None,
    *,
    ax: Any = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    pred_color: str = "lime",
    gt_color: str = "red",
    title: str | None = None,
) -> Any:
    """Draw an image, its map as a translucent overlay, the predicted box and the ground-truth boxes.

    The map is stretched over the whole image (any resolution, e.g. a 7 × 7 CAM on a 224 × 224 image;
    shown with bilinear interpolation and normalised to its own range, NaN transparent). Boxes are
    ``(x0, y0, x1, y1)`` in the image's pixels (e.g. :func:`~lowcam.metrics.box_from_map` of a score map of
    the image's size, and :func:`~lowcam.metrics.wsoleval_gt_boxes`), drawn as rectangles from
    ``(x0, y0)`` to ``(x1, y1)`` in pixel-centre coordinates. matplotlib is imported here only (the ``plot``
    extra: ``pip install 'lowcam[plot]'``).

    Args:
        image: ``(3, H, W)`` or ``(H, W, 3)`` tensor or array (uint8, or floats shown clipped to ``[0, 1]``:
            undo a normalisation first), ``(H, W)`` grey, or a PIL image.
        scoremap: ``(h, w)`` (or ``(1, h, w)``) map, or None for no overlay.
        pred_box: ``(4,)`` the predicted box, or None.
        gt_boxes: ``(K, 4)`` (or ``(4,)``) ground-truth boxes, or None.
        ax: the matplotlib ``Axes`` to draw on; None makes a new figure.
        alpha: the overlay's opacity.
        cmap: the overlay's colour map.
        pred_color: the predicted box's colour.
        gt_color: the ground-truth boxes' colour.
        title: the axes' title.

    Returns:
        The ``Axes`` (its figure is ``ax.figure``).

    Raises:
        ImportError: matplotlib is not installed.
        TypeError, ValueError: an argument of the wrong type or shape, named.

    Example:
        >>> import io, matplotlib
        >>> matplotlib.use("Agg")
        >>> image = torch.zeros(3, 32, 32)
        >>> cam = torch.zeros(4, 4)
        >>> cam[1:3, 1:3] = 1.0
        >>> ax = plot_localization(image, cam, pred_box=[8, 8, 23, 23], gt_boxes=[[6, 6, 25, 25]])
        >>> len(ax.patches), len(ax.images)  # two boxes; the image and the overlay
        (2, 2)
        >>> ax.figure.savefig(io.BytesIO(), format="png")
        >>> import matplotlib.pyplot as plt; plt.close(ax.figure)
    """
    try:
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plot_localization needs matplotlib: pip install 'lowcam[plot]'") from error
    picture = _image_array(image)
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    pred = _boxes("pred_box", pred_box)
    if len(pred) > 1:
        raise ValueError(f"pred_box must be one box (4,), got shape {tuple(pred.shape)}")
    gt = _boxes("gt_boxes", gt_boxes)
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    h, w = picture.shape[:2]
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0.0, vmax=1.0, extent=extent)
    if scoremap is not None:
        m = (
            scoremap.detach().to("cpu").to(torch.float64).numpy()
            if isinstance(scoremap, Tensor)
            else scoremap
        )
        m = np.asarray(m, dtype=np.float64)
        if m.ndim == 3 and m.shape[0] == 1:
            m = m[0]
        if m.ndim != 2 or 0 in m.shape:
            raise ValueError(f"scoremap must be (h, w) or (1, h, w), got shape {tuple(m.shape)}")
        ax.imshow(np.ma.masked_invalid(m), cmap=cmap, alpha=alpha, extent=extent, interpolation="bilinear")
    for box, color, style in [(b, gt_color, "--") for b in gt] + [(b, pred_color, "-") for b in pred]:
        x0, y0, x1, y1 = (float(v) for v in box)
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2, linestyle=style)
        )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def _per_panel(name: str, values: Any, count: int) -> list[Any]:
    """``values`` as one entry per panel: None for none, else a sequence (or a tensor's first axis) of
    ``count`` entries (an entry may be None)."""
    if values is None:
        return [None] * count
    if len(values) != count:
        raise ValueError(f"{name} must hold one entry per image ({count}), got {len(values)}")
    return list(values)


def plot_localization_grid(
    images: Tensor | Sequence[Any],
    scoremaps: Tensor | Sequence[Any] | None = None,
    pred_boxes: Tensor | Sequence[Any] | None = None,
    gt_boxes: Sequence[Any] | None = None,
    *,
    titles: Sequence[str | None] | None = None,
    columns: int = 8,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    suptitle: str = "",
    panel_size: float = 1.6,
    dpi: int = 80,
    **style: Any,
) -> Any:
    """A grid of :func:`plot_localization` panels, one per image, as a matplotlib ``Figure`` (no pyplot
    state: save it with ``figure.savefig(path)``; nothing is kept open).

    Each per-image argument holds one entry per panel (an entry may be None: that panel has no overlay,
    predicted box or ground truth), so one call draws one map over many images or, with an image repeated,
    several maps of the same image side by side.

    Args:
        images: ``(N, 3, H, W)`` tensor, or N images of any form :func:`plot_localization` takes.
        scoremaps: ``(N, h, w)`` / ``(N, 1, h, w)``, or N maps (or None entries), or None.
        pred_boxes: ``(N, 4)``, or N boxes (or None entries), or None.
        gt_boxes: N ``(K_i, 4)`` boxes (or None entries), or None.
        titles: N titles (or None entries), or None.
        columns: panels per row (fewer when there are fewer images).
        mean: with ``std``, undo this per-channel normalisation of tensor images first
            (``image · std + mean``).
        std: see ``mean``.
        suptitle: the figure's title ("" for none).
        panel_size: one panel's side, in inches.
        dpi: dots per inch.
        **style: passed to every :func:`plot_localization` (``alpha``, ``cmap``, ``pred_color``,
            ``gt_color``).

    Returns:
        The ``Figure``.

    Raises:
        ImportError: matplotlib is not installed.
        TypeError, ValueError: an argument of the wrong type or length, named.

    Example:
        >>> import io
        >>> images, cams = torch.zeros(3, 3, 32, 32), torch.rand(3, 4, 4)
        >>> figure = plot_localization_grid(images, cams, torch.tensor([[8, 8, 23, 23]] * 3), columns=2)
        >>> len(figure.axes), sum(len(ax.patches) for ax in figure.axes)  # a 2 × 2 grid, one box a panel
        (4, 3)
        >>> figure.savefig(io.BytesIO(), format="png")
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plot_localization_grid needs matplotlib: pip install 'lowcam[plot]'") from error
    count = len(images)
    if count == 0:
        raise ValueError("images must hold at least one image")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive int, got {columns!r}")
    if (mean is None) != (std is None):
        raise ValueError("mean and std go together: give both or neither")
    maps = _per_panel("scoremaps", scoremaps, count)
    preds = _per_panel("pred_boxes", pred_boxes, count)
    gts = _per_panel("gt_boxes", gt_boxes, count)
    heads = _per_panel("titles", titles, count)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    banner = 0.3 if suptitle else 0.0
    headings = 0.25 if any(t is not None for t in heads) else 0.0
    figure = Figure(figsize=(columns * panel_size, rows * panel_size + banner + headings), dpi=dpi)
    axes = figure.subplots(rows, columns, squeeze=False)
    if suptitle:
        figure.suptitle(suptitle, fontsize=8)
    top = 1.0 - (banner + headings) / (rows * panel_size + banner + headings) if banner + headings else 0.99
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.04, hspace=0.18)
    channels = (
        None
        if mean is None or std is None
        else torch.tensor([list(mean), list(std)], dtype=torch.float32).view(2, -1, 1, 1)
    )
    for k, ax in enumerate(axes.flat):
        if k >= count:
            ax.set_axis_off()
            continue
        image = images[k]
        if channels is not None and isinstance(image, Tensor):
            image = (image.detach().float().cpu() * channels[1] + channels[0]).clamp(0, 1)
        plot_localization(image, maps[k], pred_box=preds[k], gt_boxes=gts[k], ax=ax, title=heads[k], **style)
        if heads[k] is not None:
            ax.title.set_fontsize(7)
    return figure
