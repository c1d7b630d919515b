"""Component trees of integer images for every cut at once, with tensor operations only.

For an integer image ``u`` and a cut ``k``, the foreground ``{u > k}`` splits into connected components (4- or
8-connected). lowcam needs, for every image of a batch and every cut ``k`` of an 8-bit image (up to 255 of
them), each component's bounding box, first pixel in raster order and area. Labelling each cut's binary image
separately costs ``O(H·W·cuts)``; instead this module builds one tree per image in ``O(H·W·log)`` tensor work
and reads every cut's components from it.

The construction, all of it batched over images (node ids are global across the batch):

1. **Ascent.** Every pixel points to the neighbour (or itself) with the largest key: ``u``, then the raster
   index (packed in the key's high and low bits).
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
foreground pixels of the leaves reached from ``x`` through children with ``cut > k``.

3. **Level components** (:func:`max_tree`). A component's pixel set changes only at the cuts where a pixel
   joins it, so every component of every cut is one *level component* ``(root, value)``, alive, with the
   same pixels, on an interval of cuts ``[lo, value)``: the canonical component tree ("max-tree"), with at
   most one node per pixel. Its nodes come from one climb per pixel (or per ``(leaf, value)`` pair) and one
   sort, and their attributes (boxes, first pixels, areas) from one scatter of the pixels' values and a
   suffix scan per chain of nodes (:func:`subtree_reduce`). Nothing is stored per (node, cut): the work is
   ``O(H·W)`` per map plus ``O(log)`` rounds, whatever the number of cuts.

The loops here run over pointer-jumping steps, Borůvka rounds and tree levels (``O(log H·W)`` of each);
their bounds depend on the data, so the steps synchronise with the device a few times each.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = ["ComponentTree", "MaxTree", "build_tree", "max_tree", "subtree_reduce"]

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
        max_level: the largest value the images may hold.
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


def _neighbourhood_max(key: Tensor, connectivity: int) -> Tensor:
    """Max of ``key`` (B, H, W) over each pixel's closed 4- or 8-neighbourhood (a separable max for 8)."""
    # in place on shifted views: out[p] = max(out[p], key[p ± 1]) along a row, then along a column
    rows = key.clone()
    torch.maximum(rows[:, :, 1:], key[:, :, :-1], out=rows[:, :, 1:])
    torch.maximum(rows[:, :, :-1], key[:, :, 1:], out=rows[:, :, :-1])
    src = rows if connectivity == 8 else key
    out = rows.clone() if connectivity == 8 else rows
    torch.maximum(out[:, 1:], src[:, :-1], out=out[:, 1:])
    torch.maximum(out[:, :-1], src[:, 1:], out=out[:, :-1])
    return out


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
    total = b * n
    flat = torch.arange(total, device=device)
    # keys order pixels by value, then raster index (within an image, the order of the local index); the
    # index takes the low bits, so that masks and shifts (not divisions) take keys apart
    bits = max(1, (total - 1).bit_length())
    dtype = torch.int32 if (max_level + 1) << bits <= 2**31 else torch.int64
    key = (levels.to(dtype) << bits) | flat.view(b, h, w).to(dtype)
    # pointers in the keys' dtype: int32 halves the traffic of the jumps
    ptr = (_neighbourhood_max(key, connectivity) & ((1 << bits) - 1)).view(-1)
    root = _jump(ptr)
    is_root = root == flat.to(root.dtype)
    rank = torch.cumsum(is_root, 0) - 1
    leaf = rank.index_select(0, root)
    roots = is_root.nonzero().view(-1)
    num_leaves = roots.numel()
    leaf_image = torch.div(roots, n, rounding_mode="floor")

    # edges between neighbouring pixels of different leaves, both above 0: masks[o, b, y, x] for the pair
    # (y, x), (y + dy, x + dx) of offset o, found with one nonzero
    leaf_grid = leaf.view(b, h, w)
    flat_levels = levels.reshape(-1)
    positive = levels > 0
    offsets = _OFFSETS[connectivity]
    masks = torch.zeros(len(offsets), b, h, w, dtype=torch.bool, device=device)
    for o, (dy, dx) in enumerate(offsets):
        la, lb = _pairs(leaf_grid, dy, dx)
        pa, pb = _pairs(positive, dy, dx)
        m = masks[o, :, : h - dy, max(0, -dx) : w - max(0, dx)]
        torch.ne(la, lb, out=m)
        m &= pa
        m &= pb
    found = masks.view(-1).nonzero().view(-1)
    offset = torch.bucketize(found, torch.arange(1, len(offsets), device=device) * total, right=True)
    pa = found - offset * total
    delta = torch.tensor([dy * w + dx for dy, dx in offsets], device=device)
    pb = pa + delta.index_select(0, offset)
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
        ebits = max(1, (num_edges - 1).bit_length())
        key = (weight << ebits) | torch.arange(num_edges, device=device)
        best = torch.full((count,), -1, dtype=torch.int64, device=device)
        best.scatter_reduce_(0, al, key, "amax")
        best.scatter_reduce_(0, bl, key, "amax")
        has = best >= 0
        edge = best.clamp(min=0) & ((1 << ebits) - 1)
        nodes = torch.arange(count, device=device)
        ae, be = al.index_select(0, edge), bl.index_select(0, edge)
        hook = torch.where(has, torch.where(ae == nodes, be, ae), nodes)
        mutual = (hook.index_select(0, hook) == nodes) & (nodes < hook)
        hook = torch.where(mutual, nodes, hook)
        root = _jump(hook)
        is_root = has & (root == nodes)
        new_local = torch.cumsum(is_root, 0) - 1
        new_roots = is_root.nonzero().view(-1)  # one sync gives both the count and the roots' images
        new_count = new_roots.numel()
        parents.append(torch.where(has, base + count + new_local.index_select(0, root), -1))
        cuts.append(torch.where(has, best >> ebits, 0))
        cur_image = cur_image.index_select(0, new_roots)
        images.append(cur_image)
        root_new = new_local.index_select(0, root)
        ra, rb = root_new.index_select(0, al), root_new.index_select(0, bl)
        keep = (ra != rb).nonzero().view(-1)  # one sync for the three edge arrays
        base += count
        a = ra.index_select(0, keep) + base
        b = rb.index_select(0, keep) + base
        weight = weight.index_select(0, keep)
        count = new_count
        bounds.append(base + count)
    parents.append(torch.full((count,), -1, dtype=torch.int64, device=device))
    cuts.append(torch.zeros(count, dtype=torch.int64, device=device))
    return torch.cat(parents), torch.cat(cuts), torch.cat(images), bounds


class MaxTree(NamedTuple):
    """The canonical component trees ("max-trees") of a batch, derived from a :class:`ComponentTree`.

    A node is a *level component*: the pixels of one component of ``{u > k}`` at the largest cut where it
    holds a pixel of its smallest value ``level``. Its pixel set is the same at every cut of its alive interval
    ``lo <= k < level`` and changes at ``k = lo - 1`` (a merge or a new pixel). Every component of every cut
    is the alive node that holds it, exactly once.

    Attributes:
        pixel_node: ``(B·H·W,)`` int64, the node of every pixel (the level component of its own value), ``-1``
            for pixels of value 0 (never foreground).
        level: ``(M,)`` int64, every node's smallest pixel value.
        lo: ``(M,)`` int64, the first cut of every node's alive interval.
        image: ``(M,)`` int64, the image of every node.
        parent: ``(M,)`` int64, every node's parent (the next smaller level component holding it), ``-1`` for
            nodes alive down to cut 0.
        head: ``(M,)`` bool, whether the node starts a chain (see :func:`max_tree`).
        rounds: nodes of round ``r`` of the underlying tree are ``rounds[r] <= id < rounds[r + 1]``.
    """

    pixel_node: Tensor
    level: Tensor
    lo: Tensor
    image: Tensor
    parent: Tensor
    head: Tensor
    rounds: list[int]


def _climb(tree: ComponentTree, start: Tensor, k: Tensor) -> Tensor:
    """The component root of node ``start`` at cut ``k``: its first ancestor (or itself) with ``cut <= k``."""
    cur = start
    for _ in range(len(tree.bounds) - 2):  # the tree's height
        par = tree.parent.index_select(0, cur)
        move = (par >= 0) & (tree.cut.index_select(0, cur) > k)
        cur = torch.where(move, par, cur)
    return cur


def max_tree(tree: ComponentTree) -> MaxTree:
    """The level components of ``tree`` (see :class:`MaxTree`), with their alive intervals and parents.

    A pixel ``p`` of value ``u_p >= 1`` first becomes foreground at cut ``u_p - 1``, in the component whose root
    is ``a = climb(leaf(p), u_p - 1)``; the pair ``(a, u_p)`` names its level component, and all pixels with the
    same pair share it. For a fixed root ``a``, the nodes ``(a, ℓ)`` sorted by ``ℓ`` form a chain: between two
    consecutive levels nothing joins ``a``'s component (a merge at a level ``t`` puts a pixel of value ``t``
    into it, which would be a node ``(a, t)``), so each is the parent of the next. Below the chain's smallest
    level, ``a`` joins its parent's component at cut ``cut[a] - 1`` through an edge of weight ``cut[a]``, whose
    lower pixel has value ``cut[a]``: the chain's first node has the parent ``(climb(a, cut[a] - 1), cut[a])``
    and the alive interval ``[cut[a], ℓ)``; with ``cut[a] = 0`` it is alive down to cut 0 and has no parent.

    Nodes are numbered in the order of ``(a, ℓ)``, so that chains are contiguous and the chains of one round
    of the underlying tree form one slice (``rounds``), each round's parents lying in later rounds.

    Example:
        >>> import torch
        >>> u = torch.tensor([[[3, 1, 2]]])
        >>> mt = max_tree(build_tree(u, 8, 3))
        >>> mt.level.tolist(), mt.lo.tolist(), mt.parent.tolist()  # {3}, {2} on [1, 2), {3, 1, 2} on [0, 1)
        ([3, 2, 1], [1, 1, 0], [2, 2, -1])
    """
    bits = max(1, tree.max_level.bit_length())  # (node, value) pairs are node << bits | value
    span = 1 << bits
    device = tree.level.device
    num_leaves = tree.bounds[1]
    pair = (tree.leaf << bits) | tree.level  # (leaf, value) of every pixel: same pair, same node
    if num_leaves * span <= 8 * pair.numel():
        # few leaves (smooth maps): climb once per (leaf, value) pair present, found with a dense mask
        present = torch.zeros(num_leaves * span, dtype=torch.bool, device=device)
        present.index_fill_(0, pair, True)
        present.view(num_leaves, span)[:, 0] = False  # value 0 is never foreground
        pairs = present.nonzero().view(-1)
        lv = pairs & (span - 1)
        rep = _climb(tree, pairs >> bits, lv - 1)
        keys, inverse = torch.unique((rep << bits) | lv, sorted=True, return_inverse=True)
        # int32 halves the traffic of the table
        lookup = torch.full((num_leaves * span,), -1, dtype=torch.int32, device=device)
        lookup.index_copy_(0, pairs, inverse.to(torch.int32))
        pixel_node = lookup.index_select(0, pair).to(torch.int64)
    else:
        # many leaves (noisy maps): most pairs hold one pixel, climb once per pixel
        pix = (tree.level > 0).nonzero().view(-1)
        lv = tree.level.index_select(0, pix)
        rep = _climb(tree, tree.leaf.index_select(0, pix), lv - 1)
        keys, inverse = torch.unique((rep << bits) | lv, sorted=True, return_inverse=True)
        pixel_node = torch.full_like(tree.level, -1)
        pixel_node.index_copy_(0, pix, inverse)
    root = keys >> bits
    level = keys & (span - 1)
    m = keys.numel()
    first = torch.ones(m, dtype=torch.bool, device=device)
    first[1:] = root[1:] != root[:-1]
    root_cut = tree.cut.index_select(0, root)
    prev_level = torch.cat([level.new_zeros(1), level[:-1]])
    lo = torch.where(first, root_cut, prev_level)
    parent = torch.arange(-1, m - 1, device=device)
    joins = first & (root_cut > 0)
    heads = joins.nonzero().view(-1)
    head_root = root.index_select(0, heads)
    head_cut = root_cut.index_select(0, heads)
    target = (_climb(tree, head_root, head_cut - 1) << bits) | head_cut
    parent[heads] = torch.searchsorted(keys, target)
    parent = torch.where(first & ~joins, -1, parent)
    bounds = torch.tensor(tree.bounds, device=device) << bits
    rounds = torch.searchsorted(keys, bounds).tolist()
    return MaxTree(pixel_node, level, lo, tree.image.index_select(0, root), parent, first, rounds)


def subtree_reduce(
    mt: MaxTree, node: Tensor, values: Tensor | None, reduce: Literal["amax", "sum"], neutral: int
) -> Tensor:
    """Aggregate values attached to nodes over every node's subtree (the node's whole pixel set).

    Args:
        mt: the :class:`MaxTree`.
        node: ``(I,)`` int64, the node each row of ``values`` is attached to (rows with ``node < 0`` are
            ignored).
        values: ``(I, C)`` integer (e.g. int32, to halve the memory traffic of the scatter); ``None`` with
            ``"sum"`` counts the rows (``C = 1``).
        reduce: ``"amax"`` or ``"sum"``.
        neutral: the value of an empty aggregate.

    Returns:
        ``(M, C)`` int64: per node, the reduction of the rows attached to it or to any of its descendants.

    Within a chain a node's descendants in the chain are the nodes after it, so a suffix scan per chain
    does them; chains are done round by round of the underlying tree, after the chains of earlier rounds have
    passed their first node's total to their parent.
    """
    m = mt.level.numel()
    device = node.device
    slot = torch.where(node >= 0, node, m)  # rows of no node go to a spare last slot
    if values is None:
        out = torch.bincount(slot, minlength=m + 1)[:m].view(m, 1).to(torch.int64)
    else:
        cols = values.shape[1]
        out = torch.full((m + 1, cols), neutral, dtype=values.dtype, device=device)
        index = slot.view(-1, 1).expand(-1, cols)
        if reduce == "sum":
            out.scatter_add_(0, index, values)
        else:
            out.scatter_reduce_(0, index, values, "amax")
        out = out[:m].to(torch.int64)
    cols = out.shape[1]
    for r in range(len(mt.rounds) - 1):
        lo, hi = mt.rounds[r], mt.rounds[r + 1]
        if lo == hi:
            continue
        seg = mt.head[lo:hi]
        chain = torch.cumsum(seg, 0)  # chain number within the slice, from 1
        block = out[lo:hi]
        if reduce == "sum":
            suffix = block.flip(0).cumsum(0).flip(0)
            ends = torch.cat([seg[1:], seg.new_ones(1)])  # last node of each chain
            # subtract what follows the chain: the suffix value just after each chain's end
            after = torch.cat([suffix[1:], suffix.new_zeros(1, cols)])
            tail = torch.zeros(hi - lo + 1, cols, dtype=torch.int64, device=device)
            tail.index_add_(0, chain, torch.where(ends.view(-1, 1), after, 0))
            block = suffix - tail.index_select(0, chain)
        else:
            shift = block.max() - neutral + 1
            offset = (chain.max() - chain).view(-1, 1) * shift  # later chains get smaller offsets
            block = (block - neutral + offset).flip(0).cummax(0).values.flip(0) - offset + neutral
        out[lo:hi] = block
        # each chain's first node passes its total to its parent (the others pass the neutral value to node 0)
        par = mt.parent[lo:hi]
        up = (seg & (par >= 0)).view(-1, 1)
        dst = torch.where(up, par.view(-1, 1), 0).expand(-1, cols)
        src = torch.where(up, block, neutral)
        if reduce == "sum":
            out.scatter_add_(0, dst, src)
        else:
            out.scatter_reduce_(0, dst, src, "amax")
    return out
