"""Import the ORNet authors' released checkpoints into the pipeline's checkpoint files.

The authors' code (github.com/Sierkinhane/ORNet) releases three files, each a dict whose ``state_dict``
holds the parameters of one of its modules:

- the evaluator (``Evaluator`` of ``models/evaluator.py``: torchvision's VGG16 under ``model.``, its last
  linear layer ``model.classifier.6`` resized to the number of classes);
- the coarse model (``CoarseModel`` of ``models/model.py``: the ResNet-50 ``conv1``, ``bn1``,
  ``layer1``…``layer4``, ``fc`` and the generator ``att_layer4`` (``UNet`` of ``models/unet.py``),
  ``att_conv2`` (class head), ``att_conv3`` + ``bn_att3`` (map head));
- the fine model (``FineModel``: ``conv1``, ``bn1``, ``att_layer4``, ``att_conv3``, ``bn_att3`` and the
  evaluator again under ``vgg.model.``).

This script renames every tensor to the pipeline's names (:class:`ornet.models.CoarseNet`,
:class:`ornet.models.FineNet`, :func:`ornet.models.build_classifier`), checks the result against the
networks the config builds (names and shapes, all problems listed at once), and writes
``evaluator.pt``, ``coarse.pt`` and (with ``--fine``) ``fine.pt`` into the output folder as complete
checkpoints, atomically. Then::

    python examples/train_ornet.py --config C --output_dir D --stage eval   # evaluates the authors' models
    python examples/train_ornet.py --config C --output_dir D --stage fine   # stage 2 from their coarse model

Name map (original → pipeline; ``k`` = 1, 2, 3; ``j`` = 0, 1, 3, 4, the conv/BN positions of a block):

=================================================  ==================================================
``model.<vgg16 name>`` (evaluator file)            ``evaluator.pt``: ``<vgg16 name>``
``conv1.*``, ``bn1.*``                             ``stem.0.*``, ``stem.1.*``
``layer1.*`` … ``layer4.*``, ``fc.*``              ``body.0.*`` … ``body.3.*``, ``body.6.*``
``att_layer4.down_k.1.UConv.j.*``                  ``generator.down{k}.j.*``
``att_layer4.up_k.conv.UConv.j.*``                 ``generator.up{k}.block.j.*``
``att_conv3.weight``, ``bn_att3.*``                ``generator.map_head.0.weight``, ``generator.map_head.1.*``
``att_conv2.weight``                               ``generator.class_head.weight``
``vgg.model.*`` (fine file)                        checked equal to the evaluator file, not stored again
=================================================  ==================================================

The fine file has no class head (the authors' ``FineModel`` drops ``att_conv2``, which stage 2 never
trains), so ``fine.pt`` takes it from the coarse file. A ``module.`` prefix on every key (DataParallel) is
removed. The coarse model's ``fc`` has 1000 outputs (torchvision's default head) when the class count is
not 200, as the authors' ``CoarseModel`` builds it (the pipeline's ``quirks.reinit_layer4``); it is
imported at that size, and the pipeline rebuilds it at the size ``coarse.pt`` holds. A missing BatchNorm
``num_batches_tracked`` (files from torch < 0.4.1) is filled with 0, which changes nothing at evaluation.
Anything else missing, unexpected or of another shape is an error.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ornet import checkpoint, recipe
from ornet.config import Config, ConfigError, add_override_arguments, load_config, overrides_from, to_dict
from ornet.models import CoarseNet, FineNet, build_classifier
from torch import nn

#: (original prefix, pipeline prefix) of the coarse and fine models; the first matching rule applies.
_UNET = [
    *((f"att_layer4.down_{k}.1.UConv.", f"generator.down{k}.") for k in (1, 2, 3)),
    *((f"att_layer4.up_{k}.conv.UConv.", f"generator.up{k}.block.") for k in (1, 2, 3)),
]
GENERATOR_RULES: list[tuple[str, str]] = [
    ("conv1.", "stem.0."),
    ("bn1.", "stem.1."),
    *_UNET,
    ("att_conv3.", "generator.map_head.0."),
    ("bn_att3.", "generator.map_head.1."),
    ("att_conv2.", "generator.class_head."),
]
COARSE_RULES: list[tuple[str, str]] = [
    *GENERATOR_RULES,
    *((f"layer{k}.", f"body.{k - 1}.") for k in (1, 2, 3, 4)),
    ("fc.", "body.6."),
]
EVALUATOR_RULES: list[tuple[str, str]] = [("model.", "")]
#: the fine file's copy of the evaluator
FINE_EVALUATOR_PREFIX = "vgg."
CLASS_HEAD = "generator.class_head.weight"


class ImportFailed(ValueError):
    """A file that cannot be imported: unreadable, not a state dict, or not the expected network."""


@dataclass
class Imported:
    """One converted file: the pipeline's state dict and what the conversion did."""

    state: dict[str, torch.Tensor]
    source: Path
    filled: list[str]


def to_pipeline_name(original: str, rules: Sequence[tuple[str, str]]) -> str | None:
    """The pipeline's name of the original parameter ``original``, or ``None`` if no rule covers it."""
    for old, new in rules:
        if original.startswith(old):
            return new + original[len(old) :]
    return None


def to_original_name(name: str, rules: Sequence[tuple[str, str]]) -> str | None:
    """The inverse of :func:`to_pipeline_name`."""
    for old, new in rules:
        if name.startswith(new):
            return old + name[len(new) :]
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of one of the authors' files (``torch.load(weights_only=True)``, on the CPU).

    A file that is already a bare state dict is accepted too; a ``module.`` prefix on every key is removed.

    Raises:
        FileNotFoundError: no such file.
        ImportFailed: the file is unreadable, or holds no state dict of tensors.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, zipfile and pickle errors
        text = str(error)
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if isinstance(error, pickle.UnpicklingError) and unsafe:
            raise ImportFailed(
                f"{path}: holds a Python object ({unsafe[1]}) that the safe loader (weights_only=True) "
                f"refuses; the {what} file must hold only tensors and plain Python values"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        reason = detail[1].strip() if detail else _first_line(error)
        raise ImportFailed(
            f"{path}: cannot be read as a PyTorch checkpoint, the file is damaged or of another kind "
            f"({type(error).__name__}: {reason})"
        ) from None
    if not isinstance(obj, Mapping):
        raise ImportFailed(
            f"{path}: expected a dict with a 'state_dict' entry (the authors' {what} file), "
            f"got {type(obj).__name__}"
        )
    state = obj.get("state_dict", obj)
    if not isinstance(state, Mapping) or not state:
        raise ImportFailed(f"{path}: 'state_dict' must be a non-empty dict, got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(repr(k) for k in bad[:5])
        raise ImportFailed(
            f"{path}: expected a state dict of tensors (the authors' {what} file), "
            f"but {len(bad)} entries are not named tensors: {shown}"
        )
    out: dict[str, torch.Tensor] = dict(state)
    if all(k.startswith("module.") for k in out):
        out = {k.removeprefix("module."): v for k, v in out.items()}
    return out


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def convert(
    state: Mapping[str, torch.Tensor],
    rules: Sequence[tuple[str, str]],
    target: Mapping[str, torch.Tensor],
    source: Path,
    what: str,
    hints: Sequence[str] = (),
) -> Imported:
    """Rename ``state`` with ``rules`` and check it against ``target`` (the pipeline network's state dict,
    possibly on the meta device): every name present, nothing unexpected, every shape equal.

    Raises:
        ImportFailed: listing every missing key, every unexpected key and every shape mismatch, in the
            file's (original) names, with the pipeline's name and shape beside the mismatches.
    """
    renamed: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for original, tensor in state.items():
        name = to_pipeline_name(original, rules)
        if name is None or name not in target:
            unexpected.append(original)
            continue
        if tuple(tensor.shape) != tuple(target[name].shape):
            mismatched.append(
                f"{original}: {_shape(tensor.shape)} in the file, the pipeline's {name} is "
                f"{_shape(target[name].shape)}"
            )
            continue
        renamed[name] = tensor
    missing: list[str] = []
    filled: list[str] = []
    for name, tensor in target.items():
        original = to_original_name(name, rules) or name
        if name in renamed or original in state:
            continue
        if name.endswith("num_batches_tracked"):
            renamed[name] = torch.zeros((), dtype=tensor.dtype)
            filled.append(original)
        else:
            missing.append(original)
    if missing or unexpected or mismatched:
        lines = [f"{source} is not the authors' {what} for this config:"]
        lines += [f"  note: {hint}" for hint in hints]
        if missing:
            lines.append(f"  missing keys ({len(missing)}):")
            lines += [f"    {k}" for k in missing]
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}):")
            lines += [f"    {k}" for k in unexpected]
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}):")
            lines += [f"    {k}" for k in mismatched]
        raise ImportFailed("\n".join(lines))
    return Imported(renamed, source, filled)


def infer_num_classes(state: Mapping[str, torch.Tensor], source: Path) -> int:
    """The number of classes of the authors' coarse model (the rows of its class head or of ``fc``)."""
    for key in ("att_conv2.weight", "fc.weight"):
        tensor = state.get(key)
        if tensor is not None and tensor.dim() >= 1:
            return int(tensor.shape[0])
    raise ImportFailed(
        f"{source}: cannot tell the number of classes: neither att_conv2.weight nor fc.weight is in the "
        "file (is it the authors' coarse model, cub_coarse_best_model/last_epoch.pth?)"
    )


def coarse_head_size(state: Mapping[str, torch.Tensor], num_classes: int) -> int:
    """Outputs of the coarse model's ResNet head ``fc`` as the authors' ``CoarseModel`` builds it:
    ``num_classes`` for 200 classes and torchvision's default 1000 for any other class count (its fresh
    ``layer4`` and ``fc`` come from ``models.resnet50()``; the pipeline's ``quirks.reinit_layer4``). A
    file whose ``fc`` has ``num_classes`` rows is accepted too; any other size is reported as a shape
    mismatch."""
    return recipe.saved_coarse_head(
        {to_pipeline_name(k, COARSE_RULES) or k: v for k, v in state.items() if k == "fc.weight"},
        num_classes,
    )


def _hints(
    cfg: Config, num_classes: int, coarse: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]
) -> list[str]:
    """Plain-language reasons for a whole family of shape mismatches."""
    hints: list[str] = []
    width = cfg.model.base_width
    first = coarse.get("att_layer4.down_1.1.UConv.0.weight")
    if first is not None and first.dim() == 4 and first.shape[0] != 2 * width:
        hints.append(
            f"the authors' U-Net has base width {first.shape[0] // 2} (att_layer4.down_1.1.UConv.0.weight "
            f"has {first.shape[0]} output channels); the config's model.base_width is {width}"
        )
    fc = coarse.get("fc.weight")
    if fc is not None and fc.dim() == 2 and fc.shape[0] not in (num_classes, recipe.REFERENCE_HEAD):
        hints.append(
            f"fc.weight has {fc.shape[0]} rows; the authors' coarse model has {num_classes} (the class count "
            f"of att_conv2.weight) or, for a class count other than 200, {recipe.REFERENCE_HEAD} "
            "(torchvision's default head)"
        )
    for key in ("model.classifier.6.weight", "vgg.model.classifier.6.weight", "model.fc.weight"):
        head = other.get(key)
        if head is not None and head.dim() == 2 and head.shape[0] != num_classes:
            hints.append(f"{key} has {head.shape[0]} classes, the coarse model {num_classes}")
    return hints


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _payload(cfg: Config, stage: str, imported: Imported, num_classes: int) -> dict[str, Any]:
    """A complete checkpoint with the keys the pipeline writes (no optimizer or scheduler state)."""
    epochs = int(getattr(cfg, stage).epochs)
    return {
        "model": imported.state,
        "optimizer": None,
        "scheduler": None,
        "epoch": epochs,
        "epochs": epochs,
        "complete": True,
        "rng": [checkpoint.rng_states()],
        "config": to_dict(cfg),
        "classes": [str(k) for k in range(num_classes)],
        "imported_from": {
            "file": str(imported.source.resolve()),
            "sha256": _sha256(imported.source),
            "code": "github.com/Sierkinhane/ORNet",
            "filled": list(imported.filled),
        },
    }


def _meta(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict())


def import_original(
    cfg: Config, evaluator: Path, coarse: Path, fine: Path | None = None, *, overwrite: bool = False
) -> dict[str, Path]:
    """Convert the authors' files and write ``evaluator.pt``, ``coarse.pt`` (and ``fine.pt``) into
    ``cfg.output_dir``. Every file is read and checked before anything is written; each is written
    atomically. Returns ``{stage: path}`` of the files written.

    Raises:
        FileNotFoundError: an input file does not exist.
        ImportFailed: an input file is not the expected network (all problems listed), the fine file's
            evaluator differs from the evaluator file, or an output exists and ``overwrite`` is off.
    """
    backbone, evaluator_arch, width = cfg.model.backbone, cfg.model.evaluator, cfg.model.base_width
    out = Path(cfg.output_dir)
    targets = {"evaluator": out / "evaluator.pt", "coarse": out / "coarse.pt", "fine": out / "fine.pt"}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise ImportFailed(
            f"{out} already holds {', '.join(existing)}; choose another --output_dir or pass --overwrite"
        )

    problems: list[str] = []

    def read(path: Path, what: str) -> dict[str, torch.Tensor]:
        try:
            return read_state_dict(path, what)
        except ImportFailed as error:
            problems.append(str(error))
            return {}

    coarse_state = read(coarse, "coarse model")
    evaluator_state = read(evaluator, "evaluator")
    fine_state = read(fine, "fine model") if fine is not None else {}
    if problems:
        raise ImportFailed("\n".join(problems))
    num_classes = infer_num_classes(coarse_state, coarse)
    head = coarse_head_size(coarse_state, num_classes)
    with torch.device("meta"):
        coarse_net = CoarseNet(build_classifier(backbone, head), num_classes, width)
        classifier = build_classifier(evaluator_arch, num_classes)
    hints = _hints(cfg, num_classes, coarse_state, {**evaluator_state, **fine_state})

    # (what, state, rules, target, source): every part is checked, then all problems are reported
    parts: list[tuple[str, dict[str, torch.Tensor], list[tuple[str, str]], dict[str, torch.Tensor], Path]] = [
        ("evaluator", evaluator_state, EVALUATOR_RULES, _meta(classifier), evaluator),
        ("coarse model", coarse_state, COARSE_RULES, _meta(coarse_net), coarse),
    ]
    if fine is not None:
        fine_target = _meta(FineNet(coarse_net))
        del fine_target[CLASS_HEAD]
        rest = {k: v for k, v in fine_state.items() if not k.startswith(FINE_EVALUATOR_PREFIX)}
        inner = {k: v for k, v in fine_state.items() if k.startswith(FINE_EVALUATOR_PREFIX)}
        inner_rules = [(FINE_EVALUATOR_PREFIX + old, new) for old, new in EVALUATOR_RULES]
        parts.append(("fine model", rest, GENERATOR_RULES, fine_target, fine))
        parts.append(("fine model's evaluator (vgg.*)", inner, inner_rules, _meta(classifier), fine))
    done: dict[str, Imported] = {}
    for what, state, rules, target, source in parts:
        try:
            done[what] = convert(state, rules, target, source, what, hints)
        except ImportFailed as error:
            problems.append(str(error))
    if problems:
        raise ImportFailed("\n".join(problems))

    converted = {"evaluator": done["evaluator"], "coarse": done["coarse model"]}
    if fine is not None:
        reference = done["evaluator"].state
        differ = [
            f"{FINE_EVALUATOR_PREFIX}{to_original_name(k, EVALUATOR_RULES)}"
            for k, v in done["fine model's evaluator (vgg.*)"].state.items()
            if not torch.equal(v, reference[k])
        ]
        if differ:
            raise ImportFailed(
                f"the evaluator stored in {fine} differs from {evaluator} in {len(differ)} tensors "
                f"({', '.join(differ[:5])}{', …' if len(differ) > 5 else ''}); the authors evaluate the "
                "fine model with the copy inside it: pass the evaluator it was trained with"
            )
        converted["fine"] = done["fine model"]
        converted["fine"].state[CLASS_HEAD] = done["coarse model"].state[CLASS_HEAD]

    written: dict[str, Path] = {}
    for stage, imported in converted.items():
        checkpoint.atomic_save(_payload(cfg, stage, imported, num_classes), targets[stage])
        written[stage] = targets[stage]
    if fine is None and targets["fine"].exists():
        # a stale fine.pt would be evaluated beside the imported coarse model
        targets["fine"].unlink()
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: the authors' files, ``--config``, ``--overwrite`` and the config overrides."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="The checkpoints go to the config's output_dir (set it with --output_dir D).",
    )
    parser.add_argument("--config", type=Path, default=None, help="the YAML config the pipeline will run")
    models = {
        "--evaluator": "the authors' evaluator (evaluator/best_epoch.pth)",
        "--coarse": "the authors' coarse model (…coarse…/last_epoch.pth)",
        "--fine": "the authors' fine model (…fine…/last_epoch.pth; optional)",
    }
    for flag, help_text in models.items():
        parser.add_argument(flag, type=Path, required=flag != "--fine", default=None, help=help_text)
    overwrite = "replace checkpoints already in the output folder (and remove a stale fine.pt)"
    parser.add_argument("--overwrite", action="store_true", help=overwrite)
    add_override_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Import the files; returns 0, or 2 with the reason on stderr."""
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, overrides_from(args))
        written = import_original(cfg, args.evaluator, args.coarse, args.fine, overwrite=args.overwrite)
    except (ConfigError, ImportFailed, FileNotFoundError) as error:
        print(f"{'config' if isinstance(error, ConfigError) else 'import'} error: {error}", file=sys.stderr)
        return 2
    for stage, path in written.items():
        print(f"[{stage}] {path}")
    config = f" --config {args.config}" if args.config is not None else ""
    print(
        "next: python examples/train_ornet.py"
        f"{config} --output_dir {cfg.output_dir} --stage eval   (or --stage fine to train stage 2)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
