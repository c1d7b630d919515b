"""ORNet's three components written from docs/method.md the way the paper's code writes them.

This is the baseline of ``bench_ops.py`` and ``bench_step.py``, not an oracle (the oracles of the test-suite
live in ``tests/reference.py``). It keeps the reference implementation's habits:

- the weighted entropy is one eager expression over the whole map, reduced by ``sum / (B·H·W)``;
- the area loss ranks the classes by softmax, then loops over the samples in Python, reading each
  sample's ranked class maps by a Python list of indices (one host sync per sample);
- attentive erasing draws its random numbers with NumPy on the host and loops over the samples, reading
  each sample's statistics back to the host (``.item()``, ``nonzero``) before building its region.

The semantics are the spec's, including lowcam's two documented fixes (row 0 and column 0 can be erased,
a one-pixel region is erased), so that both sides of a benchmark compute the same function.
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 1.1920928955078125e-07


def weighted_entropy_loop(p: torch.Tensor, mu: float = 0.5, sigma: float = 0.1) -> torch.Tensor:
    """Reference weighted entropy: ``sum(ℓ(p)) / (B·H·W)`` as a single eager expression."""
    batch, _, height, width = p.shape
    weight = torch.exp(-((p - mu) ** 2) / (2 * sigma**2))
    entropy = -(p * torch.log(p + EPS) + (1 - p) * torch.log(1 - p + EPS)) * weight
    return entropy.sum() / (batch * height * width)


def area_loss_loop(
    p: torch.Tensor, class_maps: torch.Tensor, logits: torch.Tensor, topk: int = 25, skip: int = 3
) -> torch.Tensor:
    """Reference area loss: ``mean(p)`` plus, per sample, ``Σ_k mean(f[b, r_k(b)]) / B``.

    The ranks of each sample come back to the host as a Python list (one sync per sample) and index the
    sample's class maps; autograd then scatters each sample's gradient into a full-size zero tensor.
    """
    batch = p.shape[0]
    loss = p.mean()
    order = torch.argsort(torch.softmax(logits.detach(), dim=1), dim=1, descending=True)
    for b in range(batch):
        ranked = order[b, skip:topk].tolist()
        loss = loss + class_maps[b, ranked].mean(dim=(1, 2)).sum() / batch
    return loss


def attentive_erasing_loop(
    p: torch.Tensor,
    erase_prob: float = 0.5,
    min_factor: float = 0.0,
    max_factor: float = 0.5,
    min_size: int = 4,
    scale: float = 0.6,
    shift: float = 0.2,
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attentive erasing: NumPy draws on the host and a Python loop over the samples.

    Returns:
        ``(erased, region)`` like :func:`lowcam.attentive_erasing`.
    """
    rng = rng if rng is not None else np.random.default_rng()
    batch, _, height, width = p.shape
    factor = rng.uniform(min_factor, max_factor)
    rows = torch.arange(height, device=p.device).view(height, 1)
    cols = torch.arange(width, device=p.device).view(1, width)
    outputs, regions = [], []
    for b in range(batch):
        squashed = scale * p[b] + shift
        region = torch.zeros(1, height, width, dtype=torch.bool, device=p.device)
        if rng.random() < erase_prob:
            values = p[b, 0].detach()
            peak_value, low = values.max().item(), values.min().item()
            threshold = peak_value - (peak_value - low) * factor
            above = values > threshold
            ys, xs = torch.nonzero(above, as_tuple=True)
            if ys.numel() > 0:
                extent_y = int(ys.max()) - int(ys.min())
                extent_x = int(xs.max()) - int(xs.min())
                if extent_y // 2 > min_size and extent_x // 2 > min_size:
                    hh = int(rng.integers(min_size, extent_y // 2))
                    ww = int(rng.integers(min_size, extent_x // 2))
                    cy, cx = divmod(int(values.argmax()), width)
                    box = ((rows - cy).abs() < hh) & ((cols - cx).abs() < ww)
                    region = (above & box).unsqueeze(0)
        keep = torch.bernoulli(1.0 - squashed.detach())
        outputs.append(torch.where(region, squashed * keep, squashed))
        regions.append(region)
    return torch.stack(outputs), torch.stack(regions)
