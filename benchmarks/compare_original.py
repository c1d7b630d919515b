"""End-to-end faithfulness: the authors' ORNet and lowcam's pipeline, same weights, same batch, a few steps.

``--original PATH`` is a checkout of the authors' public repository (github.com/Sierkinhane/ORNet). Its code is
imported at run time from ``PATH`` (``models/model.py``, ``models/unet.py``, ``models/evaluator.py``,
``models/erasing.py``, ``models/loss.py``) and never copied here; the harness only patches, while their code
runs, what a CPU machine without a network needs: ``torchvision.models.resnet50`` / ``vgg16`` ignore
``pretrained=True`` (random weights, no download) and ``Tensor.cuda()`` returns the tensor.

Each stage is built twice from the same random weights (the original's state dict, renamed with
``examples/import_original.py``'s name map and loaded into the pipeline's networks), fed the same batch,
and trained for ``--steps`` optimiser steps; after each step the script reports the largest absolute
difference of every loss, of the maps and logits, and of every parameter and buffer (by name):

- ``evaluator`` (stage 0): the authors' ``Evaluator`` (VGG16) against ``ornet.models.build_classifier``;
  cross-entropy, SGD (lr 1e-3, momentum 0.9, weight decay 5e-4: ``train_evaluator.py``).
- ``coarse`` (stage 1): ``CoarseModel`` against ``ornet.models.CoarseNet`` and ``ornet.recipe.coarse_loss``;
  CE(generator) + CE(main), SGD (lr 1e-3, momentum 0.9, weight decay 5e-4). The authors ship no stage-1
  script: that loss and optimiser are the pipeline's reading of the paper and config (``C_LR``).
- ``fine`` (stage 2): ``FineModel`` + ``AreaLoss(topk=25)`` + ``WeightedEntropyLoss()`` with
  ``CE + 0.02·area + 1.5·entropy`` and Adam (lr 1e-4: ``train_2nd_step.py``) against ``ornet.models.FineNet``,
  ``lowcam.Evaluator`` and ``ornet.recipe.fine_loss`` with the components of ``examples/configs/cub.yaml``;
  everything in train mode (the reference's frozen BatchNorm statistics move and the evaluator's dropout is
  on, ``quirks.frozen_train_mode``). Run twice: ``fine (no erasing)`` with erasing probability 0 (then
  erasing is the deterministic squashing ``0.6·p + 0.2`` in both), and ``fine (erasing, matched draws)``
  with the reference's probability 0.5, where lowcam's random draws are made equal to the ones the
  authors' code drew (factor, choice, half-sizes and the per-pixel keep decisions), so any difference
  left is a difference of the computation.

Dropout draws are matched by reseeding torch's generator before each forward of the two VGG16s. The
computation runs in float64 by default (``--dtype float32`` for the float32 rounding level), so that a
difference above ~1e-12 is a difference in what is computed, not rounding.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/compare_original.py --original /path/to/ORNet

Writes ``benchmarks/results/compare_original.{json,md}`` (``--out``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT))

import import_original  # noqa: E402
from ornet import recipe  # noqa: E402
from ornet.config import load_config  # noqa: E402
from ornet.models import CoarseNet, FineNet, build_classifier  # noqa: E402

import lowcam  # noqa: E402
import lowcam.ops.erasing_torch as _erasing_torch  # noqa: E402  (the draws are patched, see below)
from benchmarks._compare_original_harness import (  # noqa: E402
    RecordedDraws,
    compare_states,
    import_authors,
    max_abs,
    optimiser_step,
    patched_for_cpu,
    reseed_before_forward,
)
from benchmarks._compare_original_report import STAGE_COLUMNS, report  # noqa: E402
from benchmarks._timing import environment, write_and_print  # noqa: E402

NUM_CLASSES = 200
C_BASE = 64
#: ``--recipe-casts``: give the authors' losses float32 inputs, as the pipeline's recipe does (``.float()``)
RECIPE_CASTS = [False]


def _cast(x: torch.Tensor) -> torch.Tensor:
    return x.float() if RECIPE_CASTS[0] else x


# ---------------------------------------------------------------------------------------------- stages


def rename_with(rules: Sequence[tuple[str, str]]) -> Callable[[str], str | None]:
    return lambda name: import_original.to_pipeline_name(name, rules)


def load_renamed(
    target: nn.Module, state: Mapping[str, torch.Tensor], rules: Sequence[tuple[str, str]]
) -> None:
    imported = import_original.convert(state, rules, target.state_dict(), Path("<harness>"), "model")
    target.load_state_dict(imported.state)


def _sgd(*models: nn.Module) -> list[torch.optim.Optimizer]:
    """The optimisers of stages 0 and 1, one per model: SGD, lr 1e-3, momentum 0.9, weight decay 5e-4."""
    return [torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4) for m in models]


def _row(
    step: int,
    loss_original: torch.Tensor,
    loss_ours: torch.Tensor,
    columns: dict[str, Any],
    states: dict[str, Any],
) -> dict[str, Any]:
    """The row of step ``step`` (from 0): its number, the difference of the losses and the original's value,
    the stage's ``columns``, then the differences of the ``states`` (:func:`compare_states`)."""
    return {
        "step": step + 1,
        "loss": max_abs(loss_original, loss_ours),
        "loss_value": float(loss_original.detach()),
        **columns,
        **states,
    }


def stage_evaluator(
    authors: dict[str, Any], images: torch.Tensor, labels: torch.Tensor, steps: int, casts: bool = False
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    with patched_for_cpu():
        original = importlib.import_module("models.evaluator").Evaluator(num_classes=NUM_CLASSES)
    original = original.to(images.dtype)
    ours = build_classifier("vgg16", NUM_CLASSES).to(images.dtype)
    load_renamed(ours, original.state_dict(), import_original.EVALUATOR_RULES)
    seeds = [0]
    reseed_before_forward(original.model, seeds)
    reseed_before_forward(ours, seeds)
    optimisers = _sgd(original, ours)
    rows = []
    for step in range(steps):
        seeds[0] = 1000 + step
        original.train()
        ours.train()
        logits_o = original(images)
        loss_o = F.cross_entropy(_cast(logits_o), labels)
        optimiser_step(optimisers[0], loss_o)
        out = recipe.evaluator_loss(_capture_logits(ours), images, labels)
        optimiser_step(optimisers[1], out["loss"])
        states = compare_states(
            original.state_dict(), ours.state_dict(), rename_with(import_original.EVALUATOR_RULES)
        )
        columns = {"logits": max_abs(logits_o, _CAPTURED["logits"])}
        rows.append(_row(step, loss_o, out["loss"], columns, states))
    return rows, original.state_dict()


_CAPTURED: dict[str, Any] = {}


def _capture_logits(model: nn.Module) -> nn.Module:
    """``model`` with a forward hook that keeps its last output in ``_CAPTURED["logits"]`` (once)."""
    if not getattr(model, "_harness_hooked", False):
        model.register_forward_hook(lambda _m, _i, out: _CAPTURED.__setitem__("logits", out))
        model._harness_hooked = True  # type: ignore[assignment]
    return model


def stage_coarse(
    authors: dict[str, Any], images: torch.Tensor, labels: torch.Tensor, steps: int
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    with patched_for_cpu():
        original = authors["model"].CoarseModel(C_BASE, num_classes=NUM_CLASSES)
    original = original.to(images.dtype)
    ours = CoarseNet(build_classifier("resnet50", NUM_CLASSES), NUM_CLASSES, C_BASE).to(images.dtype)
    load_renamed(ours, original.state_dict(), import_original.COARSE_RULES)
    ours.register_forward_hook(lambda _m, _i, out: _CAPTURED.__setitem__("coarse", out))
    optimisers = _sgd(original, ours)
    rows = []
    for step in range(steps):
        original.train()
        ours.train()
        sx, mx, att = original(images)
        ce_gen, ce_main = F.cross_entropy(_cast(sx), labels), F.cross_entropy(_cast(mx), labels)
        loss_o = ce_gen + ce_main
        optimiser_step(optimisers[0], loss_o)
        out = recipe.coarse_loss(ours, images, labels)
        optimiser_step(optimisers[1], out["loss"])
        captured = _CAPTURED["coarse"]
        states = compare_states(
            original.state_dict(), ours.state_dict(), rename_with(import_original.COARSE_RULES)
        )
        columns = {
            "ce_generator": max_abs(ce_gen, out["ce_generator"]),
            "ce_main": max_abs(ce_main, out["ce_main"]),
            "map": max_abs(att, captured.generator.activation),
            "generator_logits": max_abs(sx, captured.generator.logits),
            "logits": max_abs(mx, captured.logits),
        }
        rows.append(_row(step, loss_o, out["loss"], columns, states))
    return rows, original.state_dict()


def erasing_check(authors: dict[str, Any], maps: torch.Tensor) -> dict[str, Any]:
    """The authors' ``AttentiveErasing`` (reference settings, train mode) and lowcam's
    ``AttentiveErasing`` on ``maps`` ``(B, 1, H, W)`` with the same draws: pixels erased by one and not the
    other, all of them and those off row 0 and column 0 (which the authors' code never erases), and the
    largest difference of the outputs elsewhere."""
    original = authors["erasing"].AttentiveErasing()
    original.train()
    recorder = RecordedDraws(authors["erasing"])
    with recorder.recording(), patched_for_cpu():
        out_o, mask_o = original(maps)
    module = lowcam.AttentiveErasing()
    module.train()
    draw = _erasing_torch._draw_randoms
    _erasing_torch._draw_randoms = lambda p, args, generator: recorder.lowcam_draws(p, args)
    try:
        out_l, region = module(maps)
    finally:
        _erasing_torch._draw_randoms = draw
    region_o = mask_o == 0
    differ = region_o != region
    inner = ~differ.any(dim=(1, 2, 3))
    return {
        "maps": int(maps.shape[0]),
        "erased_maps": int(region_o.flatten(1).any(1).sum()),
        "region_pixels": int(region_o.sum()),
        "region_differ": int(differ.sum()),
        "region_differ_off_row0_col0": int(differ[..., 1:, 1:].sum()),
        "maps_with_a_difference": int((~inner).sum()),
        "output_where_regions_agree": max_abs(out_o[inner], out_l[inner]),
    }


def stage_fine(
    authors: dict[str, Any],
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    coarse_state: Mapping[str, torch.Tensor],
    evaluator_state: Mapping[str, torch.Tensor],
    erase_prob: float,
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        att, cls = Path(tmp) / "coarse.pth", Path(tmp) / "evaluator.pth"
        torch.save({"state_dict": dict(coarse_state)}, att)
        torch.save({"state_dict": dict(evaluator_state)}, cls)
        with patched_for_cpu():
            original = authors["model"].FineModel(C_BASE, str(att), str(cls), num_classes=NUM_CLASSES)
    original = original.to(images.dtype)
    original.erasing.p = erase_prob
    if RECIPE_CASTS[0]:  # the recipe erases the float32 map
        original.erasing.register_forward_pre_hook(lambda _m, inputs: (inputs[0].float(),))
    criterion = [
        nn.CrossEntropyLoss(),
        authors["loss"].AreaLoss(topk=25),
        authors["loss"].WeightedEntropyLoss(),
    ]

    cfg = load_config(
        ROOT / "examples" / "configs" / "cub.yaml", {"fine.erasing.erase_prob": str(erase_prob)}
    )
    coarse = CoarseNet(build_classifier("resnet50", NUM_CLASSES), NUM_CLASSES, C_BASE)
    load_renamed(coarse, coarse_state, import_original.COARSE_RULES)
    ours = FineNet(coarse).to(images.dtype)
    classifier = build_classifier("vgg16", NUM_CLASSES)
    load_renamed(classifier, evaluator_state, import_original.EVALUATOR_RULES)
    evaluator = recipe.frozen_evaluator(classifier.to(images.dtype), cfg)
    parts = recipe.fine_parts(cfg)
    trainable = recipe.freeze_for_fine(ours)
    seeds = [0]
    reseed_before_forward(original.vgg, seeds)
    reseed_before_forward(classifier, seeds)
    ours.register_forward_hook(lambda _m, _i, out: _CAPTURED.__setitem__("fine", out))
    parts.erasing.register_forward_hook(lambda _m, _i, out: _CAPTURED.__setitem__("erased", out))
    evaluator.register_forward_hook(lambda _m, _i, out: _CAPTURED.__setitem__("logits", out))
    optimisers = [torch.optim.Adam(original.parameters(), lr=1e-4), torch.optim.Adam(trainable, lr=1e-4)]
    recorder = RecordedDraws(authors["erasing"])
    fine_rules = [*import_original.GENERATOR_RULES, ("vgg.model.", "evaluator.")]

    def rename(name: str) -> str | None:
        return import_original.to_pipeline_name(name, fine_rules)

    rows = []
    draw = _erasing_torch._draw_randoms
    for step in range(steps):
        seeds[0] = 2000 + step
        original.train()
        ours.train()
        recipe.set_fine_modes(ours, evaluator, parts, cfg)
        recorder.calls.clear()
        with recorder.recording(), patched_for_cpu():
            main_out, att_o, att_dropout, features = original(images)
        loss_eval = criterion[0](_cast(main_out), labels)
        loss_area = criterion[1](_cast(att_o), _cast(main_out), _cast(features))
        loss_entropy = criterion[2](_cast(att_o))
        loss_o = loss_eval + 0.02 * loss_area + 1.5 * loss_entropy
        optimiser_step(optimisers[0], loss_o)

        _erasing_torch._draw_randoms = lambda p, args, generator: recorder.lowcam_draws(p, args)
        try:
            out = recipe.fine_loss(ours, evaluator, parts, images, labels)
        finally:
            _erasing_torch._draw_randoms = draw
        optimiser_step(optimisers[1], out["loss"])
        fine_out, erased = _CAPTURED["fine"], _CAPTURED["erased"]
        mask_o = att_dropout == 0  # the pixels the original dropped (0.6·p + 0.2 ≥ 0.2 elsewhere)
        ours_state = {f"evaluator.{k}": v for k, v in classifier.state_dict().items()}
        ours_state.update({k: v for k, v in ours.state_dict().items()})
        states = compare_states(original.state_dict(), ours_state, rename)
        columns = {
            "ce": max_abs(loss_eval, out["ce"]),
            "area": max_abs(loss_area, out["area"]),
            "entropy": max_abs(loss_entropy, out["entropy"]),
            "map": max_abs(att_o, fine_out.activation),
            "class_maps": max_abs(features, fine_out.class_maps),
            "erased_map": max_abs(att_dropout, erased.erased),
            "dropped_pixels": int((mask_o).sum()),
            "dropped_pixels_differ": int((mask_o != (erased.erased == 0)).sum()),
            "differ_off_row0_col0": int((mask_o != (erased.erased == 0))[..., 1:, 1:].sum()),
            "logits": max_abs(main_out, _CAPTURED["logits"]),
        }
        rows.append(_row(step, loss_o, out["loss"], columns, states))
    return rows


# ------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--original", type=Path, required=True, help="a checkout of Sierkinhane/ORNet")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--stages", nargs="+", default=list(STAGE_COLUMNS), choices=list(STAGE_COLUMNS))
    parser.add_argument(
        "--erasing-maps", type=int, default=256, help="random 56×56 maps of the erasing check"
    )
    parser.add_argument(
        "--recipe-casts",
        action="store_true",
        help="give the authors' losses (and erasing) float32 inputs, as the pipeline's recipe does",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compare_original")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    RECIPE_CASTS[0] = args.recipe_casts
    start = time.perf_counter()
    authors = import_authors(args.original.resolve())
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    np.random.seed(0)
    images = torch.randn(args.batch, 3, 224, 224, dtype=dtype)
    labels = torch.randint(0, NUM_CLASSES, (args.batch,))
    stages: dict[str, list[dict[str, Any]]] = {}
    torch.manual_seed(1)
    # without the evaluator stage, stage 2 starts from the untrained evaluator
    evaluator_steps = args.steps if "evaluator" in args.stages else 0
    evaluator_rows, evaluator_state = stage_evaluator(authors, images, labels, evaluator_steps)
    if "evaluator" in args.stages:
        stages["evaluator"] = evaluator_rows
    torch.manual_seed(2)
    coarse_rows, coarse_state = stage_coarse(authors, images, labels, args.steps)
    if "coarse" in args.stages:
        stages["coarse"] = coarse_rows
    for name, prob in (("fine (no erasing)", 0.0), ("fine (erasing, matched draws)", 0.5)):
        if name in args.stages:
            torch.manual_seed(3)
            np.random.seed(3)
            stages[name] = stage_fine(
                authors, images, labels, args.steps, copy.deepcopy(coarse_state), evaluator_state, prob
            )
    torch.manual_seed(4)
    np.random.seed(4)
    smooth = F.interpolate(
        torch.rand(args.erasing_maps, 1, 7, 7, dtype=dtype), size=(56, 56), mode="bilinear"
    )
    erasing = erasing_check(authors, torch.sigmoid((smooth - 0.5) * 8))
    print(f"[erasing alone] {erasing}", flush=True)
    for name, rows in stages.items():
        for r in rows:
            shown = ", ".join(
                f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items() if k != "step"
            )
            print(f"[{name}] step {r['step']}: {shown}", flush=True)
    payload = {
        "environment": environment("cpu"),
        "command": "python benchmarks/compare_original.py "
        + shlex.join(str(a) for a in (sys.argv[1:] if argv is None else argv)),
        "batch": args.batch,
        "dtype": args.dtype,
        "recipe_casts": args.recipe_casts,
        "steps": args.steps,
        "stages": stages,
        "erasing_alone": erasing,
        "seconds": time.perf_counter() - start,
    }
    write_and_print(args.out, payload, report(payload, NUM_CLASSES, C_BASE))


if __name__ == "__main__":
    main()
