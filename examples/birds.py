"""Write the synthetic birds (:func:`lowcam.data.write_birds`) from the command line: the data set that has the
WSOL problem (the class is decided by the head, about 15 % of the bird's box; the box is the whole bird).

Its options are :class:`lowcam.data.BirdSpec`'s fields; ``make demo`` runs it. Usage::

    python examples/birds.py --out data/birds --classes 4 --train-per-class 150 --test-per-class 50
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from lowcam.data import BirdSpec, write_birds

__all__ = ["main", "spec_from_args"]

_Spec = TypeVar("_Spec")


def spec_from_args(spec_type: type[_Spec], args: argparse.Namespace, **overrides: Any) -> _Spec:
    """``spec_type`` (a data-set dataclass) from the parsed arguments named as its fields (the others keep
    their defaults), then ``overrides``."""
    values = {f.name: getattr(args, f.name) for f in fields(spec_type) if hasattr(args, f.name)}  # type: ignore[arg-type]
    return spec_type(**{**values, **overrides})


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: the options are :class:`BirdSpec`'s fields (a bad value is
    ``parser.error``, exit status 2)."""
    defaults = BirdSpec()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (CUB layout)")
    parser.add_argument("--classes", type=int, default=defaults.classes)
    parser.add_argument("--train-per-class", type=int, default=defaults.train_per_class)
    parser.add_argument("--test-per-class", type=int, default=defaults.test_per_class)
    parser.add_argument("--clutter", type=int, default=defaults.clutter)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--size", type=int, default=defaults.size, help="image side in pixels")
    parser.add_argument("--head", type=float, default=defaults.head, help="head radius / bird length")
    parser.add_argument(
        "--background-cue",
        type=float,
        default=defaults.background_cue,
        help="probability that the background hue is the class's (0 = neutral)",
    )
    parser.add_argument(
        "--body-cue",
        type=float,
        default=defaults.body_cue,
        help="probability that the body's hue is the class's (0 = every body an earth tone)",
    )
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(BirdSpec, args)
    except ValueError as error:
        parser.error(str(error))
    count = write_birds(args.out, spec)
    print(f"wrote {count} bird images ({spec.classes} classes) in CUB format to {args.out}")


if __name__ == "__main__":
    main()
