"""Draw the documentation's figures from the library itself (run by ``make docs`` before mkdocs).

Every picture is computed by calling lowcam's public API, so a figure cannot drift from the code it
illustrates. Output: small PNGs in ``docs/figures/``, written without a timestamp so that re-running the
script on the same versions gives the same bytes.

Usage: ``python docs/figures.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

import lowcam

OUT = Path(__file__).resolve().parent / "figures"
DPI = 100
plt.rcParams.update(
    {
        "figure.dpi": DPI,
        "font.size": 9,
        "axes.titlesize": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "image.interpolation": "nearest",
    }
)


def save(fig: Figure, out: Path, name: str) -> Path:
    """Write ``fig`` as ``out/name.png`` with no date or version in the metadata (reproducible bytes)."""
    path = out / f"{name}.png"
    fig.savefig(
        path, dpi=DPI, bbox_inches="tight", metadata={"Software": None}, pil_kwargs={"optimize": True}
    )
    plt.close(fig)
    return path


def blob_map(height: int = 56, width: int = 56) -> torch.Tensor:
    """A smooth two-object activation map ``(1, 1, H, W)`` in [0, 1] (a stand-in for a sigmoid output)."""
    y = torch.arange(height, dtype=torch.float32).view(-1, 1)
    x = torch.arange(width, dtype=torch.float32).view(1, -1)
    big = torch.exp(-(((y - 24) / 11) ** 2 + ((x - 22) / 14) ** 2))
    small = 0.55 * torch.exp(-(((y - 42) / 5) ** 2 + ((x - 44) / 6) ** 2))
    a = big + small
    a = (a - a.min()) / (a.max() - a.min())
    return a.view(1, 1, height, width)


def entropy_figure(out: Path) -> Path:
    """The Gaussian weight, the weighted entropy and its gradient, for a few ``sigma``."""
    p = torch.linspace(0.0, 1.0, 401).view(1, 1, 1, -1)
    # sigma -> infinity makes w = 1: the plain binary entropy H(p), from the same function.
    plain = lowcam.weighted_entropy_loss(p, sigma=1e6, reduction="none").flatten()
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), constrained_layout=True)
    for sigma, style in ((0.05, ":"), (0.1, "-"), (0.2, "--")):
        label = f"σ = {sigma}" + (" (reference)" if sigma == 0.1 else "")
        x = p.clone().requires_grad_(True)
        loss = lowcam.weighted_entropy_loss(x, sigma=sigma, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
        flat_loss = loss.detach().flatten()
        weight = torch.where(plain > 1e-4, flat_loss / plain, torch.nan)  # w = ℓ / H where H is not ~0
        axes[0].plot(p.flatten(), weight, style, color="C0", label=label)
        axes[1].plot(p.flatten(), flat_loss, style, color="C1", label=label)
        axes[2].plot(p.flatten(), grad.flatten(), style, color="C2", label=label)
    axes[1].plot(p.flatten(), plain, color="0.6", lw=1, label="binary entropy (w = 1)")
    axes[0].set(title="weight w(p), μ = 0.5, β = 0", xlabel="p")
    axes[1].set(title="loss ℓ(p) = H(p)·w(p)", xlabel="p")
    axes[2].set(title="gradient dℓ/dp", xlabel="p")
    axes[2].axhline(0.0, color="0.7", lw=0.8)
    for ax in axes:
        ax.legend(fontsize=7, frameon=False)
    return save(fig, out, "entropy_weight")


def area_figure(out: Path) -> Path:
    """Which class maps the area loss pushes down: the gradient per logit rank (C = 40, reference ranks)."""
    classes, height, width = 40, 8, 8
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, classes, generator=generator)
    class_maps = torch.rand(1, classes, height, width, generator=generator, requires_grad=True)
    p = torch.rand(1, 1, height, width, generator=generator)
    lowcam.area_loss(p, class_maps, logits).backward()
    assert class_maps.grad is not None
    order = logits.argsort(dim=1, descending=True).flatten()
    per_rank = class_maps.grad[0, order].sum(dim=(1, 2))  # d L / d (mean of each map)
    fig, ax = plt.subplots(figsize=(8, 2.4), constrained_layout=True)
    colors = ["C3" if g > 0 else "0.75" for g in per_rank.tolist()]
    ax.bar(range(classes), per_rank, color=colors, width=0.8)
    ax.axvspan(-0.5, 2.5, color="C2", alpha=0.12)
    ax.axvspan(24.5, classes - 0.5, color="0.5", alpha=0.08)
    ax.text(1, 1.08, "skip = 3:\nleft alone", ha="center", va="top", fontsize=8, color="C2")
    ax.text(14, 1.08, "ranks 3 … 24 (topk = 25): each mean pushed down", ha="center", va="top", fontsize=8)
    ax.text(32, 1.08, "ranks ≥ 25: ignored", ha="center", va="top", fontsize=8, color="0.4")
    ax.set(
        xlabel="class rank by logit (0 = best)",
        ylabel="∂L / ∂ mean(f)",
        ylim=(0, 1.15),
        xlim=(-0.7, classes - 0.3),
        title="AreaLoss(topk=25, skip=3): gradient reaching each class map",
    )
    return save(fig, out, "area_ranks")


def erasing_figure(out: Path) -> Path:
    """Attentive erasing step by step: the map, the set P around the peak, the region, the output."""
    a = blob_map()
    factor = 0.35  # min_factor = max_factor fixes the drawn factor, so that P can be drawn here
    generator = torch.Generator().manual_seed(3)
    erased, region = lowcam.attentive_erasing(
        a, erase_prob=1.0, min_factor=factor, max_factor=factor, min_size=4, generator=generator
    )
    threshold = a.max() - (a.max() - a.min()) * factor
    above = a > threshold
    peak = int(a.flatten().argmax())
    cy, cx = divmod(peak, a.shape[-1])
    panels = [
        (a, "activation map a", "viridis", (0, 1)),
        (above.float(), f"P = {{a > max − (max − min)·{factor}}}", "Greys", (0, 1)),
        (region.float(), "region = P ∩ box(peak, hh, ww)", "Reds", (0, 1)),
        (
            erased,
            "output: 0.6a + 0.2, pixels dropped\nwith prob. 0.6a + 0.2 in the region",
            "viridis",
            (0, 1),
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9), constrained_layout=True)
    for ax, (image, title, cmap, (lo, hi)) in zip(axes, panels):
        shown = ax.imshow(image[0, 0], cmap=cmap, vmin=lo, vmax=hi)
        ax.plot([cx], [cy], marker="+", color="C1", markersize=9, mew=2)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes[-1], shrink=0.8)
    return save(fig, out, "erasing_steps")


def generator_figure(out: Path) -> Path:
    """The U-Net's blocks with the shapes a forward pass actually produces (ResNet stem, 224 input)."""
    gen = lowcam.LowLevelActivationGenerator(in_channels=64, num_classes=200).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    names = ["down1", "down2", "down3", "up1", "up2", "up3", "map_head"]
    hooks = [
        getattr(gen, name).register_forward_hook(
            lambda _m, _i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
        for name in names
    ]
    with torch.no_grad():
        result = gen(torch.zeros(1, 64, 56, 56))
    for hook in hooks:
        hook.remove()
    shapes["logits"] = tuple(result.logits.shape[1:])
    layout = {  # (x, level): level 0 = full resolution
        "input": (0, 0),
        "down1": (1, 1),
        "down2": (2, 2),
        "down3": (3, 3),
        "up1": (4, 2),
        "up2": (5, 1),
        "up3": (6, 0),
        "map_head": (7.3, 0.55),
        "logits": (7.3, -0.55),
    }
    shapes["input"] = (64, 56, 56)
    labels = {
        "input": "stem feature",
        "map_head": "map head → p",
        "logits": "class head (GAP)",
        "up3": "up3 → class maps f",
    }
    fig, ax = plt.subplots(figsize=(10, 3.2), constrained_layout=True)
    for name, (x, level) in layout.items():
        shape = shapes[name]
        text = labels.get(name, name) + "\n" + "×".join(str(s) for s in shape)
        color = "C0" if name.startswith("down") else "C1" if name.startswith("up") else "0.6"
        if name in ("map_head", "logits"):
            color = "C2"
        ax.add_patch(Rectangle((x - 0.42, -level - 0.3), 0.84, 0.6, color=color, alpha=0.25))
        ax.text(x, -level, text, ha="center", va="center", fontsize=7.5)
    edges = [
        ("input", "down1"),
        ("down1", "down2"),
        ("down2", "down3"),
        ("down3", "up1"),
        ("up1", "up2"),
        ("up2", "up3"),
        ("up3", "map_head"),
        ("up3", "logits"),
    ]
    skips = [("down2", "up1"), ("down1", "up2"), ("input", "up3")]
    for start, end, style in [(s, e, "-") for s, e in edges] + [(s, e, "--") for s, e in skips]:
        (x0, l0), (x1, l1) = layout[start], layout[end]
        ax.add_patch(
            FancyArrowPatch(
                (x0 + 0.42, -l0), (x1 - 0.42, -l1), arrowstyle="-|>", mutation_scale=8, ls=style, color="0.35"
            )
        )
    ax.set_xlim(-0.6, 7.9)
    ax.set_ylim(-3.5, 0.9)
    ax.axis("off")
    ax.set_title(
        "LowLevelActivationGenerator(64, 200): blue = maxpool + block, orange = upsample + concat skip (dashed) + block",
        fontsize=8.5,
    )
    return save(fig, out, "generator_unet")


def evaluator_figure(out: Path) -> Path:
    """What the evaluator classifies: the image times the map upsampled to its size (nearest vs bilinear)."""
    size = 112
    y = torch.linspace(-1, 1, size).view(-1, 1)
    x = torch.linspace(-1, 1, size).view(1, -1)
    stripes = 0.5 + 0.5 * torch.sin(12 * (x + 0.4 * y))
    image = torch.stack([stripes, 0.6 * stripes + 0.3 * (y + 1) / 2, 1 - stripes]).clamp(0, 1).unsqueeze(0)
    maps = torch.nn.functional.avg_pool2d(blob_map(56, 56), 8)  # a coarse 7x7 map
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.7), constrained_layout=True)
    axes[0].imshow(image[0].permute(1, 2, 0))
    axes[0].set_title(f"image {size}×{size}")
    axes[1].imshow(maps[0, 0], cmap="viridis", vmin=0, vmax=1)
    axes[1].set_title(f"map {maps.shape[-2]}×{maps.shape[-1]}")
    identity = torch.nn.Identity()
    for ax, mode in zip(axes[2:], ("nearest", "bilinear")):
        masked = lowcam.Evaluator(identity, upsample=mode).mask(image, maps)
        ax.imshow(masked[0].permute(1, 2, 0).clamp(0, 1))
        ax.set_title(f"image × up(map)\nupsample={mode!r}" + (" (reference)" if mode == "nearest" else ""))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return save(fig, out, "evaluator_masking")


def localization_figure(out: Path) -> Path:
    """metrics.box_from_map and metrics.plot_localization on a synthetic image and a coarse 14 × 14 map."""
    from lowcam import metrics

    size = 112
    y = torch.arange(size, dtype=torch.float32).view(-1, 1)
    x = torch.arange(size, dtype=torch.float32).view(1, -1)
    inside = (((y - 48) / 26) ** 2 + ((x - 44) / 32) ** 2) <= 1  # the object: an ellipse
    image = torch.stack([0.35 + 0.5 * inside, 0.35 + 0.25 * inside, 0.35 - 0.1 * inside])
    gt = torch.tensor([[12.0, 22.0, 76.0, 74.0]])  # its box
    cy = torch.arange(14, dtype=torch.float32).view(-1, 1) + 0.5  # a coarse map, as a stride-8 CAM would be
    cx = torch.arange(14, dtype=torch.float32).view(1, -1) + 0.5
    cam = torch.exp(-(((cy - 6.0) / 2.6) ** 2 + ((cx - 5.0) / 3.2) ** 2))  # on the object, a little short
    cam = (cam + 0.7 * torch.exp(-(((cy - 11.5) / 1.0) ** 2 + ((cx - 11.5) / 1.0) ** 2))).view(1, 14, 14)
    scoremap = metrics.prepare_scoremap(cam, size=size)[0]
    fig, axes = plt.subplots(1, 2, figsize=(5.2, 2.7))
    for ax, (protocol, tau) in zip(axes, [("wsoleval", 0.35), ("ornet", 0.35)]):
        box = metrics.box_from_map(scoremap, tau, protocol=protocol)  # type: ignore[arg-type]
        title = f'"{protocol}" box at τ = {tau}'
        metrics.plot_localization(image, cam[0], box, gt, ax=ax, title=title)
    fig.text(0.5, 0.02, "map (overlay), predicted box (solid), ground truth (dashed)", ha="center")
    return save(fig, out, "localization_boxes")


FIGURES: list[Callable[[Path], Path]] = [
    entropy_figure,
    area_figure,
    erasing_figure,
    generator_figure,
    evaluator_figure,
    localization_figure,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: docs/figures)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    start = time.perf_counter()
    for draw in FIGURES:
        path = draw(args.out)
        print(f"figures: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    print(f"figures: {len(FIGURES)} drawn in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
