"""Plain, obviously-correct references written straight from the specification in docs/method.md.

Loops over samples and pixels are fine here: these are the oracles the vectorized components and the
kernels are checked against, not code anyone runs for speed. Everything is computed in float64.
"""

from __future__ import annotations

import math

import torch

EPS = 1.1920928955078125e-07  # float32 machine epsilon


def weighted_entropy(
    p: torch.Tensor, mu: float, sigma: float, beta: float, detach_weight: bool = False
) -> torch.Tensor:
    """ℓ(p) = −[p·log(p + ε) + (1 − p)·log(1 − p + ε)] · (exp(−(p − μ)²/(2σ²)) + β), element-wise.

    docs/method.md, "Weighted entropy loss".
    """
    x = p.double()
    out = torch.empty_like(x)
    flat_in = x.reshape(-1)
    values = []
    for value in flat_in:
        weight = torch.exp(-((value - mu) ** 2) / (2 * sigma**2)) + beta
        if detach_weight:
            weight = weight.detach()
        entropy = -(value * torch.log(value + EPS) + (1 - value) * torch.log(1 - value + EPS))
        values.append(entropy * weight)
    out = torch.stack(values).reshape(x.shape) if values else out
    return out


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """The reference reductions: "mean" is the sum over the loss's natural unit divided by their count."""
    if reduction == "mean":
        return values.sum() / values.numel()
    if reduction == "sum":
        return values.sum()
    return values


def area_loss_per_sample(
    p: torch.Tensor, class_maps: torch.Tensor, logits: torch.Tensor, topk: int, skip: int
) -> torch.Tensor:
    """L_b = mean_{i,j} p_b + Σ_{k=skip}^{topk−1} mean_{i,j} f[b, r_k(b)], ranks by descending logit.

    docs/method.md, "Area loss".
    """
    batch = p.shape[0]
    losses = []
    for b in range(batch):
        total = p[b].double().sum() / p[b].numel()
        order = sorted(range(logits.shape[1]), key=lambda c: -float(logits[b, c]))
        for k in range(skip, topk):
            channel = class_maps[b, order[k]].double()
            total = total + channel.sum() / channel.numel()
        losses.append(total)
    return torch.stack(losses)


def erasing_region(
    a: torch.Tensor,
    factor: torch.Tensor,
    chosen: torch.Tensor,
    half_size: torch.Tensor,
    min_size: int | tuple[int, int],
) -> torch.Tensor:
    """The region of attentive erasing given its random draws, one sample and one pixel at a time.

    docs/method.md, "Attentive erasing", step 3.

    ``min_size`` is in pixels, one value for both axes or ``(rows, columns)``.
    """
    min_y, min_x = (min_size, min_size) if isinstance(min_size, int) else min_size
    batch, _, height, width = a.shape
    region = torch.zeros(a.shape, dtype=torch.bool)
    for b in range(batch):
        if not bool(chosen[b]):
            continue
        values = [[float(a[b, 0, y, x]) for x in range(width)] for y in range(height)]
        peak = max(max(row) for row in values)
        low = min(min(row) for row in values)
        cy, cx = next((y, x) for y in range(height) for x in range(width) if values[y][x] == peak)
        threshold = peak - (peak - low) * float(factor[b])
        inside = [(y, x) for y in range(height) for x in range(width) if values[y][x] > threshold]
        if not inside:
            continue
        extent_y = max(y for y, _ in inside) - min(y for y, _ in inside)
        extent_x = max(x for _, x in inside) - min(x for _, x in inside)
        upper_y, upper_x = extent_y // 2, extent_x // 2
        if upper_y <= min_y or upper_x <= min_x:
            continue
        hh = min_y + math.floor(float(half_size[b, 0]) * (upper_y - min_y))
        ww = min_x + math.floor(float(half_size[b, 1]) * (upper_x - min_x))
        for y, x in inside:
            if abs(y - cy) < hh and abs(x - cx) < ww:
                region[b, 0, y, x] = True
    return region


def erase(
    a: torch.Tensor, region: torch.Tensor, keep_uniform: torch.Tensor, scale: float, shift: float
) -> torch.Tensor:
    """s = scale·a + shift; inside the region a pixel is dropped (0) where its uniform draw is < s.

    docs/method.md, "Attentive erasing", steps 4 and 5.
    """
    squashed = scale * a.double() + shift
    dropped = region & (keep_uniform.double() < squashed)
    return torch.where(dropped, torch.zeros_like(squashed), squashed)
