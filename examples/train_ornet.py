"""Train and evaluate ORNet (Xie et al., ICCV 2021) with lowcam's components.

Stages, each reading the previous stage's checkpoint from ``output_dir``:

- ``evaluator``: fine-tune the evaluator classifier (stage 0);
- ``coarse``: the backbone split after its stem + the activation map generator (stage 1);
- ``fine``: refine the generator against the frozen evaluator with attentive erasing, the area loss and
  the weighted entropy loss (stage 2);
- ``cam``: a plain CAM classifier on the same backbone, as a baseline (when ``cam.enabled``), at the
  stage maps' resolution by default (``cam.output_stride``); ``cam.extra_output_strides`` adds one CAM
  stage ``cam_s<stride>`` each (``--cam.extra_output_strides '[32]'``), trained with ``cam``;
- ``eval``: both protocols on every map, ``metrics.json``, PNG grids and a comparison table;
- ``all``: the above in order.

``--resume`` skips finished stages and continues an interrupted one, after checking that every stage's
saved config matches the current one; when a key a stage depends on changed, it stops before training and
names the keys. ``--restart-from STAGE`` then trains that stage and every later one afresh. The whole
config is checked against the data set before any training. Every key is documented in docs/pipeline.md.

Examples::

    python examples/synthetic.py --out data/synthetic
    python examples/train_ornet.py --config examples/configs/synthetic.yaml --stage all
    python examples/train_ornet.py --config examples/configs/cub.yaml --stage fine --data.root /data/CUB_200_2011
    torchrun --nproc_per_node=4 examples/train_ornet.py --config examples/configs/imagenet.yaml --stage all

Every config value can be overridden with ``--section.sub.key VALUE`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from ornet.checkpoint import CheckpointError
from ornet.checks import config_problems, resume_conflicts, validate
from ornet.config import Config, ConfigError, add_override_arguments, load_config, overrides_from, to_dict
from ornet.distributed import DistInfo, setup, teardown
from ornet.evaluation import evaluate
from ornet.files import WriteError, atomic_write_text, check_writable_folder, remove_temporaries
from ornet.logs import RunLog
from ornet.report import format_table
from ornet.runtime import Context, load_data, seed_everything, set_determinism
from ornet.stages import STAGES, cam_stages, run_stage, stage_seed
from ornet.training import StageStopped, checkpoint_path, stage_done

from lowcam.metrics import DataError

TRAINED = tuple(s for s in STAGES if s != "eval")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``--config``, ``--stage``, ``--resume``, ``--restart-from`` and one option per
    config field."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML config (defaults: the paper's CUB setting)"
    )
    parser.add_argument("--stage", choices=[*STAGES, "all"], default="all", help="what to run (default all)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue interrupted stages, skip finished ones; refuses when a stage's saved config differs",
    )
    parser.add_argument(
        "--restart-from",
        choices=TRAINED,
        default=None,
        help="train this stage and every later one afresh (their checkpoints are replaced); resume the earlier ones",
    )
    add_override_arguments(parser)
    return parser.parse_args(argv)


def _fail(kind: str, error: BaseException) -> int:
    print(f"{kind}: {error}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the requested stages; returns the exit status (2: a config, data or checkpoint error found
    before training; 3: stopped by ``runtime.stop_after_epoch``)."""
    args = parse_args(argv)
    found: list[str] = []  # problems of the lowcam sections, listed with the others once the data is read
    try:
        cfg = load_config(args.config, overrides_from(args), problems=found)
    except ConfigError as error:
        return _fail("config error", error)
    # keys needed to read the data are checked now; the rest once the data set is known (all listed then)
    early = [p for p in config_problems(cfg) if p.startswith(("data.", "runtime.device"))]
    if early:
        return _fail("config error", ConfigError("invalid configuration:\n  " + "\n  ".join(early)))
    try:
        info = setup(cfg.runtime.device)
    except ValueError as error:
        return _fail("config error", error)
    try:
        return _run(args, cfg, info, found)
    finally:
        teardown()


def _run(args: argparse.Namespace, cfg: Config, info: DistInfo, found: list[str]) -> int:
    if cfg.runtime.num_threads > 0:
        torch.set_num_threads(cfg.runtime.num_threads)
    set_determinism(cfg.runtime.deterministic)
    out = Path(cfg.output_dir)
    if info.is_main:
        try:
            check_writable_folder(out)
        except WriteError as error:
            return _fail("error", error)
        for part in remove_temporaries(out):
            print(f"removed {part}, left by a killed run")
    try:
        train, test = load_data(cfg)
        validate(cfg, num_classes=len(train.classes), found=found)
    except DataError as error:
        return _fail("data error", error)
    except ConfigError as error:
        return _fail("config error", error)
    if args.stage == "all":
        stages = ["evaluator", "coarse", "fine", *(["cam"] if cfg.cam.enabled else []), "eval"]
    else:
        stages = [args.stage]
    # the extra CAM baselines are stages of their own, trained whenever "cam" is
    order = [*(s for s in TRAINED if s != "cam"), *cam_stages(cfg), "eval"]
    stages = [s for s in order if s in stages or (s != "cam" and s in cam_stages(cfg) and "cam" in stages)]
    trained = [s for s in order if s != "eval"]
    fresh = set(trained[trained.index(args.restart_from) :]) if args.restart_from else set()
    resume = args.resume or args.restart_from is not None
    log = RunLog(out, enabled=info.is_main, tensorboard=cfg.runtime.tensorboard)
    ctx = Context(cfg, info, train, test, log)
    try:
        if resume:
            conflicts = resume_conflicts(out, [s for s in trained if s in stages and s not in fresh], cfg)
            if conflicts:
                first = next(s for s in trained if s in conflicts)
                first = "cam" if first.startswith("cam") else first
                lines = [f"  {stage}.pt: " + "; ".join(changes) for stage, changes in conflicts.items()]
                raise ConfigError(
                    "--resume: the config differs from the one these checkpoints were trained with:\n"
                    + "\n".join(lines)
                    + f"\nrestore those values, or retrain with --restart-from {first} (that stage and every "
                    "later one start afresh)"
                )
        # every artefact a requested stage reads is compared with the config it was trained with
        readers = {"evaluator": ("fine", "eval"), "coarse": ("fine", "eval")}  # the others: eval only
        read = [
            upstream
            for upstream in ("evaluator", "coarse", "fine", *cam_stages(cfg))
            if upstream not in stages and any(s in stages for s in readers.get(upstream, ("eval",)))
        ]
        for upstream, changes in resume_conflicts(out, read, cfg).items():
            path = checkpoint_path(ctx, upstream)
            ctx.print(f"warning: {path} was trained with other settings: " + "; ".join(changes))
        if info.is_main:
            atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    except ConfigError as error:
        log.close()
        return _fail("config error", error)
    except (CheckpointError, WriteError) as error:
        log.close()
        return _fail("error", error)
    ctx.print(
        f"{len(train.samples)} training / {len(test.samples)} evaluation images, {len(train.classes)} classes; "
        f"device {info.device}, {info.world_size} process(es); output in {out}"
    )
    began = time.perf_counter()
    try:
        for stage in stages:
            if stage == "eval":
                results = evaluate(ctx)
                if info.is_main:
                    ctx.print("\n" + format_table(results))
                    ctx.print(f"metrics and pictures in {out}")
                continue
            ctx.resume = resume and stage not in fresh
            if ctx.resume and stage_done(ctx, stage):
                ctx.print(f"[{stage}] finished earlier, skipped")
                continue
            seed_everything(stage_seed(cfg, stage), info.rank)
            stage_began = time.perf_counter()
            run_stage(ctx, stage)
            ctx.print(f"[{stage}] done in {time.perf_counter() - stage_began:.1f} s")
    except StageStopped as stopped:
        ctx.print(str(stopped))
        return 3
    except (CheckpointError, WriteError) as error:
        return _fail("error", error)
    finally:
        log.close()
    ctx.print(f"total {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
