"""Input checks of the metrics: errors name the argument, the image, its shape and what was expected.

The shape checks shared with the components (``(B, H, W)`` or ``(B, 1, H, W)`` maps) live in
``lowcam._checks``; the checks here read values (boxes, thresholds, the ``[0, 1]`` range of score maps).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from lowcam._checks import check_batch_of_maps

__all__ = ["BoxFrame", "check_gt_boxes", "check_maps", "check_thresholds", "check_values"]


class BoxFrame(NamedTuple):
    """The frame GT boxes must lie in: ``0 <= x <= width``, ``0 <= y <= height``.

    ``rule`` is ``"inside"`` (every coordinate in the frame), ``"overlap"`` (the box must overlap the frame;
    it may leave it) or ``"any"`` (not checked). ``what`` names the frame in messages, e.g.
    ``"14 x 14 score map (protocol 'maxboxacc_v2': boxes in the maps' pixel frame)"``.
    """

    width: float
    height: float
    rule: Literal["inside", "overlap", "any"]
    what: str
    #: ``(w, h, message)``: warn (``UserWarning``) when every box of a batch lies in ``[0, w] x [0, h]``
    within: tuple[float, float, str] | None = None


def check_maps(name: str, maps: object) -> Tensor:
    """Return ``maps`` as ``(B, H, W)``: a floating tensor of shape ``(B, H, W)`` or ``(B, 1, H, W)``, ``B >= 0``."""
    return check_batch_of_maps(name, maps, allow_empty_batch=True)


def check_values(name: str, maps: Tensor, *, unit_interval: bool) -> bool:
    """Raise ``ValueError`` for an infinite value (or, with ``unit_interval``, one outside ``[0, 1]``).

    NaN is allowed. This reads the data: one synchronisation with the device.

    Returns:
        True when the maps hold no NaN (the common case, known from the one-pass check); False when they may.
    """
    if maps.numel() > 0:
        # the common case, in one pass: min and max propagate NaN, which fails every comparison below
        low, high = torch.aminmax(maps)
        ends = torch.stack([low, high]).to(torch.float64)
        ok = ((ends >= 0) & (ends <= 1)).all() if unit_interval else torch.isfinite(ends).all()
        if bool(ok):
            return True
    ok = torch.isfinite(maps) | torch.isnan(maps)
    if unit_interval:
        ok = ok & ~((maps < 0) | (maps > 1))
    bad_image = ~ok.flatten(1).all(1)
    if bool(bad_image.any()):
        i = int(bad_image.nonzero()[0, 0])
        m = maps[i]
        if not bool((torch.isfinite(m) | torch.isnan(m)).all()):
            raise ValueError(
                f"{name}[{i}] (shape {tuple(m.shape)}) holds an infinite value; expected finite or NaN"
            )
        lo, hi = float(m.nan_to_num(nan=0.5).min()), float(m.nan_to_num(nan=0.5).max())
        raise ValueError(
            f"{name}[{i}] (shape {tuple(m.shape)}) has values in [{lo}, {hi}]; expected score maps in [0, 1] "
            "(see metrics.prepare_scoremap)"
        )
    return False


def check_gt_boxes(
    name: str, boxes: object, batch: int, device: torch.device, frame: BoxFrame | None = None
) -> Tensor:
    """Check a list of ``(K_i, 4)`` boxes, one entry per image; return them padded, ``(B, K_max, 4)`` float64.

    Padding repeats an image's first box, so that a maximum over the padded boxes equals the one over its own.
    A ``(4,)`` entry counts as one box. The checks run on the boxes' own device (usually the CPU). In a
    ``(B, K, 4)`` tensor with ``K > 1``, an all-zero row is rejected: zero padding looks like that, and it
    would match the box ``[0, 0, 0, 0]`` of an empty map. In a list of ``(K_i, 4)`` entries an all-zero row
    is a real box (a one-pixel box at the origin in the inclusive convention, as the reference reads
    ``0,0,3,3`` in a 1000-pixel image rescaled to 224). With ``frame``, a box outside it (see
    :class:`BoxFrame`) is rejected.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 3 or boxes.shape[-1] != 4:
            raise ValueError(f"{name} as a tensor must have shape (B, K, 4), got shape {tuple(boxes.shape)}")
        entries: Sequence[object] = list(boxes.unbind(0))
        zero_is_padding = boxes.shape[1] > 1
    elif isinstance(boxes, Sequence) and not isinstance(boxes, (str, bytes)):
        entries = boxes
        zero_is_padding = False
    else:
        raise TypeError(f"{name} must be a list of (K, 4) tensors, one per image, got {type(boxes).__name__}")
    if len(entries) != batch:
        raise ValueError(
            f"{name} has {len(entries)} entries for a batch of {batch} maps; expected one per image"
        )
    if batch == 0:
        return torch.zeros(0, 1, 4, dtype=torch.float64, device=device)
    uniform = _stack_uniform(entries)
    if uniform is not None:  # one shape and dtype for all: no per-image work
        flat = uniform.to(device="cpu", dtype=torch.float64).reshape(-1, 4)
        k = flat.shape[0] // batch  # a (4,) entry is one box, shape (1, 4)
        _check_rows(name, flat, torch.full((batch,), k), [(k, 4)] * batch, frame, zero_is_padding)
        return flat.view(batch, k, 4).to(device)
    tensors: list[Tensor] = []
    for i, entry in enumerate(entries):  # shapes only: no data is read here
        t = entry if isinstance(entry, Tensor) else torch.as_tensor(entry)
        if t.dim() == 1 and t.shape[0] == 4:
            t = t.view(1, 4)
        if t.dim() != 2 or t.shape[1] != 4 or t.shape[0] == 0:
            raise ValueError(f"{name}[{i}] must have shape (K, 4) with K >= 1, got shape {tuple(t.shape)}")
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name}[{i}] must hold real numbers, got {t.dtype}")
        tensors.append(t)
    counts = torch.tensor([t.shape[0] for t in tensors])
    if len({t.device for t in tensors}) == 1:  # one copy to the host, not one per image
        flat = torch.cat([t.to(torch.float64) for t in tensors]).cpu()
    else:
        flat = torch.cat([t.to(device="cpu", dtype=torch.float64) for t in tensors])
    _check_rows(name, flat, counts, [tuple(t.shape) for t in tensors], frame, zero_is_padding)
    # padding repeats each image's first box: gather row offset + min(j, K_i - 1)
    k_max = int(counts.max())
    offsets = torch.cumsum(counts, 0) - counts
    index = offsets.view(-1, 1) + torch.minimum(torch.arange(k_max).view(1, -1), (counts - 1).view(-1, 1))
    return flat.index_select(0, index.view(-1)).view(batch, k_max, 4).to(device)


def _stack_uniform(entries: Sequence[object]) -> Tensor | None:
    """``(B, K, 4)`` (or ``(B, 4)``) stack of ``entries`` when all are tensors of one valid shape, dtype and
    device, else ``None`` (the per-image checks then name the culprit)."""
    if len(entries) == 0 or not all(isinstance(e, Tensor) for e in entries):
        return None
    tensors: list[Tensor] = list(entries)  # type: ignore[arg-type]  # all tensors, checked above
    first = tensors[0]
    shape, dtype, device = first.shape, first.dtype, first.device
    valid = (len(shape) == 1 and shape[0] == 4) or (len(shape) == 2 and shape[1] == 4 and shape[0] > 0)
    if not valid or dtype.is_complex or dtype == torch.bool:
        return None
    if any(t.shape != shape or t.dtype != dtype or t.device != device for t in tensors):
        return None
    return torch.stack(tensors)


def _check_rows(
    name: str,
    flat: Tensor,
    counts: Tensor,
    shapes: list[tuple[int, ...]],
    frame: BoxFrame | None,
    zero_is_padding: bool,
) -> None:
    """Raise ``ValueError`` naming the first box row of ``flat`` (``(N, 4)`` float64, ``counts[i]`` rows for
    image ``i``, whose entry has shape ``shapes[i]``) that is not finite, has ``x0 > x1`` or ``y0 > y1``, is
    all zero while ``zero_is_padding``, or lies outside ``frame``."""
    zero = (flat == 0).all(1) & zero_is_padding
    wrong = ~torch.isfinite(flat).all(1) | (flat[:, 0] > flat[:, 2]) | (flat[:, 1] > flat[:, 3]) | zero
    outside = torch.zeros_like(zero)
    if frame is not None and frame.rule != "any":
        x0, y0, x1, y1 = flat.unbind(1)
        if frame.rule == "inside":
            outside = (x0 < 0) | (y0 < 0) | (x1 > frame.width) | (y1 > frame.height)
        else:
            outside = (x1 <= 0) | (y1 <= 0) | (x0 >= frame.width) | (y0 >= frame.height)
    wrong = wrong | outside
    if frame is not None and frame.within is not None and flat.shape[0] > 0:
        w, h, message = frame.within
        if bool(((flat >= 0).all() & (flat[:, [0, 2]] <= w).all() & (flat[:, [1, 3]] <= h).all()).item()):
            warnings.warn(message, UserWarning, stacklevel=4)
    if bool(wrong.any()):
        row = int(wrong.nonzero()[0, 0])
        i = int(torch.searchsorted(torch.cumsum(counts, 0), row, right=True))
        j = row - int(counts[:i].sum())
        if bool(zero[row]):
            raise ValueError(
                f"{name}[{i}] (shape {shapes[i]}) row {j} is all zero, which looks like padding and would "
                "match the box [0, 0, 0, 0] of an empty map; expected a real box (pad a (B, K, 4) tensor by "
                "repeating an image's first box, or pass a list of (K_i, 4) tensors, where [0, 0, 0, 0] is "
                "read as a real one-pixel box)"
            )
        if bool(outside[row]) and frame is not None and bool(torch.isfinite(flat[row]).all()):
            where = "inside" if frame.rule == "inside" else "overlapping"
            raise ValueError(
                f"{name}[{i}] (shape {shapes[i]}) row {j} is {flat[row].tolist()}: outside the {frame.what}; "
                f"expected a box {where} [0, {frame.width:g}] x [0, {frame.height:g}]"
            )
        raise ValueError(
            f"{name}[{i}] (shape {shapes[i]}) row {j} is {flat[row].tolist()}; "
            "expected finite coordinates with x0 <= x1 and y0 <= y1"
        )


def check_thresholds(name: str, values: Tensor | Sequence[float] | None, default: Tensor) -> Tensor:
    """A non-empty 1-D float64 CPU tensor of thresholds in ``[0, 1]``."""
    if values is None:
        return default
    t = torch.as_tensor(values, dtype=torch.float64).detach().cpu().reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"{name} must lie in [0, 1], got min {float(t.min())} and max {float(t.max())}")
    return t
