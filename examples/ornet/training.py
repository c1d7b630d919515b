"""The training loop every stage shares: bf16 autocast, progress bars, the JSONL log, one atomic
checkpoint per epoch, ``--resume`` and the evaluator's epoch selection.

A stage's checkpoint is ``<output_dir>/<stage>.pt`` (payload keys in :mod:`ornet.checkpoint`); the next
stage reads it with :func:`load_model`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from lowcam.data import Sample
from ornet import checkpoint
from ornet.checkpoint import CheckpointError
from ornet.config import to_dict
from ornet.distributed import all_reduce_sum, barrier
from ornet.models import state_differences
from ornet.runtime import Batch, Context, autocast, batches, cosine, seed_everything, train_loader

ModuleT = TypeVar("ModuleT", bound=nn.Module)


class StageStopped(RuntimeError):
    """Raised when ``runtime.stop_after_epoch`` ends a stage early (a simulated kill)."""


def checkpoint_path(ctx: Context, stage: str) -> Path:
    """``<output_dir>/<stage>.pt``."""
    return ctx.out / f"{stage}.pt"


def stage_done(ctx: Context, stage: str) -> bool:
    """Whether ``<stage>.pt`` exists and is complete (then ``--resume`` skips the stage)."""
    path = checkpoint_path(ctx, stage)
    return path.is_file() and bool(checkpoint.load(path).get("complete", False))


def load_model(ctx: Context, stage: str, model: ModuleT) -> ModuleT:
    """Load the finished ``stage``'s weights into ``model`` (the selected evaluator epoch when the
    checkpoint has one).

    Raises:
        CheckpointError: the checkpoint is incomplete, unreadable or made for another architecture (the
            message lists the missing, unexpected and mismatched keys).
    """
    weights, source = load_weights(ctx, stage)
    load_strict(model, weights, source)
    return model


def load_weights(ctx: Context, stage: str) -> tuple[dict[str, Any], str]:
    """The finished ``stage``'s state dict (the selected evaluator epoch when the checkpoint has one) and
    the checkpoint's path, as :func:`load_model` reads them.

    Raises:
        CheckpointError: the checkpoint is incomplete or unreadable, or holds no state dict.
    """
    path = checkpoint_path(ctx, stage)
    state = checkpoint.load(path)
    if not state.get("complete", False):
        raise CheckpointError(f"{path} is incomplete (epoch {state.get('epoch')}); resume stage {stage!r}")
    weights = state.get("selected_model", state.get("model"))
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: no 'model' state dict in the checkpoint")
    return weights, str(path)


def load_strict(model: nn.Module, weights: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(weights)``, all or nothing, with one error listing every difference."""
    _skipped, problems = state_differences(model.state_dict(), weights)
    if problems:
        raise CheckpointError(
            f"{source} does not fit a {type(model).__name__} built from this config: {problems}"
        )
    model.load_state_dict(weights)


def _gather_rng(ctx: Context) -> list[dict[str, Any]]:
    states = checkpoint.rng_states()
    if not ctx.info.distributed:
        return [states]
    gathered: list[Any] = [None] * ctx.info.world_size
    dist.all_gather_object(gathered, states)
    return gathered


def run_epoch(
    batches: Iterable[Batch],
    step: Callable[[Batch], dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[dict[str, torch.Tensor], int]:
    """One epoch of the one training loop (the pipeline's stages and ``cam_with_lowcam.py``).

    For each batch: ``step(batch)`` returns a dict of losses whose ``"loss"`` entry is minimised; then the
    backward pass, the optimiser step and the scheduler step (per iteration). Returns each loss's sum
    weighted by the batch size, accumulated as float32 tensors on the device (no host sync per step),
    and the number of samples.
    """
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for batch in batches:
        losses = step(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        scheduler.step()
        size = batch[0].shape[0]
        count += size
        for key, value in losses.items():
            weighted = value.detach().float() * size
            sums[key] = sums[key] + weighted if key in sums else weighted
    return sums, count


def _mean_over_ranks(ctx: Context, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
    keys = sorted(sums)
    local = [sums[k].to("cpu", torch.float64) for k in keys]  # the epoch's one host sync
    packed = torch.stack([*local, torch.tensor(float(count), dtype=torch.float64)])
    packed = all_reduce_sum(packed, ctx.info)
    total = max(packed[-1].item(), 1.0)
    return {k: packed[i].item() / total for i, k in enumerate(keys)}


def train_epochs(
    ctx: Context,
    stage: str,
    model: nn.Module,
    runner: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    step: Callable[[Batch], dict[str, torch.Tensor]],
    samples: list[Sample] | None = None,
    set_modes: Callable[[], None] = lambda: None,
    select: Callable[[], float] | None = None,
    finish: Callable[[], None] | None = None,
) -> None:
    """Train ``model`` (through ``runner``, its DDP/compiled form) for ``epochs`` epochs on ``samples``
    (default: the training split).

    ``step(batch)`` returns a dict of losses whose ``"loss"`` entry is minimised. After each epoch the
    main process writes ``<stage>.pt`` atomically, then logs the epoch (so a kill between the two never
    logs an epoch twice). With ``select``, called after each epoch on every process, the epoch with the
    highest score (the first on ties) is kept as ``selected_model``. ``finish``, when given, runs after the
    last epoch's steps, before that epoch is scored and saved. With ``ctx.resume`` an incomplete
    checkpoint is continued from its epoch with its RNG states, giving the result of an unbroken run.
    """
    path = checkpoint_path(ctx, stage)
    chosen = ctx.train.samples if samples is None else samples
    scheduler = cosine(optimizer, epochs * len(train_loader(ctx, chosen, batch_size, 0, seed)))
    start = 0
    best: dict[str, Any] = {}
    if ctx.resume and path.is_file():
        state = checkpoint.load(path)
        model.load_state_dict(state["model"])
        if state.get("optimizer") is not None:  # a finished stage's file keeps no optimiser state
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["epoch"])
        best = {k: state[k] for k in ("selected_model", "selected_epoch", "selected_score") if k in state}
        rngs = state["rng"]
        if len(rngs) == ctx.info.world_size:
            checkpoint.set_rng_states(rngs[ctx.info.rank])
        else:
            ctx.print(
                f"[{stage}] world size changed ({len(rngs)} → {ctx.info.world_size}); RNG states reseeded"
            )
            seed_everything(seed + start, ctx.info.rank)
        ctx.print(f"[{stage}] resuming after epoch {start} of {epochs}")
    ctx.log.prune(f"{stage}/epoch", after_step=start)

    def save(epoch: int, rngs: list[dict[str, Any]] | None = None) -> None:
        payload = {
            "model": model.state_dict(),
            # the optimiser's moments (one to two copies of the weights) only matter for continuing an
            # unfinished stage: a finished stage's file drops them (None)
            "optimizer": optimizer.state_dict() if epoch < epochs else None,
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "epochs": epochs,
            "complete": epoch == epochs,
            "rng": rngs if rngs is not None else [checkpoint.rng_states()],
            "config": to_dict(ctx.cfg),
            "classes": list(ctx.train.classes),
            **best,
        }
        checkpoint.atomic_save(payload, path)

    if epochs == 0 or start >= epochs:
        if ctx.info.is_main:
            save(start)
        barrier(ctx.info)
        return
    for epoch in range(start, epochs):
        loader = train_loader(ctx, chosen, batch_size, epoch, seed)
        runner.train()
        set_modes()
        began = time.perf_counter()

        def autocast_step(batch: Batch) -> dict[str, torch.Tensor]:
            with autocast(ctx):
                return step(batch)

        bar = batches(loader, ctx, f"{stage} {epoch + 1}/{epochs}")
        sums, count = run_epoch(bar, autocast_step, optimizer, scheduler)
        means = _mean_over_ranks(ctx, sums, count)
        if finish is not None and epoch + 1 == epochs:
            finish()
        if select is not None:
            score = select()
            means["select_score"] = score
            if "selected_score" not in best or score > best["selected_score"]:
                best = {
                    "selected_model": copy.deepcopy(model.state_dict()),
                    "selected_epoch": epoch + 1,
                    "selected_score": score,
                }
        seconds = time.perf_counter() - began
        rngs = _gather_rng(ctx)
        if ctx.info.is_main:
            save(epoch + 1, rngs)
        barrier(ctx.info)
        ctx.log.write(
            f"{stage}/epoch", epoch + 1, lr=scheduler.get_last_lr()[0], seconds=round(seconds, 2), **means
        )
        ctx.print(
            f"[{stage}] epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4f}" for k, v in means.items())
        )
        stop = ctx.cfg.runtime.stop_after_epoch
        if stop and epoch + 1 == stop and epoch + 1 < epochs:
            raise StageStopped(
                f"[{stage}] stopped after epoch {stop} (runtime.stop_after_epoch); continue with --resume"
            )
