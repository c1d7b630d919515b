"""The pipeline's configuration: typed dataclasses, YAML files and command-line overrides.

The configuration is nested: one section per stage, and inside a stage one section per lowcam component
that *is* that component's parameter dataclass (``fine.erasing``: :class:`lowcam.ErasingParams`,
``fine.area``: :class:`lowcam.AreaLossParams`, ``fine.entropy``: :class:`lowcam.EntropyParams`), so its
keys are the component's arguments and building the section is its validation. The training stages
share one optimiser section type (:class:`OptimConfig`).

A YAML file sets any subset of the fields (an unknown key is an error); every field can then be
overridden on the command line as ``--section.sub.key VALUE`` (``--fine.optim.lr 3e-4``,
``--fine.area.topk 4``, ``--model.backbone_weights null``). Values are parsed as YAML scalars and checked
against the field's type. Defaults are the paper's CUB setting; each deviation from the reference code is
a documented key (``docs/pipeline.md`` lists every key with its default and reference value).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

import lowcam
from lowcam.data import VerifyMode
from lowcam.metrics import IMAGENET_MEAN, IMAGENET_STD

#: Field metadata of a key that changes how a run goes, not what a stage trains: resuming never compares it.
RUN_ONLY = {"run_only": True}


@dataclass
class DataConfig:
    """Where the data is and how images are prepared.

    ``format`` is ``"cub"`` (CUB-200-2011 files under ``root``), ``"imagenet"`` (``train_dir`` class
    folders, ``val_dir`` images with PASCAL-VOC XML in ``annotations_dir``) or ``"wsol"`` (wsolevaluation
    metadata: ``metadata_dir/{train,<eval_split>}`` relative to ``root``; for ILSVRC the 2012 validation
    set is the ``test`` split there, ``val`` is ImageNetV2). ``drop_last``: drop the last, incomplete
    training batch (reference ``false``).
    """

    format: Literal["cub", "imagenet", "wsol"] = "cub"
    root: str = "data/CUB_200_2011"
    train_dir: str = "data/ILSVRC/train"
    val_dir: str = "data/ILSVRC/val"
    annotations_dir: str = "data/ILSVRC/val_xml"
    metadata_dir: str = "metadata/CUB"
    eval_split: str = "test"
    resize: int = 256
    crop: int = 224
    score_size: int = field(default=224, metadata=RUN_ONLY)
    flip: bool = True
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    drop_last: bool = False
    num_workers: int = field(default=4, metadata=RUN_ONLY)
    verify_images: VerifyMode = field(default="header", metadata=RUN_ONLY)
    limit: int = 0


@dataclass
class ModelConfig:
    """Networks. ``*_weights``: a torchvision weight-enum name (``IMAGENET1K_V1``, ``DEFAULT``), a local
    state-dict file, or ``null`` for random initialisation. ``base_width`` and ``padding_mode``: the
    generator's (``lowcam.LowLevelActivationGenerator``)."""

    backbone: str = "resnet50"
    backbone_weights: str | None = "IMAGENET1K_V1"
    evaluator: str = "vgg16"
    evaluator_weights: str | None = "IMAGENET1K_V1"
    base_width: int = 64
    padding_mode: Literal["zeros", "replicate"] = "zeros"


@dataclass
class QuirksConfig:
    """Behaviours of the reference code, as switches whose defaults reproduce it.

    ``follow_parent_mode``: frozen modules (stem, frozen generator blocks, evaluator) stay in train mode
    during stage 2, so BatchNorm statistics move and the evaluator's dropout is on (``lowcam.Evaluator``'s
    ``follow_parent_mode``). ``upsample``: how the activation map is resized onto the image for the
    evaluator (``lowcam.Evaluator``'s ``upsample``; reference ``nearest``). ``reinit_layer4``: when the
    data set does not have 200 classes, re-initialise ``layer4`` and ``fc`` of the stage-1 ResNet instead
    of loading them pretrained, ``fc`` at torchvision's default size of 1000 outputs whatever the class
    count (the reference does this for ILSVRC; no effect without backbone weights).
    """

    follow_parent_mode: bool = True
    upsample: str = "nearest"
    reinit_layer4: bool = True


@dataclass
class OptimConfig:
    """An optimiser with a cosine decay to zero stepped per iteration (as the reference).

    ``name``: ``sgd`` (``torch.optim.SGD(lr, momentum, weight_decay)``) or ``adam``
    (``torch.optim.Adam(lr, weight_decay)``; ``momentum`` is not used).
    """

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4


def _sgd(lr: float = 1e-3) -> OptimConfig:
    return OptimConfig("sgd", lr, 0.9, 5e-4)


@dataclass
class EvaluatorStage:
    """Stage 0: fine-tune the evaluator classifier. ``epochs: 0`` keeps the pretrained classifier as it
    is (ILSVRC).

    ``select``: which epoch stage 2 and the evaluation use: ``test_top1`` (the reference: the epoch with
    the best top-1 on the evaluation split — that split then also chose the model), ``holdout`` (the best
    top-1 on ``holdout_fraction`` of the training set, held out of the evaluator's training: the honest
    alternative) or ``last``.
    """

    epochs: int = 200
    batch_size: int = 16
    seed: int = 1
    optim: OptimConfig = field(default_factory=_sgd)
    select: Literal["test_top1", "holdout", "last"] = "test_top1"
    holdout_fraction: float = 0.1


@dataclass
class CoarseLossWeights:
    """``loss = generator · CE(generator logits) + main · CE(main logits)`` (reference: 1 and 1)."""

    generator: float = 1.0
    main: float = 1.0


@dataclass
class CoarseStage:
    """Stage 1: backbone + generator trained on CE(generator) + CE(main). The reference code does not
    ship this stage: 70 epochs at lr 1e-3 follow its config, the seed is the reference config's ``SEED``
    (assumptions). ``loss_weights`` weighs the two cross-entropies (reference 1 and 1). ``recalibrate_bn``:
    see :func:`ornet.recipe.recalibrate_batchnorm` (reference ``false``)."""

    epochs: int = 70
    batch_size: int = 16
    seed: int = 1
    optim: OptimConfig = field(default_factory=_sgd)
    loss_weights: CoarseLossWeights = field(default_factory=CoarseLossWeights)
    recalibrate_bn: bool = False


@dataclass
class LossWeights:
    """``loss = CE + area · AreaLoss + entropy · WeightedEntropyLoss``."""

    area: float = 0.02
    entropy: float = 1.5


@dataclass
class FineStage:
    """Stage 2: refine the generator's last two decoder blocks and map head against the evaluator.
    ``recalibrate_bn``: see :func:`ornet.recipe.recalibrate_batchnorm` (reference ``false``)."""

    epochs: int = 30
    batch_size: int = 16
    seed: int = 517
    optim: OptimConfig = field(default_factory=lambda: OptimConfig("adam", 1e-4, 0.9, 0.0))
    area: lowcam.AreaLossParams = field(default_factory=lowcam.AreaLossParams)
    entropy: lowcam.EntropyParams = field(default_factory=lowcam.EntropyParams)
    erasing: lowcam.ErasingParams = field(default_factory=lowcam.ErasingParams)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    recalibrate_bn: bool = False


@dataclass
class CamStage:
    """A plain CAM baseline: the backbone trained as an ordinary classifier (not part of the paper).

    ``output_stride``: the stride of the CAM's feature, 4, 8, 16 or 32 (the ResNet as it is), or ``null``
    for the stride whose map has the side of the ORNet stage maps (stride 4 for ResNets: the same map
    resolution, a like-for-like comparison). ``extra_output_strides``: more CAM baselines, one per
    stride, each trained with this section's schedule and seed as its own stage ``cam_s<stride>``
    (checkpoint ``cam_s<stride>.pt``, its own row in the table and in ``metrics.json``).
    """

    enabled: bool = field(default=False, metadata=RUN_ONLY)
    epochs: int = 30
    batch_size: int = 16
    seed: int = 1
    optim: OptimConfig = field(default_factory=_sgd)
    output_stride: int | None = None
    extra_output_strides: list[int] = field(default_factory=list, metadata=RUN_ONLY)


@dataclass
class EvalConfig:
    """Evaluation: batch size, number of images in the PNG grid, and optional score maps on disk.

    ``scoremap_root``: when set, the ``scoremap_source`` map of every evaluation image is written as
    ``<scoremap_root>/<image_id>.npy`` in the wsolevaluation layout (``data.score_size``² float32 in
    [0, 1], min–max normalised as ``lowcam.metrics.prepare_scoremap`` prepares it).
    """

    batch_size: int = 32
    pictures: int = 16
    scoremap_root: str | None = None
    scoremap_source: str = "fine"


@dataclass
class RuntimeConfig:
    """Execution switches. ``stop_after_epoch`` ends a stage after that epoch (simulates a kill).

    ``device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. ``backend``: passed to every lowcam component
    (``auto``, ``torch``, ``triton``). ``deterministic``: cuDNN's deterministic algorithms, no autotuning.
    """

    device: str = field(default="auto", metadata=RUN_ONLY)
    backend: str = field(default="auto", metadata=RUN_ONLY)
    deterministic: bool = field(default=True, metadata=RUN_ONLY)
    num_threads: int = field(default=0, metadata=RUN_ONLY)
    bf16: bool = False
    channels_last: bool = field(default=False, metadata=RUN_ONLY)
    compile: bool = field(default=False, metadata=RUN_ONLY)
    tensorboard: bool = field(default=False, metadata=RUN_ONLY)
    progress: bool = field(default=True, metadata=RUN_ONLY)
    stop_after_epoch: int = field(default=0, metadata=RUN_ONLY)


@dataclass
class Config:
    """The whole configuration of ``examples/train_ornet.py``."""

    output_dir: str = "runs/cub"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quirks: QuirksConfig = field(default_factory=QuirksConfig)
    evaluator: EvaluatorStage = field(default_factory=EvaluatorStage)
    coarse: CoarseStage = field(default_factory=CoarseStage)
    fine: FineStage = field(default_factory=FineStage)
    cam: CamStage = field(default_factory=CamStage)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


#: The sections each stage's result depends on, its inputs' included; resuming compares them whole (but
#: for the :data:`RUN_ONLY` keys). An extra CAM stage ``cam_s<stride>`` is ``cam`` without
#: ``cam.output_stride`` (its stride is in its name).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "evaluator": ("data", "model", "runtime", "evaluator"),
    "coarse": ("data", "model", "runtime", "quirks", "coarse"),
    "fine": ("data", "model", "runtime", "quirks", "evaluator", "coarse", "fine"),
    "cam": ("data", "model", "runtime", "cam"),
}


class ConfigError(ValueError):
    """An unknown key or a value of the wrong type in a config file or override."""


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint`` (int → float is allowed); return the value. A ``Literal``
    is checked for its type only here: :func:`ornet.checks.validate` lists a value outside it."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        hint = type(typing.get_args(hint)[0])
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(name, value, option)
            except ConfigError:
                pass
        raise ConfigError(f"{name}: expected {hint}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_coerce(f"{name}[{k}]", v, item) for k, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected float, got {value!r}") from None
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{name}: expected int, got {value!r}")
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint):
        raise ConfigError(f"{name}: expected {hint.__name__}, got {value!r}")
    return value


def _build(target: Any, values: dict[str, Any], problems: list[str], prefix: str = "") -> Any:
    """``target`` (a section) with ``values`` replaced, built anew: a lowcam parameter dataclass validates
    itself. A section that does not build keeps its previous value and adds a line to ``problems``."""
    hints = typing.get_type_hints(type(target))
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in hints:
            raise ConfigError(f"unknown config key {name!r}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: expected a mapping, got {value!r}")
            changes[key] = _build(current, value, problems, prefix=f"{name}.")
        else:
            changes[key] = _coerce(name, value, hints[key])
    try:
        return dataclasses.replace(target, **changes)
    except (TypeError, ValueError) as error:
        problems.append(f"{prefix.rstrip('.')}: {error}")
        return target


def _merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _nested(name: str, value: Any) -> dict[str, Any]:
    *sections, key = name.split(".")
    nested: dict[str, Any] = {key: value}
    for section in reversed(sections):
        nested = {section: nested}
    return nested


def invalid(problems: list[str]) -> ConfigError:
    """The one error that lists every problem of a configuration."""
    return ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _walk(config: Any, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any], Any, Any]]:
    """``(dotted.name, field, value, type hint)`` of every leaf field of ``config``."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield from _walk(value, prefix=f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value, hints[f.name]


def leaves(config: Any) -> dict[str, tuple[Any, Any]]:
    """Every leaf field as ``dotted.name -> (value, type hint)``."""
    return {name: (value, hint) for name, _f, value, hint in _walk(config)}


def run_only_keys(config: Any) -> set[str]:
    """The keys marked :data:`RUN_ONLY`."""
    return {name for name, f, _value, _hint in _walk(config) if f.metadata.get("run_only")}


def load_config(
    path: str | Path | None, overrides: dict[str, str] | None = None, problems: list[str] | None = None
) -> Config:
    """Defaults, then the YAML file ``path``, then ``overrides`` (``dotted.name -> YAML text``).

    Each section is built once from all of them (so the order of the overrides does not matter).

    Raises:
        ConfigError: an unknown key or a value of the wrong type; a section that does not build (a
            lowcam parameter out of range) too, unless ``problems`` is given: then its line is appended
            there and the section keeps its default, so that the caller lists it with the other problems.
    """
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded
    for name, text in (overrides or {}).items():
        _merge(data, _nested(name, yaml.safe_load(text)))
    found: list[str] = []
    try:
        config: Config = _build(Config(), data, found)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path is not None else str(error)) from None
    if found and problems is None:
        raise invalid(found)
    if problems is not None:
        problems.extend(found)
    return config


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--section.sub.key`` option per config field (metavar shows the default)."""
    group = parser.add_argument_group("config overrides (YAML values; defaults shown are the paper's)")
    for name, (value, _hint) in leaves(Config()).items():
        group.add_argument(
            f"--{name}", dest=f"override:{name}", metavar="V", default=None, help=f"(default {value!r})"
        )


def overrides_from(args: argparse.Namespace) -> dict[str, str]:
    """The overrides given on the command line, as ``dotted.name -> text``."""
    return {
        key.removeprefix("override:"): value
        for key, value in vars(args).items()
        if key.startswith("override:") and value is not None
    }


def to_dict(config: Config) -> dict[str, Any]:
    """The configuration as plain dicts and lists (YAML/JSON/checkpoint friendly)."""
    return dataclasses.asdict(config)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``dotted.name -> value``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :func:`to_dict`'s output.

    Raises:
        ConfigError: an unknown key, a wrong type or an invalid section.
    """
    found: list[str] = []
    config: Config = _build(Config(), data, found)
    if found:
        raise invalid(found)
    return config
