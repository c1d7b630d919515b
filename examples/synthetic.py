"""Write the synthetic shapes (:func:`lowcam.data.write_shapes`) from the command line: a small WSOL data set in
CUB-200-2011's file format, one textured shape per image on clutter, for the from-scratch demo
(``examples/configs/synthetic.yaml``) and the tests.

Usage::

    python examples/synthetic.py --out data/synthetic --classes 4 --train-per-class 100 --test-per-class 50
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from birds import spec_from_args

from lowcam.data import ShapesSpec, write_shapes
from lowcam.data.synthetic import SHAPES

__all__ = ["main"]


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low`` (argparse turns the ValueError into a usage error)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    defaults = ShapesSpec()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (CUB layout)")
    parser.add_argument(
        "--classes", type=_int_at_least(1), default=defaults.classes, help=f"1..{len(SHAPES)}"
    )
    parser.add_argument("--train-per-class", type=_int_at_least(1), default=defaults.train_per_class)
    parser.add_argument("--test-per-class", type=_int_at_least(1), default=defaults.test_per_class)
    parser.add_argument("--min-size", type=_int_at_least(8), default=defaults.min_size)
    parser.add_argument("--max-size", type=_int_at_least(8), default=defaults.max_size)
    parser.add_argument("--clutter", type=_int_at_least(0), default=defaults.clutter)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    if args.classes > len(SHAPES):
        parser.error(f"--classes must be at most {len(SHAPES)}, got {args.classes}")
    if args.max_size < args.min_size:
        parser.error(f"--max-size ({args.max_size}) must be at least --min-size ({args.min_size})")
    spec = spec_from_args(ShapesSpec, args)
    count = write_shapes(args.out, spec)
    print(f"wrote {count} images ({spec.classes} classes) in CUB format to {args.out}")


if __name__ == "__main__":
    main()
