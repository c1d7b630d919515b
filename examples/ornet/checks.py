"""Checks made before any training: the whole config against the data set, and ``--resume`` against
the configs saved in the stages' checkpoints.

:func:`validate` collects every problem (not just the first) into one :class:`~ornet.config.ConfigError`,
so a stage-2 setting that cannot work is reported before stages 0 and 1 spend hours training.
:func:`resume_conflicts` compares, for each stage, the config sections its result depends on.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Any

from torch import nn

from ornet import checkpoint, recipe
from ornet.config import (
    STAGE_SECTIONS,
    Config,
    OptimConfig,
    flatten,
    invalid,
    leaves,
    run_only_keys,
)
from ornet.distributed import parse_device
from ornet.models import is_torchvision, output_strides
from ornet.pretrained import timm_has_model
from ornet.stages import is_cam_stage

MAP_SOURCES = ("coarse", "fine", "cam")


def validate(cfg: Config, num_classes: int | None = None, found: list[str] | None = None) -> None:
    """Check every key of ``cfg`` (and, given ``num_classes``, the keys that depend on the data set).

    ``found``: the problems :func:`ornet.config.load_config` found while building the sections, listed
    first.

    Raises:
        ConfigError: listing every invalid key with what it got and what it expects.
    """
    problems = [*(found or []), *config_problems(cfg, num_classes)]
    if problems:
        raise invalid(problems)


def config_problems(cfg: Config, num_classes: int | None = None) -> list[str]:
    """Every problem :func:`validate` reports, one ``key: got …, expected …`` line each."""
    problems: list[str] = []

    def need(ok: bool, key: str, got: Any, expected: str) -> None:
        if not ok:
            problems.append(f"{key}: got {got!r}, expected {expected}")

    for key, (value, hint) in leaves(cfg).items():  # the choices the schema's Literal types name
        if typing.get_origin(hint) is typing.Literal:
            need(value in typing.get_args(hint), key, value, " | ".join(typing.get_args(hint)))
    d = cfg.data
    if d.format == "cub":
        need(d.eval_split in ("train", "test"), "data.eval_split", d.eval_split, "train or test for CUB")
    need(d.crop >= 1, "data.crop", d.crop, "a positive size")
    need(d.resize >= d.crop, "data.resize", d.resize, f"at least data.crop ({d.crop})")
    need(
        d.score_size >= 2,
        "data.score_size",
        d.score_size,
        "at least 2 (on a 1-pixel score map every box becomes [0, 0, 0, 0])",
    )
    need(len(d.mean) == 3, "data.mean", d.mean, "three values")
    need(len(d.std) == 3 and all(v > 0 for v in d.std), "data.std", d.std, "three positive values")
    need(d.num_workers >= 0, "data.num_workers", d.num_workers, ">= 0")
    need(d.limit >= 0, "data.limit", d.limit, ">= 0 (0: no limit)")

    def optim(name: str, o: OptimConfig) -> None:
        need(math.isfinite(o.lr) and o.lr > 0, f"{name}.optim.lr", o.lr, "a positive number")
        need(0 <= o.momentum < 1, f"{name}.optim.momentum", o.momentum, "in [0, 1)")
        need(
            math.isfinite(o.weight_decay) and o.weight_decay >= 0,
            f"{name}.optim.weight_decay",
            o.weight_decay,
            ">= 0",
        )

    for name in ("evaluator", "coarse", "fine", "cam"):
        stage = getattr(cfg, name)
        need(stage.epochs >= 0, f"{name}.epochs", stage.epochs, ">= 0")
        need(stage.batch_size >= 1, f"{name}.batch_size", stage.batch_size, ">= 1")
        optim(name, stage.optim)
    for key in ("backbone", "evaluator"):
        arch = getattr(cfg.model, key)
        need(
            is_torchvision(arch) or timm_has_model(arch),
            f"model.{key}",
            arch,
            "a torchvision classifier (resnet50, vgg16, ...) or a timm model (timm: the examples extra)",
        )
    c = cfg.cam
    allowed = output_strides(cfg.model.backbone)  # a timm backbone has no stride-4 CAM
    strides = ", ".join(str(stride) for stride in allowed)
    need(
        c.output_stride is None or c.output_stride in allowed,
        "cam.output_stride",
        c.output_stride,
        f"one of {strides} or null (the stage maps' resolution)",
    )
    extras = c.extra_output_strides
    need(
        all(stride in allowed for stride in extras)
        and len(set(extras)) == len(extras)
        and c.output_stride not in extras,
        "cam.extra_output_strides",
        extras,
        f"distinct values among {strides}, other than cam.output_stride",
    )
    s = cfg.evaluator
    if s.select == "holdout":
        need(0 < s.holdout_fraction < 1, "evaluator.holdout_fraction", s.holdout_fraction, "in (0, 1)")
    f = cfg.fine
    classes = num_classes if num_classes is not None else f.area.topk
    need(
        0 <= f.area.topk <= classes,
        "fine.area.topk",
        f.area.topk,
        f"in [0, {classes}] (the number of classes)",
    )
    for key, weight in (("area", f.loss_weights.area), ("entropy", f.loss_weights.entropy)):
        need(math.isfinite(weight), f"fine.loss_weights.{key}", weight, "a finite number")
    w = cfg.coarse.loss_weights
    for key, weight in (("generator", w.generator), ("main", w.main)):
        need(
            math.isfinite(weight) and weight >= 0,
            f"coarse.loss_weights.{key}",
            weight,
            "a finite number >= 0",
        )
    need(w.generator > 0 or w.main > 0, "coarse.loss_weights", [w.generator, w.main], "not both 0")
    if (
        num_classes is not None
        and recipe.coarse_head(cfg, num_classes, cfg.model.backbone_weights) < num_classes
    ):
        need(
            False,
            "quirks.reinit_layer4",
            cfg.quirks.reinit_layer4,
            f"false for {num_classes} classes (the reference's stage-1 head has {recipe.REFERENCE_HEAD} outputs)",
        )
    e = cfg.eval
    need(e.batch_size >= 1, "eval.batch_size", e.batch_size, ">= 1")
    need(e.pictures >= 0, "eval.pictures", e.pictures, ">= 0")
    sources = (*MAP_SOURCES, *(f"cam_s{stride}" for stride in cfg.cam.extra_output_strides))
    need(e.scoremap_source in sources, "eval.scoremap_source", e.scoremap_source, ", ".join(sources))
    r = cfg.runtime
    try:
        parse_device(r.device)
    except ValueError as error:
        problems.append(str(error))
    need(r.num_threads >= 0, "runtime.num_threads", r.num_threads, ">= 0 (0: PyTorch's default)")
    need(r.stop_after_epoch >= 0, "runtime.stop_after_epoch", r.stop_after_epoch, ">= 0")
    # the components' own checks of the keys they take (the fine.* sections checked themselves when built)
    for key, build in (
        ("runtime.backend", lambda: recipe.fine_parts(cfg)),
        ("quirks.upsample", lambda: recipe.frozen_evaluator(nn.Identity(), cfg)),
    ):
        try:
            build()
        except (TypeError, ValueError) as error:
            problems.append(f"{key}: {error}")
    return problems


# ------------------------------------------------------------------------------------------- resume


def _sections(stage: str) -> tuple[str, ...] | None:
    if stage in STAGE_SECTIONS:
        return STAGE_SECTIONS[stage]
    return STAGE_SECTIONS["cam"] if is_cam_stage(stage) else None


def config_changes(stage: str, saved: dict[str, Any], current: Config) -> list[str]:
    """``key: saved → current`` for every key of the sections ``stage`` depends on
    (:data:`ornet.config.STAGE_SECTIONS`) whose value changed, but for the run-only keys."""
    sections = _sections(stage) or ()
    skip = run_only_keys(current) | ({"cam.output_stride"} if stage != "cam" else set())
    old = flatten(saved)
    return [
        f"{key}: {old.get(key)!r} → {value!r}"
        for key, (value, _hint) in leaves(current).items()
        if key.split(".")[0] in sections and key not in skip and old.get(key, value) != value
    ]


def resume_conflicts(out: Path, stages: list[str], cfg: Config) -> dict[str, list[str]]:
    """For each of ``stages`` with a checkpoint in ``out``, the changed keys (see :func:`config_changes`)."""
    conflicts = {}
    for stage in stages:
        path = out / f"{stage}.pt"
        if _sections(stage) is not None and path.is_file():
            saved = checkpoint.load(path).get("config")
            changes = config_changes(stage, saved, cfg) if isinstance(saved, dict) else []
            if changes:
                conflicts[stage] = changes
    return conflicts
