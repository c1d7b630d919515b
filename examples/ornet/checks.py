"""Checks made before any training: the whole config against the data set, and ``--resume`` against
the configs saved in the stages' checkpoints.

:func:`validate` collects every problem (not just the first) into one :class:`~ornet.config.ConfigError`,
so a stage-2 setting that cannot work is reported before stages 0 and 1 spend hours training.
:func:`resume_conflicts` compares, for each stage, the config keys its result depends on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ornet import checkpoint, recipe
from ornet.config import Config, ConfigError, OptimConfig, flatten, leaves
from ornet.distributed import parse_device
from ornet.models import CAM_OUTPUT_STRIDES

UPSAMPLE_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
BACKENDS = ("auto", "torch", "triton")
SELECT = ("test_top1", "holdout", "last")
MAP_SOURCES = ("coarse", "fine", "cam")


def validate(cfg: Config, num_classes: int | None = None) -> None:
    """Check every key of ``cfg`` (and, given ``num_classes``, the keys that depend on the data set).

    Raises:
        ConfigError: listing every invalid key with what it got and what it expects.
    """
    problems = config_problems(cfg, num_classes)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def config_problems(cfg: Config, num_classes: int | None = None) -> list[str]:
    """Every problem :func:`validate` reports, one ``key: got …, expected …`` line each."""
    problems: list[str] = []

    def need(ok: bool, key: str, got: Any, expected: str) -> None:
        if not ok:
            problems.append(f"{key}: got {got!r}, expected {expected}")

    def finite(value: float) -> bool:
        return math.isfinite(value)

    d = cfg.data
    need(d.format in ("cub", "imagenet", "wsol"), "data.format", d.format, "cub, imagenet or wsol")
    if d.format == "cub":
        need(d.eval_split in ("train", "test"), "data.eval_split", d.eval_split, "train or test for CUB")
    need(
        d.verify_images in ("none", "header", "full"),
        "data.verify_images",
        d.verify_images,
        "none, header or full",
    )
    need(d.crop >= 1, "data.crop", d.crop, "a positive size")
    need(d.resize >= d.crop, "data.resize", d.resize, f"at least data.crop ({d.crop})")
    need(d.score_size >= 1, "data.score_size", d.score_size, "a positive size")
    need(len(d.mean) == 3, "data.mean", d.mean, "three values")
    need(len(d.std) == 3 and all(v > 0 for v in d.std), "data.std", d.std, "three positive values")
    need(d.num_workers >= 0, "data.num_workers", d.num_workers, ">= 0")
    need(d.limit >= 0, "data.limit", d.limit, ">= 0 (0: no limit)")

    def optim(name: str, o: OptimConfig) -> None:
        need(o.name in ("sgd", "adam"), f"{name}.optim.name", o.name, "sgd or adam")
        need(finite(o.lr) and o.lr > 0, f"{name}.optim.lr", o.lr, "a positive number")
        need(0 <= o.momentum < 1, f"{name}.optim.momentum", o.momentum, "in [0, 1)")
        need(
            finite(o.weight_decay) and o.weight_decay >= 0,
            f"{name}.optim.weight_decay",
            o.weight_decay,
            ">= 0",
        )

    for name in ("evaluator", "coarse", "fine", "cam"):
        stage = getattr(cfg, name)
        need(stage.epochs >= 0, f"{name}.epochs", stage.epochs, ">= 0")
        need(stage.batch_size >= 1, f"{name}.batch_size", stage.batch_size, ">= 1")
        optim(name, stage.optim)
    c = cfg.cam
    strides = ", ".join(str(stride) for stride in sorted(CAM_OUTPUT_STRIDES))
    need(
        c.output_stride is None or c.output_stride in CAM_OUTPUT_STRIDES,
        "cam.output_stride",
        c.output_stride,
        f"one of {strides} or null (the stage maps' resolution)",
    )
    extras = c.extra_output_strides
    need(
        all(stride in CAM_OUTPUT_STRIDES for stride in extras)
        and len(set(extras)) == len(extras)
        and c.output_stride not in extras,
        "cam.extra_output_strides",
        extras,
        f"distinct values among {strides}, other than cam.output_stride",
    )
    s = cfg.evaluator
    need(s.select in SELECT, "evaluator.select", s.select, " | ".join(SELECT))
    if s.select == "holdout":
        need(0 < s.holdout_fraction < 1, "evaluator.holdout_fraction", s.holdout_fraction, "in (0, 1)")
    f = cfg.fine
    area, entropy, erasing, weights = f.area, f.entropy, f.erasing, f.loss_weights
    classes = num_classes if num_classes is not None else area.topk
    need(0 <= area.topk <= classes, "fine.area.topk", area.topk, f"in [0, {classes}] (the number of classes)")
    need(
        0 <= area.skip <= max(area.topk, 0),
        "fine.area.skip",
        area.skip,
        f"in [0, fine.area.topk = {area.topk}]",
    )
    need(finite(entropy.mu), "fine.entropy.mu", entropy.mu, "a finite number")
    need(
        finite(entropy.sigma) and entropy.sigma > 0, "fine.entropy.sigma", entropy.sigma, "a positive number"
    )
    need(finite(entropy.beta) and entropy.beta >= 0, "fine.entropy.beta", entropy.beta, ">= 0")
    need(
        0 <= erasing.erase_prob <= 1, "fine.erasing.erase_prob", erasing.erase_prob, "a probability in [0, 1]"
    )
    need(0 <= erasing.min_factor <= 1, "fine.erasing.min_factor", erasing.min_factor, "in [0, 1]")
    need(
        erasing.min_factor <= erasing.max_factor <= 1,
        "fine.erasing.max_factor",
        erasing.max_factor,
        f"in [fine.erasing.min_factor = {erasing.min_factor}, 1]",
    )
    need(erasing.min_size >= 0, "fine.erasing.min_size", erasing.min_size, ">= 0")
    need(
        finite(erasing.scale) and finite(erasing.shift),
        "fine.erasing.scale/shift",
        (erasing.scale, erasing.shift),
        "finite numbers",
    )
    need(finite(weights.area), "fine.loss_weights.area", weights.area, "a finite number")
    need(finite(weights.entropy), "fine.loss_weights.entropy", weights.entropy, "a finite number")
    q = cfg.quirks
    need(q.upsample in UPSAMPLE_MODES, "quirks.upsample", q.upsample, ", ".join(UPSAMPLE_MODES))
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
    need(r.backend in BACKENDS, "runtime.backend", r.backend, " | ".join(BACKENDS))
    need(r.num_threads >= 0, "runtime.num_threads", r.num_threads, ">= 0 (0: PyTorch's default)")
    need(r.stop_after_epoch >= 0, "runtime.stop_after_epoch", r.stop_after_epoch, ">= 0")
    if not problems:
        try:  # the components' own checks, before any training
            recipe.fine_parts(cfg)
        except (TypeError, ValueError) as error:
            problems.append(f"fine: {error}")
    return problems


# ------------------------------------------------------------------------------------------- resume

_DATA = tuple(
    f"data.{k}"
    for k in (
        "format",
        "root",
        "train_dir",
        "metadata_dir",
        "resize",
        "crop",
        "flip",
        "mean",
        "std",
        "drop_last",
        "limit",
    )
)
_EVALUATOR = (
    *_DATA,
    "data.eval_split",
    "data.val_dir",
    "data.annotations_dir",
    "model.evaluator",
    "model.evaluator_weights",
    "evaluator.",
    "runtime.bf16",
)
_COARSE = (
    *_DATA,
    "model.backbone",
    "model.backbone_weights",
    "model.generator_width",
    "coarse.",
    "quirks.reinit_layer4",
    "runtime.bf16",
)
#: The config keys (or ``section.`` prefixes) each stage's result depends on, its inputs' included.
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "evaluator": _EVALUATOR,
    "coarse": _COARSE,
    "fine": (*_EVALUATOR, *_COARSE, "fine.", "quirks.frozen_train_mode", "quirks.upsample"),
    "cam": (
        *_DATA,
        "model.backbone",
        "model.backbone_weights",
        "cam.epochs",
        "cam.batch_size",
        "cam.seed",
        "cam.optim.",
        "cam.output_stride",
        "runtime.bf16",
    ),
}
#: The keys of an extra CAM stage ``cam_s<stride>`` (its stride is in its name).
CAM_EXTRA_KEYS = tuple(k for k in STAGE_KEYS["cam"] if k != "cam.output_stride")


def stage_keys(stage: str) -> tuple[str, ...] | None:
    """The keys ``stage``'s result depends on (:data:`STAGE_KEYS`; :data:`CAM_EXTRA_KEYS` for
    ``cam_s<stride>``), or ``None`` for a stage that has none."""
    if stage in STAGE_KEYS:
        return STAGE_KEYS[stage]
    if stage.startswith("cam_s") and stage[5:].isdigit():
        return CAM_EXTRA_KEYS
    return None


def _depends(stage: str, key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in stage_keys(stage) or ())


def config_changes(stage: str, saved: dict[str, Any], current: Config) -> list[str]:
    """``key: saved → current`` for every key ``stage`` depends on whose value changed (keys the saved
    config does not record, e.g. from an older pipeline, are not compared)."""
    old = flatten(saved)
    changes = []
    for key, (value, _hint) in leaves(current).items():
        if _depends(stage, key) and key in old and old[key] != value:
            changes.append(f"{key}: {old[key]!r} → {value!r}")
    return changes


def resume_conflicts(out: Path, stages: list[str], cfg: Config) -> dict[str, list[str]]:
    """For each of ``stages`` with a checkpoint in ``out``, the changed keys (see :func:`config_changes`)."""
    conflicts = {}
    for stage in stages:
        path = out / f"{stage}.pt"
        if stage_keys(stage) is not None and path.is_file():
            saved = checkpoint.load(path).get("config")
            changes = config_changes(stage, saved, cfg) if isinstance(saved, dict) else []
            if changes:
                conflicts[stage] = changes
    return conflicts
