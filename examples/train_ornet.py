"""Train and evaluate ORNet (Xie et al., ICCV 2021) with lowcam's components.

Stages, each reading the previous stage's checkpoint from ``output_dir``:

- ``evaluator``: fine-tune the evaluator classifier (stage 0);
- ``coarse``: the backbone split after its stem + the activation map generator (stage 1);
- ``fine``: refine the generator against the frozen evaluator with attentive erasing, the area loss and
  the weighted entropy loss (stage 2);
- ``cam``: a plain CAM classifier on the same backbone, as a baseline (when ``cam.enabled``);
- ``eval``: both protocols on every map, ``metrics.json``, PNG grids and a comparison table;
- ``all``: the above in order (``--resume`` skips finished stages and continues an interrupted one).

Examples::

    python examples/synthetic.py --out data/synthetic
    python examples/train_ornet.py --config examples/configs/synthetic.yaml --stage all
    python examples/train_ornet.py --config examples/configs/cub.yaml --stage fine --data.root /data/CUB_200_2011
    torchrun --nproc_per_node=4 examples/train_ornet.py --config examples/configs/imagenet.yaml --stage all

Every config value can be overridden with ``--section.key VALUE`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from ornet import engine
from ornet.config import add_override_arguments, load_config, overrides_from, to_dict
from ornet.data import DataError
from ornet.distributed import setup, teardown
from ornet.logs import RunLog

STAGE_FUNCTIONS = {
    "evaluator": engine.stage_evaluator,
    "coarse": engine.stage_coarse,
    "fine": engine.stage_fine,
    "cam": engine.stage_cam,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``--config``, ``--stage``, ``--resume`` and one option per config field."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML config (defaults: the paper's CUB setting)"
    )
    parser.add_argument(
        "--stage", choices=[*engine.STAGES, "all"], default="all", help="what to run (default all)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue interrupted stages, skip finished ones"
    )
    add_override_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the requested stages; returns the exit status."""
    args = parse_args(argv)
    cfg = load_config(args.config, overrides_from(args))
    info = setup(cfg.runtime.device)
    if cfg.runtime.num_threads > 0:
        torch.set_num_threads(cfg.runtime.num_threads)
    out = Path(cfg.output_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    try:
        train, test = engine.load_data(cfg)
    except DataError as error:
        print(f"data error: {error}", file=sys.stderr)
        teardown()
        return 2
    log = RunLog(out, enabled=info.is_main, tensorboard=cfg.runtime.tensorboard)
    ctx = engine.Context(cfg, info, train, test, log, resume=args.resume)
    ctx.print(
        f"{len(train.samples)} training / {len(test.samples)} evaluation images, {len(train.classes)} classes; "
        f"device {info.device}, {info.world_size} process(es); output in {out}"
    )
    if args.stage == "all":
        stages = ["evaluator", "coarse", "fine", *(["cam"] if cfg.cam.enabled else []), "eval"]
    else:
        stages = [args.stage]
    began = time.perf_counter()
    try:
        for index, stage in enumerate(engine.STAGES):
            if stage not in stages:
                continue
            if stage == "eval":
                results = engine.evaluate(ctx)
                ctx.print("\n" + engine.format_table(results))
                ctx.print(f"metrics and pictures in {out}")
                continue
            if args.resume and engine.stage_done(ctx, stage):
                ctx.print(f"[{stage}] finished earlier, skipped")
                continue
            engine.seed_everything(cfg.seed + index, info.rank)
            stage_began = time.perf_counter()
            STAGE_FUNCTIONS[stage](ctx)
            ctx.print(f"[{stage}] done in {time.perf_counter() - stage_began:.1f} s")
    except engine.StageStopped as stopped:
        ctx.print(str(stopped))
        return 3
    finally:
        log.close()
        teardown()
    ctx.print(f"total {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
