"""Boxes from score maps: over all foreground pixels ("ornet") and from contours as OpenCV finds them.

Protocol "wsoleval" takes its boxes from ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` on the binary
image ``{u8 > k}``. lowcam computes the same boxes, and the same largest contour, without tracing:

- Outer contours: one per 8-connected foreground component; its ``boundingRect`` is the component's box.
- Hole contours: one per hole, a 4-connected background region that does not reach the image border; the
  contour runs through the foreground pixels bordering the hole, so its box is the hole's box grown by one
  pixel on each side.
- Boxes are ``[x0, y0, min(x1 + 1, W − 1), min(y1 + 1, H − 1)]`` for the contour's extreme points
  ``x0 ≤ x ≤ x1``, ``y0 ≤ y ≤ y1`` (``boundingRect`` plus the reference's clip).
- ``cv2.contourArea`` (checked against OpenCV on random images in the tests): counting 2×2 pixel blocks, an
  outer contour's area is ``#blocks with 4 corners in the component with its holes filled + ½ · #blocks
  with 3``, a hole's area ``#blocks with ≥ 2 corners in the hole + ½ · #blocks with 1``. A hole is always
  smaller than the outer contour around it, and so is anything inside it, so the largest contour is the
  outer contour of a top-level component (one inside no hole). Filling every top-level component's holes
  gives the upper level sets of ``e(p) = min over 4-paths from p to the border of max u`` (grayscale hole
  filling), so the areas come from the component trees of ``e``.
- OpenCV lists contours depth-first, the children of a node (for top-level contours: the image) in reverse
  order of discovery, and discovers an outer contour at its component's first pixel in raster order. Python's
  ``max(contours, key=cv2.contourArea)`` keeps the first largest, so a tie goes to the top-level component
  whose first pixel comes last in raster order.

All cuts of a batch are handled at once from one component tree per image and kind (see ``_trees``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lowcam.metrics import _trees

__all__ = ["ContourBoxes", "boxes_all_pixels", "contour_boxes"]

_NEUTRAL = -(2**15)
_FRAME = 2**14
NUM_CUTS = 255  # cuts 0..254 of an 8-bit image; {u8 > 255} is always empty


class ContourBoxes(NamedTuple):
    """Contour boxes of a batch at a list of cuts, one row per contour.

    Attributes:
        boxes: ``(E, 4)`` int64 ``(x0, y0, x1, y1)``, the reference's clipped ``boundingRect``.
        batch: ``(E,)`` int64, the image of each box.
        cut: ``(E,)`` int64, the position of the box's cut in ``cuts`` (its last dimension).
        hole: ``(E,)`` bool, whether the box comes from a hole contour.

    Rows are sorted by ``(batch, cut)``. With no foreground at a cut, the row is the box ``[0, 0, 0, 0]``
    (``hole`` False). With ``largest_only=True`` there is exactly one row per ``(image, cut)``, so that
    ``boxes.view(B, C, 4)`` is valid.
    """

    boxes: Tensor
    batch: Tensor
    cut: Tensor
    hole: Tensor


class _Entries(NamedTuple):
    """Boxes at every cut ``0..254``, unsorted: image, cut, box, hole flag."""

    image: Tensor
    cut: Tensor
    boxes: Tensor
    hole: Tensor


def boxes_all_pixels(
    maps: Tensor, thresholds: Tensor | Sequence[float], *, scale: float | tuple[float, float]
) -> Tensor:
    """Protocol "ornet": one box over all pixels above each threshold, for every threshold at once.

    Foreground is ``map > τ`` compared in float64 (NaN is background). The box is
    ``[min_x·s_x, min_y·s_y, max_x·s_x, max_y·s_y]`` over all foreground pixels, connected or not (no
    ``+ s`` on the far side); with no foreground it is ``[0, 0, W·s_x, H·s_y]``. The boxes come from the
    maps' row and column maxima, so the maps are read once for all thresholds.

    Args:
        maps: ``(B, H, W)`` or ``(B, 1, H, W)`` floating tensor.
        thresholds: ``(T,)`` thresholds (converted to float64).
        scale: ``s`` (e.g. 224 / 56 = 4), or ``(s_x, s_y)``.

    Returns:
        ``(T, B, 4)`` float64 boxes.

    Example:
        >>> import torch
        >>> m = torch.zeros(1, 4, 4)
        >>> m[0, 1, 2] = 0.7
        >>> m[0, 3, 0] = 0.4
        >>> boxes_all_pixels(m, [0.3, 0.5, 0.9], scale=4.0)[:, 0].tolist()
        [[0.0, 4.0, 8.0, 12.0], [8.0, 4.0, 8.0, 4.0], [0.0, 0.0, 16.0, 16.0]]
    """
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        raise TypeError(f"maps must be a floating torch.Tensor, got {type(maps).__name__}")
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"maps must have shape (B, H, W) or (B, 1, H, W), got shape {tuple(maps.shape)}")
    sx, sy = (
        (float(scale), float(scale))
        if isinstance(scale, (int, float))
        else (float(scale[0]), float(scale[1]))
    )
    thr = torch.as_tensor(thresholds, dtype=torch.float64, device=maps.device).reshape(-1, 1, 1)
    m = torch.nan_to_num(maps, nan=float("-inf"))
    _, h, w = m.shape
    cols = m.amax(1).to(torch.float64) > thr  # (T, B, W)
    rows = m.amax(2).to(torch.float64) > thr  # (T, B, H)
    any_fg = cols.any(2)
    c8 = cols.to(torch.uint8)
    r8 = rows.to(torch.uint8)
    x0 = c8.argmax(2)
    x1 = (w - 1) - c8.flip(2).argmax(2)
    y0 = r8.argmax(2)
    y1 = (h - 1) - r8.flip(2).argmax(2)
    box = torch.stack([x0 * sx, y0 * sy, x1 * sx, y1 * sy], 2).to(torch.float64)
    empty = torch.tensor([0.0, 0.0, w * sx, h * sy], dtype=torch.float64, device=maps.device)
    return torch.where(any_fg.unsqueeze(2), box, empty)


def _pixel_coords(b: int, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` of every pixel of a ``(B, H, W)`` batch, flattened, int64."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return xs.reshape(-1).repeat(b), ys.reshape(-1).repeat(b)


def _entries_from_tables(tree: _trees.ComponentTree, table: Tensor, extra: Tensor) -> tuple[Tensor, Tensor]:
    """``(node, cut)`` of every component alive at a cut: ``cut >= tree.cut[node]`` and ``extra`` true."""
    cuts = torch.arange(table.shape[1], device=table.device)
    mask = (cuts.view(1, -1) >= tree.cut.view(-1, 1)) & extra
    node, k = mask.nonzero(as_tuple=True)
    return node, k


def _clip_boxes(x0: Tensor, y0: Tensor, xe: Tensor, ye: Tensor, h: int, w: int) -> Tensor:
    """``[x0, y0, min(xe, W − 1), min(ye, H − 1)]`` as ``(E, 4)`` int64."""
    return torch.stack([x0, y0, xe.clamp(max=w - 1), ye.clamp(max=h - 1)], 1).to(torch.int64)


def _outer_entries(u: Tensor) -> _Entries:
    """Outer-contour boxes of every component at every cut of ``u`` (B, H, W) int64 in ``[0, 255]``."""
    b, h, w = u.shape
    tree = _trees.build_tree(u, 8, 255)
    xs, ys = _pixel_coords(b, h, w, u.device)
    vals = torch.stack([-xs, -ys, xs, ys], 1).to(torch.int32)
    tab = _trees.node_tables(tree, vals, tree.level, "amax", _NEUTRAL)
    node, k = _entries_from_tables(tree, tab, tab[:, :, 2] >= 0)
    t = tab[node, k].to(torch.int64)
    boxes = _clip_boxes(-t[:, 0], -t[:, 1], t[:, 2] + 1, t[:, 3] + 1, h, w)
    return _Entries(tree.image[node], k, boxes, torch.zeros_like(k, dtype=torch.bool))


def _hole_tree(u: Tensor) -> _trees.ComponentTree:
    """Component tree of the background ``{u ≤ k}`` (4-connected), framed by a ring that is always background.

    Works on ``255 − u`` padded with the value 256, whose cut ``k' = 254 − k`` is the background at ``k``.
    """
    up = F.pad(255 - u, (1, 1, 1, 1), value=256)
    return _trees.build_tree(up, 4, 256)


def _hole_entries(u: Tensor) -> _Entries:
    """Hole-contour boxes of every hole at every cut of ``u`` (B, H, W) int64 in ``[0, 255]``."""
    b, h, w = u.shape
    tree = _hole_tree(u)
    xs, ys = _pixel_coords(b, h + 2, w + 2, u.device)
    frame = (xs == 0) | (ys == 0) | (xs == w + 1) | (ys == h + 1)
    xs, ys = xs - 1, ys - 1
    vals = torch.stack([-xs, -ys, xs, ys], 1)
    vals = torch.where(
        frame.view(-1, 1), torch.tensor([_FRAME, _NEUTRAL, _NEUTRAL, _NEUTRAL], device=u.device), vals
    )
    tab = _trees.node_tables(tree, vals.to(torch.int32), tree.level, "amax", _NEUTRAL)[:, :NUM_CUTS]
    node, kp = _entries_from_tables(tree, tab, (tab[:, :, 2] >= 0) & (tab[:, :, 0] <= 0))
    t = tab[node, kp].to(torch.int64)
    boxes = _clip_boxes(-t[:, 0] - 1, -t[:, 1] - 1, t[:, 2] + 2, t[:, 3] + 2, h, w)
    return _Entries(tree.image[node], (NUM_CUTS - 1) - kp, boxes, torch.ones_like(kp, dtype=torch.bool))


def _filled_levels(u: Tensor) -> Tensor:
    """Grayscale hole filling: ``e(p) = min over 4-paths from p to the border of max u`` (B, H, W) int64.

    ``{e > k}`` is the foreground at cut ``k`` with every hole filled. Read from the background's component
    tree: a pixel is in the border's background component at cut ``k`` when it is background and its leaf
    joins the frame's leaf at that cut.
    """
    b, h, w = u.shape
    tree = _hole_tree(u)
    n = (h + 2) * (w + 2)
    big = 1 << 20
    frame_leaf = tree.leaf.view(b, n)[:, 0]  # the corner pixel belongs to the frame's leaf
    num_nodes = tree.parent.numel()
    # t[x]: node x's content is joined to the frame at the cuts k' < t[x] (of the tree of 255 − u).
    t = torch.zeros(num_nodes, dtype=torch.int64, device=u.device)
    on_chain = torch.zeros(num_nodes, dtype=torch.bool, device=u.device)
    cur = frame_leaf
    acc = torch.full_like(cur, big)
    while cur.numel() > 0:  # climbs O(log) tree levels
        t[cur] = acc
        on_chain[cur] = True
        par = tree.parent[cur]
        keep = par >= 0
        acc = torch.minimum(acc, tree.cut[cur])[keep]
        cur = par[keep]
    for r in range(len(tree.bounds) - 2, -1, -1):
        lo, hi = tree.bounds[r], tree.bounds[r + 1]
        par = tree.parent[lo:hi]
        sel = (par >= 0) & ~on_chain[lo:hi]
        joined = torch.minimum(tree.cut[lo:hi], t[par.clamp(min=0)])
        t[lo:hi] = torch.where(sel, joined, t[lo:hi])
    tl = t[tree.leaf].view(b, h + 2, w + 2)[:, 1:-1, 1:-1].clamp(max=255)
    return torch.maximum(u, 255 - tl)


def _largest_entries(u: Tensor) -> _Entries:
    """The largest contour's box (MaxBoxAcc v1) at every cut with foreground of ``u`` (B, H, W) int64."""
    b, h, w = u.shape
    n = h * w
    e = _filled_levels(u)
    tree = _trees.build_tree(e, 8, 255)
    xs, ys = _pixel_coords(b, h, w, u.device)
    idx = torch.arange(n, device=u.device).repeat(b)
    vals = torch.stack([-xs, -ys, xs, ys, -idx], 1).to(torch.int32)
    tab = _trees.node_tables(tree, vals, tree.level, "amax", -(2**31))
    # area terms of the 2×2 blocks, in half pixels: 2 at cuts below the smallest corner, 1 below the second.
    area = torch.zeros(tree.parent.numel(), NUM_CUTS, 1, dtype=torch.int32, device=u.device)
    if h > 1 and w > 1:
        key = e * n + idx.view(b, h, w)
        corners = torch.stack([key[:, :-1, :-1], key[:, :-1, 1:], key[:, 1:, :-1], key[:, 1:, 1:]], -1)
        anchor = corners.amax(-1) % n + torch.arange(b, device=u.device).view(b, 1, 1) * n
        ev = torch.sort(torch.div(corners, n, rounding_mode="floor"), -1).values
        leaf = tree.leaf[anchor.reshape(-1)]
        rows_leaf = torch.cat([leaf, leaf])
        rows_level = torch.cat([ev[..., 0].reshape(-1), ev[..., 1].reshape(-1)])
        ones = torch.ones(rows_leaf.numel(), 1, dtype=torch.int32, device=u.device)
        area = _trees.leaf_node_tables(tree, rows_leaf, ones, rows_level, "sum", 0)
    node, k = _entries_from_tables(tree, tab, tab[:, :, 2] >= 0)
    t = tab[node, k].to(torch.int64)
    image = tree.image[node]
    score = area[node, k, 0].to(torch.int64) * n - t[:, 4]  # area first, then the later first pixel
    group = image * NUM_CUTS + k
    best = torch.full((b * NUM_CUTS,), -1, dtype=torch.int64, device=u.device)
    best.scatter_reduce_(0, group, score, "amax")
    win = score == best[group]
    t = t[win]
    boxes = _clip_boxes(-t[:, 0], -t[:, 1], t[:, 2] + 1, t[:, 3] + 1, h, w)
    return _Entries(image[win], k[win], boxes, torch.zeros(boxes.shape[0], dtype=torch.bool, device=u.device))


def contour_entries(u8: Tensor, *, largest_only: bool) -> _Entries:
    """Boxes of every contour (or only the largest) at every cut ``0..254`` of ``u8`` (B, H, W) uint8.

    Cuts without foreground get no row. Rows are unsorted.
    """
    u = u8.to(torch.int64)
    if largest_only:
        return _largest_entries(u)
    outer = _outer_entries(u)
    holes = _hole_entries(u)
    return _Entries(*(torch.cat([x, y]) for x, y in zip(outer, holes)))


def contour_boxes(maps_u8: Tensor, cuts: Tensor, *, largest_only: bool) -> ContourBoxes:
    """Protocol "wsoleval": the boxes of ``cv2.findContours(RETR_TREE)`` on ``{u8 > k}``, for many cuts.

    For every image ``b`` and cut ``k = cuts[b, c]``, the boxes of all contours of the binary image
    ``u8[b] > k`` (outer and hole contours, MaxBoxAccV2), or only the box of the contour with the largest
    ``cv2.contourArea``, ties to the first in OpenCV's order (MaxBoxAcc). See the module docstring for the
    exact conventions. All images and cuts are computed together.

    Args:
        maps_u8: ``(B, H, W)`` or ``(B, 1, H, W)`` uint8 images.
        cuts: ``(C,)`` cuts shared by all images or ``(B, C)`` per image, integers in ``[0, 255]``.
        largest_only: keep only the largest contour of each cut.

    Returns:
        A :class:`ContourBoxes`, rows sorted by ``(batch, cut)``.

    Raises:
        TypeError: ``maps_u8`` is not uint8 or ``cuts`` not integer.
        ValueError: wrong shapes, or a cut outside ``[0, 255]``.

    Example:
        >>> import torch
        >>> u8 = torch.zeros(1, 5, 5, dtype=torch.uint8)
        >>> u8[0, 1:4, 1:4] = 200
        >>> u8[0, 2, 2] = 0  # a ring with a one-pixel hole
        >>> out = contour_boxes(u8, torch.tensor([0, 200]), largest_only=False)
        >>> out.boxes.tolist(), out.cut.tolist(), out.hole.tolist()
        ([[1, 1, 4, 4], [1, 1, 4, 4], [0, 0, 0, 0]], [0, 0, 1], [False, True, False])
    """
    if not isinstance(maps_u8, Tensor) or maps_u8.dtype != torch.uint8:
        raise TypeError(
            f"maps_u8 must be a uint8 torch.Tensor, got {getattr(maps_u8, 'dtype', type(maps_u8).__name__)}"
        )
    if maps_u8.dim() == 4 and maps_u8.shape[1] == 1:
        maps_u8 = maps_u8[:, 0]
    if maps_u8.dim() != 3 or maps_u8.shape[1] == 0 or maps_u8.shape[2] == 0:
        raise ValueError(
            f"maps_u8 must have shape (B, H, W) or (B, 1, H, W), got shape {tuple(maps_u8.shape)}"
        )
    if (
        not isinstance(cuts, Tensor)
        or cuts.is_floating_point()
        or cuts.is_complex()
        or cuts.dtype == torch.bool
    ):
        raise TypeError(
            f"cuts must be an integer torch.Tensor, got {getattr(cuts, 'dtype', type(cuts).__name__)}"
        )
    b = maps_u8.shape[0]
    if cuts.dim() == 1:
        cuts = cuts.view(1, -1).expand(b, -1)
    if cuts.dim() != 2 or cuts.shape[0] != b:
        raise ValueError(f"cuts must have shape (C,) or (B, C) = ({b}, C), got shape {tuple(cuts.shape)}")
    cuts = cuts.to(device=maps_u8.device, dtype=torch.int64)
    if cuts.numel() and bool(((cuts < 0) | (cuts > 255)).any()):
        raise ValueError("cuts must be in [0, 255]")
    ent = contour_entries(maps_u8, largest_only=largest_only)
    device = maps_u8.device
    c = cuts.shape[1]
    group = ent.image * 256 + ent.cut
    order = torch.argsort(group, stable=True)
    group = group[order]
    count = torch.bincount(group, minlength=b * 256)
    start = torch.cumsum(count, 0) - count
    want = (torch.arange(b, device=device).view(b, 1) * 256 + cuts).reshape(-1)
    have = count[want]
    rep = have.clamp(min=1)
    req = torch.repeat_interleave(torch.arange(b * c, device=device), rep)
    offset = torch.arange(req.numel(), device=device) - (torch.cumsum(rep, 0) - rep)[req]
    src = start[want][req] + offset
    valid = have[req] > 0
    if group.numel():
        src = src.clamp(max=group.numel() - 1)
        boxes = torch.where(valid.view(-1, 1), ent.boxes[order][src], 0)
        hole = valid & ent.hole[order][src]
    else:
        boxes = torch.zeros(req.numel(), 4, dtype=torch.int64, device=device)
        hole = torch.zeros(req.numel(), dtype=torch.bool, device=device)
    return ContourBoxes(boxes, torch.div(req, c, rounding_mode="floor"), req % c, hole)
