"""The contour engine of the "wsoleval" protocols: the boxes of OpenCV's contours, for every cut at once.

MaxBoxAcc and MaxBoxAccV2 take its boxes from ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` on the binary
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

All cuts of a batch are handled at once from one component tree per image and kind (see ``_trees``). Each
level component of a tree is a contour's box on an interval of cuts ``lo <= k < hi`` (its pixel set, so its
box, is the same there), so boxes come as ``(box, interval)`` rows (``_contour_intervals``): a map yields
``O(H·W)`` of them, not one per (component, cut). :func:`contour_boxes` expands them to one row per cut;
``MaxBoxAcc`` never does (a difference array over the cuts counts the matching boxes alive at each cut).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lowcam._checks import check_batch_of_maps
from lowcam.metrics import _trees

__all__ = ["ContourBoxes", "contour_boxes"]

_NEUTRAL = -(2**15)
_NUM_CUTS = 255  # cuts 0..254 of an 8-bit image; {u8 > 255} is always empty


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


class _ContourIntervals(NamedTuple):
    """Contour boxes with the cuts where each is a contour's box (``_contour_intervals``).

    Attributes:
        image: ``(E,)`` int64, the image of each box.
        lo: ``(E,)`` int64, the first cut where the box is a contour's box.
        hi: ``(E,)`` int64, one past the last such cut (``lo <= k < hi``).
        boxes: ``(E, 4)`` int64 ``(x0, y0, x1, y1)``, the reference's clipped ``boundingRect``.
        hole: ``(E,)`` bool, whether the box comes from a hole contour.
    """

    image: Tensor
    lo: Tensor
    hi: Tensor
    boxes: Tensor
    hole: Tensor


class _Entries(NamedTuple):
    """Boxes at every cut ``0..254``, unsorted: image, cut, box, hole flag."""

    image: Tensor
    cut: Tensor
    boxes: Tensor
    hole: Tensor


@functools.lru_cache(maxsize=8)
def _pixel_rows(kind: str, h: int, w: int, device: torch.device) -> Tensor:
    """Per-pixel int32 rows ``(H·W, C)`` whose column maxima over a set of pixels describe it.

    ``"box"``: ``(-x, -y, x, y)``, the box; ``"first"``: ``(-x, x, y, -(y·W + x))``, the box and the first pixel
    in raster order (whose row is the box's top). They depend on the shape only: cached (read-only).
    """
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    cols = [-xs, -ys, xs, ys] if kind == "box" else [-xs, xs, ys, -(ys * w + xs)]
    return torch.stack(cols, -1).to(torch.int32).view(h * w, len(cols))


@functools.lru_cache(maxsize=2)
def _pixel_values(kind: str, b: int, h: int, w: int, device: torch.device) -> Tensor:
    """:func:`_pixel_rows` repeated for a ``(B, H, W)`` batch, ``(B·H·W, C)``: cached for the chunk size and
    the last, shorter chunk of a split (two entries, so the memory held stays that of two chunks)."""
    return _pixel_rows(kind, h, w, device).repeat(b, 1)


def _clip_boxes(x0: Tensor, y0: Tensor, xe: Tensor, ye: Tensor, h: int, w: int) -> Tensor:
    """``[x0, y0, min(xe, W − 1), min(ye, H − 1)]`` as ``(E, 4)`` int64."""
    return torch.stack([x0, y0, xe.clamp(max=w - 1), ye.clamp(max=h - 1)], 1).to(torch.int64)


def _outer_intervals(u: Tensor) -> _ContourIntervals:
    """Outer-contour boxes of ``u`` (B, H, W) int64 in ``[0, 255]``: one row per level component."""
    b, h, w = u.shape
    mt = _trees.max_tree(_trees.build_tree(u, 8, 255))
    t = _trees.subtree_reduce(mt, mt.pixel_node, _pixel_values("box", b, h, w, u.device), "amax", _NEUTRAL)
    boxes = _clip_boxes(-t[:, 0], -t[:, 1], t[:, 2] + 1, t[:, 3] + 1, h, w)
    return _ContourIntervals(mt.image, mt.lo, mt.level, boxes, torch.zeros_like(mt.lo, dtype=torch.bool))


def _hole_tree(u: Tensor) -> _trees.ComponentTree:
    """Component tree of the background ``{u ≤ k}`` (4-connected), framed by a ring that is always background.

    Works on ``255 − u`` padded with the value 255 (background at every cut ``k' <= 254``), whose cut
    ``k' = 254 − k`` is the background at ``k``.
    """
    up = F.pad(255 - u, (1, 1, 1, 1), value=255)
    return _trees.build_tree(up, 4, 255)


def _hole_intervals(u: Tensor) -> _ContourIntervals:
    """Hole-contour boxes of ``u`` (B, H, W) int64 in ``[0, 255]``: one row per level component of the
    background that does not hold the frame.

    A background node alive at the cuts ``lo' <= k' < level'`` of ``255 − u`` is alive at the cuts
    ``255 − level' <= k < 255 − lo'`` of ``u``.
    """
    b, h, w = u.shape
    n = (h + 2) * (w + 2)
    mt = _trees.max_tree(_hole_tree(u))
    # the nodes holding the frame: the frame's own node (that of each image's corner pixel) and its ancestors
    corner = mt.pixel_node.view(b, n)[:, 0]
    framed = _trees.subtree_reduce(mt, corner, None, "sum", 0)[:, 0] > 0
    # only pixels whose own node is a hole can be in a hole: the others' nodes and ancestors all hold the frame
    node = mt.pixel_node
    inside = ((node >= 0) & ~framed.index_select(0, node.clamp(min=0))).nonzero().view(-1)
    vals = _pixel_rows("box", h + 2, w + 2, u.device).index_select(0, inside % n)
    t = _trees.subtree_reduce(mt, node.index_select(0, inside), vals, "amax", _NEUTRAL)
    keep = (~framed).nonzero().view(-1)
    t = t.index_select(0, keep)
    # padded coordinates are one more than the image's; the contour runs one pixel outside the hole
    boxes = _clip_boxes(-t[:, 0] - 2, -t[:, 1] - 2, t[:, 2] + 1, t[:, 3] + 1, h, w)
    lo = _NUM_CUTS - mt.level.index_select(0, keep)
    hi = _NUM_CUTS - mt.lo.index_select(0, keep)
    return _ContourIntervals(
        mt.image.index_select(0, keep), lo, hi, boxes, torch.ones_like(lo, dtype=torch.bool)
    )


def _has_holes(u8: Tensor, outer: _ContourIntervals) -> Tensor:
    """``(B,)`` bool: whether ``u8`` (B, H, W) has a hole (a 4-connected background component off the border)
    at some cut, exactly, from Euler numbers.

    With 8-connected foreground and 4-connected background, the Euler number ``E(k) = #components − #holes``
    of ``{u > k}`` is ``(n1 − n3 − 2·nD) / 4`` over the 2×2 blocks of the image padded with background
    (``n1``, ``n3``: blocks with 1 or 3 foreground corners, ``nD``: 2 diagonal ones). A block with sorted
    corners ``v1 ≤ v2 ≤ v3 ≤ v4`` has 1 foreground corner at the cuts ``v3 <= k < v4``, 3 at
    ``v1 <= k < v2`` and 2 diagonal ones at ``v2 <= k < v3`` when its two largest corners are diagonal, so
    the sum of ``4·E(k)`` over all cuts is, per block, ``v4 − v3 − v2 + v1 − 2·max(0, x − y)`` with
    ``x = max(min(a, d), min(b, c))``, ``y = min(max(a, d), max(b, c))`` (``a d`` and ``b c`` the diagonals:
    ``x > y`` when one diagonal lies above the other), which is ``a + b + c + d − 2·x − 2·max(x, y)``. Every
    pixel is a corner of 4 blocks, so ``Σ_k 4·E(k) = 4·Σ u − 2·Σ_blocks (x + max(x, y))``. The number of
    components summed over the cuts is the total length of the outer contours' intervals, and the image has
    no hole at any cut exactly when the two sums agree (``#holes ≥ 0`` at every cut).
    """
    b = u8.shape[0]
    p = F.pad(u8.to(torch.int16), (1, 1, 1, 1))
    a, bb, c, d = p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]
    x = torch.maximum(torch.minimum(a, d), torch.minimum(bb, c))
    y = torch.minimum(torch.maximum(a, d), torch.maximum(bb, c))
    y = torch.maximum(x, y).add_(x)
    euler4 = 4 * u8.reshape(b, -1).sum(1, dtype=torch.int64) - 2 * y.view(b, -1).sum(1, dtype=torch.int64)
    comps = torch.zeros(b, dtype=torch.int64, device=u8.device)
    comps.index_add_(0, outer.image, outer.hi - outer.lo)
    return 4 * comps != euler4


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
    # one climb step per tree level, the same number for every image (no sync): an image whose climb has
    # reached its root stays there and writes the same values again
    for _ in range(len(tree.bounds) - 1):
        t[cur] = acc
        on_chain[cur] = True
        par = tree.parent[cur]
        up = par >= 0
        acc = torch.where(up, torch.minimum(acc, tree.cut[cur]), acc)
        cur = torch.where(up, par, cur)
    for r in range(len(tree.bounds) - 2, -1, -1):
        lo, hi = tree.bounds[r], tree.bounds[r + 1]
        par = tree.parent[lo:hi]
        sel = (par >= 0) & ~on_chain[lo:hi]
        joined = torch.minimum(tree.cut[lo:hi], t[par.clamp(min=0)])
        t[lo:hi] = torch.where(sel, joined, t[lo:hi])
    tl = t[tree.leaf].view(b, h + 2, w + 2)[:, 1:-1, 1:-1].clamp(max=255)
    return torch.maximum(u, 255 - tl)


def _expand(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """``(row, k)`` for every row ``i`` and every ``lo[i] <= k < hi[i]``."""
    width = hi - lo
    row = torch.repeat_interleave(torch.arange(width.numel(), device=lo.device), width)
    start = torch.cumsum(width, 0) - width
    k = lo.index_select(0, row) + torch.arange(row.numel(), device=lo.device) - start.index_select(0, row)
    return row, k


def _largest_intervals(u: Tensor) -> _ContourIntervals:
    """The largest contour's box (MaxBoxAcc v1) at every cut with foreground of ``u`` (B, H, W) int64.

    The candidates are the level components of the hole-filled levels ``e``; one row per ``(image, cut)``,
    each alive at that cut only.
    """
    b, h, w = u.shape
    n = h * w
    e = _filled_levels(u)
    mt = _trees.max_tree(_trees.build_tree(e, 8, 255))
    vals = _pixel_values("first", b, h, w, u.device)
    t = _trees.subtree_reduce(mt, mt.pixel_node, vals, "amax", -(2**31))
    # area terms of the 2×2 blocks, in half pixels: a block counts 2 at the cuts below its smallest corner and
    # 1 more below its second smallest; the node of that corner's own pixel and its ancestors are exactly the
    # components holding the block at those cuts.
    area = torch.zeros(mt.level.numel(), 1, dtype=torch.int64, device=u.device)
    if h > 1 and w > 1:
        total = b * n
        bits = max(1, (total - 1).bit_length())  # keys: value, then the pixel's index in the low bits
        key = (e << bits) | torch.arange(total, device=u.device).view(b, h, w)
        k00, k01, k10, k11 = key[:, :-1, :-1], key[:, :-1, 1:], key[:, 1:, :-1], key[:, 1:, 1:]
        p, q = torch.minimum(k00, k01), torch.maximum(k00, k01)
        r, s = torch.minimum(k10, k11), torch.maximum(k10, k11)
        smallest = torch.minimum(p, r)
        second = torch.minimum(torch.maximum(p, r), torch.minimum(q, s))
        pixel = torch.stack([smallest, second]).view(-1) & ((1 << bits) - 1)
        area = _trees.subtree_reduce(mt, mt.pixel_node.index_select(0, pixel), None, "sum", 0)
    node, k = _expand(mt.lo, mt.level)
    image = mt.image.index_select(0, node)
    score = area[:, 0] * n - t[:, 3]  # area first, then the later first pixel
    score = score.index_select(0, node)
    group = image * _NUM_CUTS + k
    best = torch.full((b * _NUM_CUTS,), -1, dtype=torch.int64, device=u.device)
    best.scatter_reduce_(0, group, score, "amax")
    win = (score == best.index_select(0, group)).nonzero().view(-1)
    node, k = node.index_select(0, win), k.index_select(0, win)
    t = t.index_select(0, node)
    y0 = torch.div(-t[:, 3], w, rounding_mode="floor")  # the first pixel's row
    boxes = _clip_boxes(-t[:, 0], y0, t[:, 1] + 1, t[:, 2] + 1, h, w)
    return _ContourIntervals(
        image.index_select(0, win), k, k + 1, boxes, torch.zeros_like(k, dtype=torch.bool)
    )


def _contour_intervals(u8: Tensor, *, largest_only: bool) -> _ContourIntervals:
    """Boxes of every contour (or only the largest) of ``u8`` (B, H, W) uint8, each with its alive cuts.

    A row's box is a contour's box at every cut ``lo <= k < hi`` (within ``0..254``); at each cut, the rows
    alive are exactly that cut's contours. Cuts without foreground have no row. Rows are unsorted. Any strides
    (e.g. ``maps.mT``) and ``B = 0`` are accepted.
    """
    if u8.shape[0] == 0:
        none = torch.zeros(0, dtype=torch.int64, device=u8.device)
        return _ContourIntervals(none, none, none, none.view(0, 1).expand(0, 4), none.to(torch.bool))
    u8 = u8.contiguous()  # the trees index pixels in raster order
    u = u8.to(torch.int64)
    if largest_only:
        return _largest_intervals(u)
    outer = _outer_intervals(u)
    # the hole tree is built only for the images that have a hole at some cut (few smooth maps do)
    holed = _has_holes(u8, outer).nonzero().view(-1)
    if holed.numel() == 0:
        return outer
    if holed.numel() == u.shape[0]:
        holes = _hole_intervals(u)
    else:
        holes = _hole_intervals(u.index_select(0, holed))
        holes = holes._replace(image=holed.index_select(0, holes.image))
    return _ContourIntervals(*(torch.cat([x, y]) for x, y in zip(outer, holes)))


def _contour_entries(u8: Tensor, *, largest_only: bool) -> _Entries:
    """Boxes of every contour (or only the largest) at every cut ``0..254`` of ``u8`` (B, H, W) uint8.

    ``_contour_intervals`` with every row repeated at each cut of its interval. Rows are unsorted.
    """
    iv = _contour_intervals(u8, largest_only=largest_only)
    row, k = _expand(iv.lo, iv.hi)
    image, boxes, hole = (x.index_select(0, row) for x in (iv.image, iv.boxes, iv.hole))
    return _Entries(image, k, boxes, hole)


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
    maps_u8 = check_batch_of_maps("maps_u8", maps_u8, dtype="uint8", allow_empty_batch=True)
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
    ent = _contour_entries(maps_u8, largest_only=largest_only)
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
