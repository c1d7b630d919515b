"""The stages of ``examples/train_ornet.py``: networks and optimisers from the config, the recipe's loss
(:mod:`ornet.recipe`) in the shared loop (:mod:`ornet.training`).

``evaluator`` (0), ``coarse`` (1), ``fine`` (2) and the ``cam`` baseline each write ``<stage>.pt``; the
extra CAM baselines of ``cam.extra_output_strides`` are stages ``cam_s<stride>`` (``cam_s<stride>.pt``),
trained whenever ``cam`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

import lowcam
from lowcam.data import Sample
from ornet import checkpoint, recipe
from ornet.checkpoint import CheckpointError
from ornet.config import Config, ConfigError, OptimConfig, from_dict
from ornet.distributed import all_reduce_sum
from ornet.models import CoarseNet, FineNet, build_classifier, matching_output_stride
from ornet.runtime import (
    Batch,
    Context,
    autocast,
    batches,
    eval_loader,
    holdout_split,
    prepare,
    to_device,
    train_loader,
)
from ornet.training import checkpoint_path, load_model, load_strict, load_weights, train_epochs

STAGES = ("evaluator", "coarse", "fine", "cam", "eval")


def optimizer(params: Iterable[nn.Parameter], o: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser of an ``optim`` config section (SGD or Adam)."""
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def build_evaluator(ctx: Context, weights: str | None = None) -> nn.Module:
    """The evaluator classifier (``model.evaluator``) for this data set's classes."""
    return build_classifier(ctx.cfg.model.evaluator, ctx.num_classes, weights)


def build_coarse(ctx: Context, weights: str | None = None) -> CoarseNet:
    """Stage 1's network (see :func:`ornet.recipe.coarse_net`)."""
    return recipe.coarse_net(ctx.cfg, ctx.num_classes, weights)


def load_coarse(ctx: Context) -> CoarseNet:
    """The finished stage 1's network from ``coarse.pt``, its ResNet head rebuilt at the size the
    checkpoint holds (see :func:`ornet.recipe.saved_coarse_head`: the 1000-way head of
    ``quirks.reinit_layer4``, also in the authors' checkpoints, whatever this config's quirk says)."""
    weights, source = load_weights(ctx, "coarse")
    net = recipe.coarse_net(ctx.cfg, ctx.num_classes, head=recipe.saved_coarse_head(weights, ctx.num_classes))
    load_strict(net, weights, source)
    return net


def _batch(ctx: Context, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    return to_device(ctx, batch[0]), batch[1].to(ctx.info.device)


@torch.no_grad()
def top1(ctx: Context, classifier: nn.Module, samples: list[Sample]) -> float:
    """Top-1 accuracy (%) of ``classifier`` on ``samples`` (reference test transform), over all ranks."""
    was_training = classifier.training
    classifier.eval()
    counts = torch.zeros(2, dtype=torch.int64, device=ctx.info.device)  # (correct, seen), no sync per batch
    for batch in batches(eval_loader(ctx, "ornet", samples), ctx, "select"):
        images, labels = _batch(ctx, batch)
        with autocast(ctx):
            logits = classifier(images)
        counts[0] += (logits.argmax(1) == labels).sum()
        counts[1] += labels.numel()
    classifier.train(was_training)
    counts = all_reduce_sum(counts.to("cpu", torch.float64), ctx.info)
    return 100.0 * counts[0].item() / max(counts[1].item(), 1.0)


def _train(
    ctx: Context,
    stage: str,
    model: nn.Module,
    section: Any,
    loss: Callable[..., recipe.Losses],
    params: Iterable[nn.Parameter] | None = None,
    **options: Any,
) -> None:
    """Train ``model`` for ``stage`` with the schedule of its config ``section`` (``epochs``,
    ``batch_size``, ``seed``, ``optim``): ``loss(runner, images, labels)`` in :func:`train_epochs`."""
    runner = prepare(ctx, model)
    train_epochs(
        ctx,
        stage,
        model,
        runner,
        optimizer(model.parameters() if params is None else params, section.optim),
        epochs=section.epochs,
        batch_size=section.batch_size,
        seed=section.seed,
        step=lambda batch: loss(runner, *_batch(ctx, batch)),
        **options,
    )


def _recalibrate(
    ctx: Context, stage: str, net: CoarseNet | FineNet, section: Any
) -> Callable[[], None] | None:
    """With ``<stage>.recalibrate_bn``, what ends the stage: :func:`ornet.recipe.recalibrate_batchnorm` over
    one pass of the training split (the training transform, the stage's batch size)."""
    if not section.recalibrate_bn:
        return None

    def finish() -> None:
        loader = train_loader(ctx, ctx.train.samples, section.batch_size, section.epochs, section.seed)
        with autocast(ctx):
            layers, count = recipe.recalibrate_batchnorm(net, (to_device(ctx, batch[0]) for batch in loader))
        if ctx.info.world_size > 1:  # each process saw its shard: the average over all, by batch count
            local = [torch.cat([m.running_mean, m.running_var]) * count for m in layers]  # type: ignore[list-item]
            packed = torch.cat([*local, torch.tensor([float(count)], device=local[0].device)])
            packed = all_reduce_sum(packed.to("cpu", torch.float64), ctx.info)
            total, start = packed[-1].item(), 0
            for m in layers:
                width = m.num_features
                m.running_mean.copy_(packed[start : start + width] / total)  # type: ignore[union-attr]
                m.running_var.copy_(packed[start + width : start + 2 * width] / total)  # type: ignore[union-attr]
                start += 2 * width
        ctx.print(f"[{stage}] running statistics of {len(layers)} generator BatchNorm layers recalibrated")

    return finish


def stage_evaluator(ctx: Context) -> None:
    """Stage 0: fine-tune the evaluator classifier; keep the epoch ``evaluator.select`` chooses."""
    s = ctx.cfg.evaluator
    model = build_evaluator(ctx, ctx.cfg.model.evaluator_weights)
    samples = ctx.train.samples
    select: Callable[[], float] | None = None
    if s.select == "holdout":
        fraction = s.holdout_fraction
        samples, held = holdout_split(samples, lambda n: min(n - 1, max(1, round(fraction * n))), seed=s.seed)
        select = lambda: top1(ctx, model, held)  # noqa: E731
    elif s.select == "test_top1":
        select = lambda: top1(ctx, model, ctx.test.samples)  # noqa: E731
    _train(ctx, "evaluator", model, s, recipe.evaluator_loss, samples=samples, select=select)


class _GeneratorLogits(nn.Module):
    """The generator of a stage-1 network as a classifier (its own logits)."""

    def __init__(self, net: CoarseNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net.generator(self.net.stem(images)).logits
        return logits


def stage_coarse(ctx: Context) -> None:
    """Stage 1: backbone split after its stem + generator, CE(generator logits) + CE(main logits). Then
    the generator's accuracy on the training images in eval mode (the running statistics the evaluation
    uses; the epoch records use batch statistics) is logged as ``coarse/eval_mode``."""
    model = build_coarse(ctx, ctx.cfg.model.backbone_weights)
    weights = ctx.cfg.coarse.loss_weights

    def loss(runner: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> recipe.Losses:
        return recipe.coarse_loss(runner, images, labels, weights)

    _train(
        ctx, "coarse", model, ctx.cfg.coarse, loss, finish=_recalibrate(ctx, "coarse", model, ctx.cfg.coarse)
    )
    accuracy = top1(ctx, _GeneratorLogits(model), ctx.train.samples) / 100.0
    epochs = ctx.cfg.coarse.epochs
    ctx.log.prune("coarse/eval_mode", after_step=-1)  # one record: a rerun or a resumed stage replaces it
    ctx.log.write("coarse/eval_mode", epochs, acc_generator=accuracy)
    ctx.print(
        f"[coarse] generator accuracy in eval mode (running statistics) on the training images: {accuracy:.2f}"
    )


def load_fine_parts(ctx: Context, stage: str) -> tuple[FineNet, lowcam.Evaluator]:
    """The stem + generator of ``stage`` (``"coarse"`` or ``"fine"``) and the trained evaluator."""
    if stage == "coarse":
        fine = FineNet(load_coarse(ctx))
    else:
        fine = load_model(ctx, stage, FineNet(build_coarse(ctx)))
    classifier = load_model(ctx, "evaluator", build_evaluator(ctx))
    return fine, recipe.frozen_evaluator(classifier, ctx.cfg)


def stage_fine(ctx: Context) -> None:
    """Stage 2: refine the generator's last blocks through the frozen evaluator (ORNet's main step)."""
    s = ctx.cfg.fine
    model, evaluator = load_fine_parts(ctx, "coarse")
    trainable = recipe.freeze_for_fine(model)
    evaluator.to(ctx.info.device)
    if ctx.cfg.runtime.channels_last:
        evaluator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    parts = recipe.fine_parts(ctx.cfg)

    def loss(runner: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> recipe.Losses:
        return recipe.fine_loss(runner, evaluator, parts, images, labels)

    set_modes = lambda: recipe.set_fine_modes(model, evaluator, parts, ctx.cfg)  # noqa: E731
    _train(
        ctx,
        "fine",
        model,
        s,
        loss,
        trainable,
        set_modes=set_modes,
        finish=_recalibrate(ctx, "fine", model, s),
    )


def cam_stages(cfg: Config) -> list[str]:
    """The CAM baseline's stages: ``cam`` (at ``cam.output_stride``), then ``cam_s<stride>`` for each of
    ``cam.extra_output_strides``."""
    return ["cam", *(f"cam_s{stride}" for stride in cfg.cam.extra_output_strides)]


def is_cam_stage(stage: str) -> bool:
    """``cam`` or an extra CAM stage ``cam_s<stride>``."""
    return stage == "cam" or (stage.startswith("cam_s") and stage[5:].isdigit())


def cam_output_stride(cfg: Config, num_classes: int, stage: str) -> int:
    """The output stride of a CAM stage: ``cam_s<stride>``'s own, or ``cam.output_stride`` for ``cam``
    (``null``: the stride whose map has the side of the generator's map on ``data.crop`` images)."""
    if stage != "cam":
        return int(stage.removeprefix("cam_s"))
    if cfg.cam.output_stride is not None:
        return cfg.cam.output_stride
    m = cfg.model
    return matching_output_stride(m.backbone, num_classes, m.base_width, cfg.data.crop)


def trained_cam_output_stride(ctx: Context, stage: str) -> int:
    """The output stride the CAM checkpoint of ``stage`` was trained at, from the config saved in it (every
    checkpoint the pipeline writes holds its config).

    Raises:
        CheckpointError: the checkpoint holds no config, or its config does not read.
    """
    path = checkpoint_path(ctx, stage)
    saved = checkpoint.load(path).get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: holds no saved config (not a checkpoint of this pipeline)")
    try:
        cfg = from_dict(saved)
    except ConfigError as error:
        raise CheckpointError(f"{path}: the config saved in it does not read ({error})") from None
    return cam_output_stride(cfg, ctx.num_classes, stage)


def build_cam(
    ctx: Context, stage: str, weights: str | None = None, *, output_stride: int | None = None
) -> lowcam.CamNet:
    """The CAM network of ``stage`` (``cam`` or ``cam_s<stride>``) at ``output_stride`` (default: the
    stage's stride in the current config)."""
    if output_stride is None:
        output_stride = cam_output_stride(ctx.cfg, ctx.num_classes, stage)
    model = build_classifier(ctx.cfg.model.backbone, ctx.num_classes, weights, output_stride=output_stride)
    return lowcam.CamNet(model, output_stride=output_stride)


def stage_cam(ctx: Context, stage: str = "cam") -> None:
    """The CAM baseline ``stage`` (``cam`` or ``cam_s<stride>``): the backbone at the stage's output
    stride trained as a plain classifier on the same data, with the ``cam`` section's schedule and seed."""
    model = build_cam(ctx, stage, ctx.cfg.model.backbone_weights)
    ctx.print(f"[{stage}] CAM at output stride {model.output_stride}")
    _train(ctx, stage, model, ctx.cfg.cam, recipe.cam_loss)


STAGE_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "evaluator": stage_evaluator,
    "coarse": stage_coarse,
    "fine": stage_fine,
    "cam": stage_cam,
}


def run_stage(ctx: Context, stage: str) -> None:
    """Train ``stage`` (one of :data:`STAGE_FUNCTIONS` or an extra CAM stage ``cam_s<stride>``)."""
    if is_cam_stage(stage):
        stage_cam(ctx, stage)
    else:
        STAGE_FUNCTIONS[stage](ctx)


def stage_seed(cfg: Config, stage: str) -> int:
    """The seed of ``stage`` (the extra CAM stages share ``cam.seed``)."""
    section = "cam" if is_cam_stage(stage) else stage
    seed: int = getattr(cfg, section).seed
    return seed
