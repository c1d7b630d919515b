"""Benchmark one ORNet stage-2 training step: the loop reference's pieces against lowcam's.

The model is the paper's (random weights): a ResNet-50 stem (conv1, bn1, relu, maxpool; frozen) feeding
lowcam's :class:`~lowcam.LowLevelActivationGenerator` (only its last two decoder blocks and map head
train), and a frozen VGG16 evaluator wrapped in :class:`~lowcam.Evaluator`. One step is::

    p, f, _ = generator(stem(x));  p̃ = erasing(p);  logits = evaluator(x, p̃)
    loss = CE(logits, y) + 0.02 · area(p, f, logits) + 1.5 · entropy(p);  loss.backward();  adam.step()

with the three ORNet pieces taken either from ``benchmarks/loop_reference.py`` (``loop``) or from lowcam
(``lowcam``, ``--backend``: by default ``"triton"`` on CUDA — the kernels are what a GPU run must
validate, and ``backend="auto"`` picks the torch backend until one has — and ``"torch"`` on CPU). Both run in the same process, in float32
and in bfloat16 autocast with channels-last tensors, at each batch size. Results: median and 20/80 %
quantiles of the step time, peak CUDA memory, written to ``<out>.json`` and ``<out>.md``.

Usage::

    PYTHONPATH=. python benchmarks/bench_step.py --device cuda --batches 16 64 --out "$OUT/cuda_step"
    PYTHONPATH=. python benchmarks/bench_step.py --device cpu --batches 2 --image-size 64 --classes 30 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lowcam
from benchmarks._timing import environment, markdown_table, time_fn, write_results
from benchmarks.loop_reference import area_loss_loop, attentive_erasing_loop, weighted_entropy_loop
from lowcam._backend import Backend as lowcam_backend


class Stage2(nn.Module):
    """ResNet-50 stem + generator + VGG16 evaluator, frozen as in ORNet's stage 2."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        import torchvision

        resnet = torchvision.models.resnet50(weights=None)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.generator = lowcam.LowLevelActivationGenerator(64, num_classes)
        self.evaluator = lowcam.Evaluator(torchvision.models.vgg16(weights=None, num_classes=num_classes))
        self.requires_grad_(False)
        for module in (self.generator.up2, self.generator.up3, self.generator.map_head):
            module.requires_grad_(True)


def make_step(
    model: Stage2,
    pieces: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    bf16: bool,
    backend: lowcam_backend = "torch",
) -> Callable[[], None]:
    """One training step (forward, loss, backward, Adam) with the ``loop`` or the ``lowcam`` pieces."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    rng = np.random.default_rng(517)
    erasing = lowcam.AttentiveErasing(backend=backend)
    area, entropy = lowcam.AreaLoss(backend=backend), lowcam.WeightedEntropyLoss(backend=backend)
    device_type = images.device.type

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            p, class_maps, _ = model.generator(model.stem(images))
            if pieces == "loop":
                erased = attentive_erasing_loop(p, rng=rng)[0]
                logits = model.evaluator(images, erased)
                extra = 0.02 * area_loss_loop(p, class_maps, logits) + 1.5 * weighted_entropy_loop(p)
            else:
                logits = model.evaluator(images, erasing(p).erased)
                extra = 0.02 * area(p, class_maps, logits) + 1.5 * entropy(p)
            loss = F.cross_entropy(logits.float(), labels) + extra.float()
        loss.backward()
        optimizer.step()

    return step


#: Dense peak tensor throughput in TFLOP/s from NVIDIA's data sheets (bf16; fp32 convolutions and matmuls
#: at TF32 rates, which cuDNN uses for convolutions by default), for the compute floor of a step.
PEAK_TFLOPS = {
    "H100 PCIe": {"bf16": 756.0, "fp32": 378.0},
    "H100": {"bf16": 989.4, "fp32": 494.7},
    "H200": {"bf16": 989.4, "fp32": 494.7},
    "A100": {"bf16": 312.0, "fp32": 156.0},
}


def peak_tflops(device: str, precision: str) -> float | None:
    """The data-sheet peak of the current CUDA device for ``precision``, or None if unknown (or CPU)."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, peaks in PEAK_TFLOPS.items():  # "H100 PCIe" is tried before "H100"
        if all(part in name for part in key.split()):
            return peaks[precision]
    return None


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one step (forward and backward convolutions and matmuls), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def run(
    args: argparse.Namespace, on_row: Callable[[list[dict[str, Any]]], None] | None = None
) -> list[dict[str, Any]]:
    """Time every (precision, batch, pieces); ``on_row`` sees the rows so far after each one."""
    rows: list[dict[str, Any]] = []
    for precision in args.precisions:
        bf16 = precision == "bf16"
        memory_format = torch.channels_last if bf16 else torch.contiguous_format
        model = Stage2(args.classes).to(args.device, memory_format=memory_format).train()
        for batch in args.batches:
            g = torch.Generator(device=args.device).manual_seed(0)
            size = args.image_size
            images = torch.randn(batch, 3, size, size, device=args.device, generator=g)
            images = images.contiguous(memory_format=memory_format)
            labels = torch.randint(0, args.classes, (batch,), device=args.device, generator=g)
            flops = count_flops(make_step(model, "lowcam", images, labels, bf16, args.backend))
            peak = peak_tflops(str(args.device), precision)
            for pieces in ("loop", "lowcam"):
                step = make_step(model, pieces, images, labels, bf16, args.backend)
                stats = time_fn(step, device=args.device, warmup=args.warmup, repeats=args.repeats)
                seconds = stats["median_ms"] / 1e3
                rows.append(
                    {
                        "precision": precision,
                        "batch": batch,
                        "pieces": pieces,
                        **stats,
                        "gflop_per_image": flops / batch / 1e9,
                        "achieved_tflops": flops / seconds / 1e12,
                        "peak_tflops": peak,
                        "floor_ms": None if peak is None else flops / (peak * 1e12) * 1e3,
                    }
                )
                print(
                    f"{precision:5s} B={batch:<3d} {pieces:6s} {stats['median_ms']:.1f} ms "
                    f"({stats['p20_ms']:.1f}–{stats['p80_ms']:.1f}), peak {stats['peak_mem_mb']:.0f} MB",
                    flush=True,
                )
                if on_row is not None:
                    on_row(rows)
    return rows


def to_markdown(env: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    loop = {(r["precision"], r["batch"]): r["median_ms"] for r in rows if r["pieces"] == "loop"}
    table = [
        [
            r["precision"],
            r["batch"],
            r["pieces"],
            f"{r['median_ms']:.1f} ({r['p20_ms']:.1f}–{r['p80_ms']:.1f})",
            f"{r['peak_mem_mb']:.0f}" if str(args.device).startswith("cuda") else "—",
            f"{loop[(r['precision'], r['batch'])] / r['median_ms']:.2f}×",
            f"{r['gflop_per_image']:.1f}",
            f"{r['achieved_tflops']:.1f}",
            "—"
            if r.get("floor_ms") is None
            else f"{r['floor_ms']:.1f} ({r['median_ms'] / r['floor_ms']:.1f}×)",
        ]
        for r in rows
    ]
    return "\n".join(
        [
            "# bench_step: one ORNet stage-2 training step",
            "",
            f"- device: {env['device']}",
            f"- torch {env['torch']}, Triton {env['triton']}, Python {env['python']}",
            f"- commit {env['commit']}, {env['date']}",
            f"- images {args.image_size}×{args.image_size}, {args.classes} classes; ResNet-50 stem + generator, "
            "VGG16 evaluator, random weights; bf16 = bfloat16 autocast + channels-last",
            f"- lowcam backend: `{args.backend}`",
            "- GFLOP/img: convolutions and matmuls of one step, forward and backward, counted by "
            "`torch.utils.flop_counter`; floor: those FLOPs at the device's data-sheet peak (bf16, or TF32 "
            "for fp32), and how many times slower the step is",
            "",
            markdown_table(
                [
                    "precision",
                    "B",
                    "ORNet pieces",
                    "step ms (p20–p80)",
                    "peak MB",
                    "speed-up vs loop",
                    "GFLOP/img",
                    "TFLOP/s",
                    "floor ms (step / floor)",
                ],
                table,
            ),
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument(
        "--backend",
        choices=["torch", "triton"],
        default=None,
        help="lowcam's backend (default: triton on CUDA, torch on CPU)",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU default: 1)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output stem (default benchmarks/results/<dev>_step)"
    )
    args = parser.parse_args(argv)
    if args.backend is None:
        args.backend = "triton" if args.device.startswith("cuda") else "torch"
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    if args.out is None:
        args.out = Path(__file__).resolve().parent / "results" / f"{torch.device(args.device).type}_step"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(517)
    env = environment(args.device)
    print(f"# {env['device']} | torch {env['torch']} | triton {env['triton']} | {env['commit']}", flush=True)

    def save(rows: list[dict[str, Any]]) -> None:  # after every row: a run cut short keeps what it measured
        payload = {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, "results": rows}
        write_results(args.out, payload, to_markdown(env, args, rows))

    save(run(args, on_row=save))
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
