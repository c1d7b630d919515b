"""What a person reads after the evaluation: the comparison table and the PNG grids of maps and boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lowcam import metrics
from ornet.files import atomic_write
from ornet.runtime import Context

#: Images in ``maps.png``, the side-by-side comparison of every map.
COMPARED = 6
#: Predicted box colour and ground-truth box colour (dashed), as the titles say.
PRED_COLOUR = "red"
GT_COLOUR = "lime"

LABELS = {
    "coarse": "stage 1 map (coarse)",
    "fine": "stage 2 map (ORNet)",
    "cam": "CAM baseline",
    "center_gaussian": "centre Gaussian (no learning)",
}


def label(name: str, result: dict[str, Any]) -> str:
    """A map's row name with its resolution: ``stage 2 map (ORNet, 16×16)``, ``CAM baseline (stride 4,
    16×16)``; ``map_size`` and ``output_stride`` come from ``result`` (left out where missing)."""
    size = result.get("map_size")
    stride = result.get("output_stride")
    parts = [f"stride {stride}"] if stride is not None else []
    if size:
        parts.append(f"{size[0]}×{size[1]}")
    base = "CAM baseline" if name.startswith("cam") else LABELS.get(name, name)
    if base.endswith(")") and parts:
        return f"{base[:-1]}, {', '.join(parts)})"
    return f"{base} ({', '.join(parts)})" if parts else base


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The table's numbers of one map's results (``nan`` where a value is missing)."""
    ornet = result["ornet"]

    def number(value: Any) -> float:
        return float("nan") if value is None else float(value)

    return {
        "gt_known": number(ornet["gt_known"]),
        "top1_loc": number(ornet["top1_loc"]),
        "top5_loc": number(ornet["top5_loc"]),
        "maxboxacc": number(result["maxboxacc"]["value"]),
        "maxboxacc_v2": number(result["maxboxacc_v2"]["value"]),
        "cls_top1": number(result["classification_top1"]),
    }


def format_table(results: dict[str, Any]) -> str:
    """The comparison table printed at the end of the evaluation; each row names its map's resolution."""
    header = ("map", "GT-known Loc", "Top-1 Loc", "Top-5 Loc", "MaxBoxAcc", "MaxBoxAccV2", "cls top-1")
    rows = []
    for name, result in results.items():
        rows.append((label(name, result), *(f"{v:.2f}" for v in headline(result).values())))  # header's order
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines.append("-+-".join("-" * w for w in widths))
    lines.extend(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)
    return "\n".join(lines)


def _save(path: Path, figure: Any) -> None:
    atomic_write(path, lambda handle: figure.savefig(handle, format="png"))


def draw(
    ctx: Context,
    results: dict[str, Any],
    kept: dict[str, list[torch.Tensor]],
    images: torch.Tensor,
    boxes: list[torch.Tensor],
) -> None:
    """``maps_<name>.png`` per map: the kept images with the map, the predicted box at the map's best
    threshold (red, :func:`lowcam.metrics.box_from_map` of the "ornet" protocol, in the crop's pixels) and
    the ground truth (green, dashed); ``maps.png``: the first images with every map side by side. Drawn by
    :func:`lowcam.metrics.plot_localization_grid`, written atomically."""
    d = ctx.cfg.data
    style = {"mean": d.mean, "std": d.std, "pred_color": PRED_COLOUR, "gt_color": GT_COLOUR}
    panels: dict[str, tuple[str, torch.Tensor, torch.Tensor]] = {}
    for name, maps_list in kept.items():
        maps = torch.stack(maps_list)
        threshold = float(results[name]["ornet"]["threshold"]["0.5"])
        predicted = metrics.box_from_map(maps, threshold, protocol="ornet", image_size=d.crop)
        gt_known = results[name]["ornet"]["gt_known"]
        title = f"{name}: GT-known {gt_known:.1f}% at tau={threshold:.2f} (red: predicted, green: GT)"
        figure = metrics.plot_localization_grid(images, maps[:, 0], predicted, boxes, suptitle=title, **style)
        _save(ctx.out / f"maps_{name}.png", figure)
        panels[name] = (f"{name} (tau={threshold:.2f})", maps, predicted)
    rows = min(COMPARED, images.shape[0])
    cells: list[tuple[torch.Tensor | None, torch.Tensor | None, str | None]] = []
    for k in range(rows):  # per image: the image with its ground truth, then each map with its box
        cells.append((None, None, "image" if k == 0 else None))
        cells.extend(
            (maps[k, 0], predicted[k], heading if k == 0 else None)
            for heading, maps, predicted in panels.values()
        )
    figure = metrics.plot_localization_grid(
        [images[k] for k in range(rows) for _ in range(1 + len(panels))],
        [cell[0] for cell in cells],
        [cell[1] for cell in cells],
        [boxes[k] for k in range(rows) for _ in range(1 + len(panels))],
        titles=[cell[2] for cell in cells],
        columns=1 + len(panels),
        suptitle="each map at its best tau (red: predicted, green: GT)",
        **style,
    )
    _save(ctx.out / "maps.png", figure)
