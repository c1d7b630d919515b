"""``plot_localization``: an image, its map as an overlay, the predicted and the ground-truth boxes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["plot_localization"]


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
