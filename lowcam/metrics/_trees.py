"""Component trees of integer images for every cut at once, with tensor operations only.

For an integer image ``u`` and a cut ``k``, the foreground ``{u > k}`` splits into connected components (4- or
8-connected). lowcam needs, for every image of a batch and every cut ``k`` of an 8-bit image (up to 255 of
them), each component's bounding box, first pixel in raster order and area. Labelling each cut's binary image
separately costs ``O(H·W·cuts)``; instead this module builds one tree per image in ``O(H·W·log)`` tensor work
and reads every cut's components from it.

The construction, all of it batched over images (node ids are global across the batch):

1. **Ascent.** Every pixel points to the neighbour (or itself) with the largest key ``u·H·W + raster index``.
   Keys strictly increase along the pointers, so a pixel's pointer path stays inside ``{u ≥ u_p}``: at every
   cut where a pixel is foreground it is connected to the end of its path, a local maximum. Pointer jumping
   finds that end; pixels with the same end form a *leaf* (a "basin").
2. **Borůvka.** Leaves are joined by the edges between neighbouring pixels of different leaves, an edge
   weighing ``min(u_p, u_q)`` (it connects the two leaves at the cuts ``k < weight``). Each round, every node
   hooks onto its heaviest edge (ties broken by edge id, so that hooks form trees whose only cycles are
   mutual pairs); each tree becomes a node of the next round. A node ``x`` that hooked with weight
   ``cut[x]`` is part of its parent's component exactly at the cuts ``k < cut[x]``: along a tree the hook
   weights never decrease towards its root, so at any cut the members that hooked with a weight above the cut
   form one connected core, and every other member has no edge above the cut at all. Rounds at most halve
   the number of nodes, so the tree has ``O(log H·W)`` levels.

A component at cut ``k`` is then a node ``x`` with ``cut[x] ≤ k`` (roots have ``cut = 0``), holding the
foreground pixels of the leaves reached from ``x`` through children with ``cut > k``. Per-node tables over
all cuts (:func:`node_tables`) aggregate pixel attributes (boxes, first pixel, area terms) bottom-up, one
tree level at a time.

The loops here run over pointer-jumping steps and Borůvka rounds (``O(log H·W)`` of each); their bounds
depend on the data, so each step synchronises once with the device to test for convergence.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ComponentTree", "build_tree", "leaf_node_tables", "node_tables"]

_OFFSETS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((0, 1), (1, 0)),
    8: ((0, 1), (1, 0), (1, 1), (1, -1)),
}


class ComponentTree(NamedTuple):
    """The component trees of a batch of integer images (see the module docstring).

    Attributes:
        leaf: ``(B·H·W,)`` int64, the leaf node of every pixel (row-major, image after image).
        level: ``(B·H·W,)`` int64, the pixels' values.
        parent: ``(N,)`` int64, every node's parent, ``-1`` for roots.
        cut: ``(N,)`` int64, a node belongs to its parent's component at the cuts ``k < cut``; 0 for roots.
        image: ``(N,)`` int64, the image of every node.
        bounds: node ids of round ``r`` are ``bounds[r] <= id < bounds[r + 1]``; round 0 are the leaves.
        max_level: the largest value the images may hold (the tables cover the cuts ``0..max_level - 1``).
    """

    leaf: Tensor
    level: Tensor
    parent: Tensor
    cut: Tensor
    image: Tensor
    bounds: list[int]
    max_level: int


def _jump(ptr: Tensor) -> Tensor:
    """Follow pointers to their fixed points (pointer jumping); ``ptr`` must be a forest of self-loops."""
    while True:
        # three doublings per convergence test: a gather is cheaper than the test (a full compare and a sync)
        ptr = ptr.index_select(0, ptr)
        ptr = ptr.index_select(0, ptr)
        nxt = ptr.index_select(0, ptr)
        if torch.equal(nxt, ptr):  # the loop bound depends on the data
            return ptr
        ptr = nxt


def _neighbourhood_max(key: Tensor, connectivity: int, exact_f32: bool) -> Tensor:
    """Max of ``key`` over each pixel's closed 4- or 8-neighbourhood, ``(B, H, W)`` int64 in and out."""
    kf = key.to(torch.float32 if exact_f32 else torch.float64).unsqueeze(1)
    if connectivity == 8:
        out = F.max_pool2d(kf, 3, stride=1, padding=1)
    else:
        out = torch.maximum(
            F.max_pool2d(kf, (1, 3), stride=1, padding=(0, 1)),
            F.max_pool2d(kf, (3, 1), stride=1, padding=(1, 0)),
        )
    return out.squeeze(1).to(torch.int64)


def _pairs(grid: Tensor, dy: int, dx: int) -> tuple[Tensor, Tensor]:
    """Views of ``grid`` (B, H, W) at ``p`` and at ``p + (dy, dx)`` for all pixel pairs inside the image."""
    h, w = grid.shape[1], grid.shape[2]
    a = grid[:, : h - dy, max(0, -dx) : w - max(0, dx)]
    b = grid[:, dy:, max(0, dx) : w - max(0, -dx)]
    return a, b


def build_tree(levels: Tensor, connectivity: int, max_level: int) -> ComponentTree:
    """Build the component trees of ``levels`` for the cuts ``{levels > k}``.

    Args:
        levels: ``(B, H, W)`` int64 in ``[0, max_level]``.
        connectivity: 4 or 8.
        max_level: an upper bound of ``levels`` (a Python int).

    Returns:
        The :class:`ComponentTree`.

    Example:
        >>> import torch
        >>> u = torch.tensor([[[3, 0, 2]]])
        >>> tree = build_tree(u, 8, 3)
        >>> tree.leaf.tolist(), tree.parent.tolist()  # two maxima, never connected (the edges weigh 0)
        ([0, 0, 1], [-1, -1])
    """
    b, h, w = levels.shape
    n = h * w
    device = levels.device
    local = torch.arange(n, device=device, dtype=torch.int64).view(1, h, w)
    key = levels * n + local
    exact_f32 = (max_level + 1) * n < 2**24
    ptr = _neighbourhood_max(key, connectivity, exact_f32) % n
    ptr = (ptr.view(b, n) + torch.arange(b, device=device).view(b, 1) * n).view(-1)
    root = _jump(ptr)
    flat = torch.arange(b * n, device=device)
    is_root = root == flat
    rank = torch.cumsum(is_root, 0) - 1
    leaf = rank.index_select(0, root)
    num_leaves = int(rank[-1]) + 1 if rank.numel() else 0
    leaf_image = torch.div(flat[is_root], n, rounding_mode="floor")

    leaf_grid = leaf.view(b, h, w)
    flat_levels = levels.reshape(-1)
    ep: list[Tensor] = []
    eq: list[Tensor] = []
    for dy, dx in _OFFSETS[connectivity]:
        la, lb = _pairs(leaf_grid, dy, dx)
        va, vb = _pairs(levels, dy, dx)
        keep = (la != lb) & (va > 0) & (vb > 0)
        bi, yi, xi = keep.nonzero(as_tuple=True)
        p = bi * n + yi * w + (xi + max(0, -dx))
        ep.append(p)
        eq.append(p + (dy * w + dx))
    pa, pb = torch.cat(ep), torch.cat(eq)
    weight = torch.minimum(flat_levels.index_select(0, pa), flat_levels.index_select(0, pb))
    ea, eb = leaf.index_select(0, pa), leaf.index_select(0, pb)
    parent, cut, image, bounds = _boruvka(num_leaves, ea, eb, weight, leaf_image)
    return ComponentTree(leaf, flat_levels, parent, cut, image, bounds, max_level)


def _boruvka(
    num_leaves: int, a: Tensor, b: Tensor, weight: Tensor, leaf_image: Tensor
) -> tuple[Tensor, Tensor, Tensor, list[int]]:
    """Borůvka rounds on the leaf graph; returns parent, cut, image per node and the round bounds."""
    device = a.device
    parents: list[Tensor] = []
    cuts: list[Tensor] = []
    images = [leaf_image]
    bounds = [0, num_leaves]
    base, count = 0, num_leaves
    cur_image = leaf_image
    while a.numel() > 0:
        num_edges = a.numel()
        al, bl = a - base, b - base
        key = weight * num_edges + torch.arange(num_edges, device=device)
        best = torch.full((count,), -1, dtype=torch.int64, device=device)
        best.scatter_reduce_(0, al, key, "amax")
        best.scatter_reduce_(0, bl, key, "amax")
        has = best >= 0
        edge = best.clamp(min=0) % num_edges
        nodes = torch.arange(count, device=device)
        ae, be = al.index_select(0, edge), bl.index_select(0, edge)
        hook = torch.where(has, torch.where(ae == nodes, be, ae), nodes)
        mutual = (hook.index_select(0, hook) == nodes) & (nodes < hook)
        hook = torch.where(mutual, nodes, hook)
        root = _jump(hook)
        is_root = has & (root == nodes)
        new_local = torch.cumsum(is_root, 0) - 1
        new_count = int(new_local[-1]) + 1
        parents.append(torch.where(has, base + count + new_local.index_select(0, root), -1))
        cuts.append(torch.where(has, torch.div(best, num_edges, rounding_mode="floor"), 0))
        cur_image = cur_image[is_root]
        images.append(cur_image)
        root_new = new_local.index_select(0, root)
        ra, rb = root_new.index_select(0, al), root_new.index_select(0, bl)
        keep = ra != rb
        base += count
        a, b, weight = ra[keep] + base, rb[keep] + base, weight[keep]
        count = new_count
        bounds.append(base + count)
    parents.append(torch.full((count,), -1, dtype=torch.int64, device=device))
    cuts.append(torch.zeros(count, dtype=torch.int64, device=device))
    return torch.cat(parents), torch.cat(cuts), torch.cat(images), bounds


def node_tables(
    tree: ComponentTree,
    values: Tensor,
    levels: Tensor,
    reduce: Literal["amax", "sum"],
    neutral: int,
) -> Tensor:
    """Aggregate per-pixel values over every node's component at every cut.

    ``values[i]`` counts at the cuts ``k < levels[i]`` (for pixels, ``levels`` is the pixel's value; an area
    term may end earlier), in the component of the leaf ``tree.leaf[pixel[i]]``.

    Args:
        tree: the :class:`ComponentTree`.
        values: ``(P, C)`` integer, one row per pixel of the tree (same order as ``tree.leaf``); rows that
            are not pixels (e.g. area terms of pixel blocks) go through :func:`leaf_node_tables`.
        levels: ``(P,)`` int64, the exclusive upper cut of each row, in ``[0, max_level]``.
        reduce: ``"amax"`` or ``"sum"``.
        neutral: the value of an empty aggregate (``-2**15`` for ``amax``, 0 for ``sum``).

    Returns:
        ``(N, K, C)`` with ``K = max_level``: the aggregate of node ``x``'s component at cut ``k`` (meaningful
        where ``x`` is a component at ``k``, that is ``k >= cut[x]``).

    Example:
        >>> import torch
        >>> u = torch.tensor([[[2, 0, 1]]])
        >>> tree = build_tree(u, 8, 2)
        >>> ones = torch.ones(3, 1, dtype=torch.int32)
        >>> node_tables(tree, ones, tree.level, "sum", 0)[:, :, 0].tolist()  # pixels per leaf at k = 0, 1
        [[1, 1], [1, 0]]
    """
    return leaf_node_tables(tree, tree.leaf, values, levels, reduce, neutral)


def leaf_node_tables(
    tree: ComponentTree,
    leaf: Tensor,
    values: Tensor,
    levels: Tensor,
    reduce: Literal["amax", "sum"],
    neutral: int,
) -> Tensor:
    """:func:`node_tables` with an explicit leaf per row (rows need not be pixels)."""
    num_nodes = tree.parent.numel()
    num_leaves = tree.bounds[1]
    lv = tree.max_level + 1
    cols = values.shape[1]
    table = torch.full((cols, num_leaves * lv), neutral, dtype=values.dtype, device=values.device)
    index = leaf * lv + levels
    for c in range(cols):  # a handful of attribute columns
        if reduce == "sum":
            table[c].index_add_(0, index, values[:, c])
        else:
            table[c].scatter_reduce_(0, index, values[:, c], "amax")
    table = table.view(cols, num_leaves, lv).permute(1, 2, 0).flip(1)
    table = torch.cumsum(table, 1, dtype=values.dtype) if reduce == "sum" else torch.cummax(table, 1).values
    # entry v of the flipped scan covers levels > max_level - v; cut k needs levels > k.
    leaf_tab = table.flip(1)[:, 1:]
    k = tree.max_level
    out = torch.full((num_nodes, k, cols), neutral, dtype=values.dtype, device=values.device)
    out[:num_leaves] = leaf_tab
    cuts = torch.arange(k, device=values.device)
    for r in range(len(tree.bounds) - 2):
        lo, hi = tree.bounds[r], tree.bounds[r + 1]
        par = tree.parent[lo:hi]
        has = par >= 0
        child = torch.arange(lo, hi, device=values.device)[has]
        par = par[has]
        src = out.index_select(0, child)
        inside = (cuts.view(1, k) < tree.cut.index_select(0, child).view(-1, 1)).unsqueeze(2)
        src = torch.where(inside, src, torch.full_like(src, neutral))
        if reduce == "sum":
            out.index_add_(0, par, src)
        else:
            out.index_reduce_(0, par, src, "amax")
    return out
