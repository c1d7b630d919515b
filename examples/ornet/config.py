"""The pipeline's configuration: typed dataclasses, YAML files and command-line overrides.

The configuration is nested: one section per stage, and inside a stage one section per lowcam component
whose keys are that component's keyword arguments (``fine.erasing.erase_prob``, ``fine.area.topk``,
``fine.entropy.sigma``), so a value in the YAML file goes straight into the component. The three training
stages share one optimiser section type (:class:`OptimConfig`).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from ornet.transforms import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class DataConfig:
    """Where the data is and how images are prepared.

    ``format`` is ``"cub"`` (CUB-200-2011 files under ``root``), ``"imagenet"`` (``train_dir`` class
    folders, ``val_dir`` images with PASCAL-VOC XML in ``annotations_dir``) or ``"wsol"`` (wsolevaluation
    metadata: ``metadata_dir/{train,<eval_split>}`` relative to ``root``; for ILSVRC the 2012 validation
    set is the ``test`` split there, ``val`` is ImageNetV2). ``drop_last``: drop the last, incomplete
    training batch (reference ``false``).
    """

    format: str = "cub"
    root: str = "data/CUB_200_2011"
    train_dir: str = "data/ILSVRC/train"
    val_dir: str = "data/ILSVRC/val"
    annotations_dir: str = "data/ILSVRC/val_xml"
    metadata_dir: str = "metadata/CUB"
    eval_split: str = "test"
    resize: int = 256
    crop: int = 224
    score_size: int = 224
    flip: bool = True
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    drop_last: bool = False
    num_workers: int = 4
    verify_images: str = "header"
    limit: int = 0


@dataclass
class ModelConfig:
    """Networks. ``*_weights``: a torchvision weight-enum name (``IMAGENET1K_V1``, ``DEFAULT``), a local
    state-dict file, or ``null`` for random initialisation."""

    backbone: str = "resnet50"
    backbone_weights: str | None = "IMAGENET1K_V1"
    evaluator: str = "vgg16"
    evaluator_weights: str | None = "IMAGENET1K_V1"
    generator_width: int = 64


@dataclass
class QuirksConfig:
    """Behaviours of the reference code, as switches whose defaults reproduce it.

    ``frozen_train_mode``: frozen modules (stem, frozen generator blocks, evaluator) stay in train mode
    during stage 2, so BatchNorm statistics move and the evaluator's dropout is on (``lowcam.Evaluator``'s
    ``follow_parent_mode``). ``upsample``: how the activation map is resized onto the image for the
    evaluator (``lowcam.Evaluator``'s ``upsample``; reference ``nearest``). ``reinit_layer4``: when the
    data set does not have 200 classes, re-initialise ``layer4`` and ``fc`` of the stage-1 ResNet instead
    of loading them pretrained (the reference does this for ILSVRC; no effect without backbone weights).
    """

    frozen_train_mode: bool = True
    upsample: str = "nearest"
    reinit_layer4: bool = True


@dataclass
class OptimConfig:
    """An optimiser with a cosine decay to zero stepped per iteration (as the reference).

    ``name``: ``sgd`` (``torch.optim.SGD(lr, momentum, weight_decay)``) or ``adam``
    (``torch.optim.Adam(lr, weight_decay)``; ``momentum`` is not used).
    """

    name: str = "sgd"
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
    select: str = "test_top1"
    holdout_fraction: float = 0.1


@dataclass
class CoarseStage:
    """Stage 1: backbone + generator trained on CE(generator) + CE(main). The reference code does not
    ship this stage: 70 epochs at lr 1e-3 follow its config, the seed is the reference config's ``SEED``
    (assumptions)."""

    epochs: int = 70
    batch_size: int = 16
    seed: int = 1
    optim: OptimConfig = field(default_factory=_sgd)


@dataclass
class AreaConfig:
    """``lowcam.AreaLoss`` arguments."""

    topk: int = 25
    skip: int = 3


@dataclass
class EntropyConfig:
    """``lowcam.WeightedEntropyLoss`` arguments."""

    mu: float = 0.5
    sigma: float = 0.1
    beta: float = 0.0
    detach_weight: bool = False


@dataclass
class ErasingConfig:
    """``lowcam.AttentiveErasing`` arguments (``erase_prob``: the probability that a sample is erased)."""

    erase_prob: float = 0.5
    min_factor: float = 0.0
    max_factor: float = 0.5
    min_size: int | float = 4  # map pixels, or a fraction of the map side (float in (0, 1))
    scale: float = 0.6
    shift: float = 0.2
    per_sample_factor: bool = False


@dataclass
class LossWeights:
    """``loss = CE + area · AreaLoss + entropy · WeightedEntropyLoss``."""

    area: float = 0.02
    entropy: float = 1.5


@dataclass
class FineStage:
    """Stage 2: refine the generator's last two decoder blocks and map head against the evaluator."""

    epochs: int = 30
    batch_size: int = 16
    seed: int = 517
    optim: OptimConfig = field(default_factory=lambda: OptimConfig("adam", 1e-4, 0.9, 0.0))
    area: AreaConfig = field(default_factory=AreaConfig)
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    erasing: ErasingConfig = field(default_factory=ErasingConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)


@dataclass
class CamStage:
    """A plain CAM baseline: the backbone trained as an ordinary classifier (not part of the paper).

    ``output_stride``: the stride of the CAM's feature, 4, 8, 16 or 32 (the ResNet as it is), or ``null``
    for the stride whose map has the side of the ORNet stage maps (stride 4 for ResNets: the same map
    resolution, a like-for-like comparison). ``extra_output_strides``: more CAM baselines, one per
    stride, each trained with this section's schedule and seed as its own stage ``cam_s<stride>``
    (checkpoint ``cam_s<stride>.pt``, its own row in the table and in ``metrics.json``).
    """

    enabled: bool = False
    epochs: int = 30
    batch_size: int = 16
    seed: int = 1
    optim: OptimConfig = field(default_factory=_sgd)
    output_stride: int | None = None
    extra_output_strides: list[int] = field(default_factory=list)


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

    device: str = "auto"
    backend: str = "auto"
    deterministic: bool = True
    num_threads: int = 0
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    tensorboard: bool = False
    progress: bool = True
    stop_after_epoch: int = 0


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


#: Keys of the flat configuration of lowcam 0.1 and where they live now (checkpoints written before the
#: nested sections, e.g. by an older run or an importer, are read through this table).
LEGACY_KEYS: dict[str, tuple[str, ...]] = {
    "seed": ("fine.seed",),
    **{
        f"{stage}.{key}": (f"{stage}.optim.{key}",)
        for stage in ("evaluator", "coarse", "cam")
        for key in ("lr", "momentum", "weight_decay")
    },
    "fine.lr": ("fine.optim.lr",),
    "fine.weight_decay": ("fine.optim.weight_decay",),
    "fine.area_weight": ("fine.loss_weights.area",),
    "fine.entropy_weight": ("fine.loss_weights.entropy",),
    "fine.area_topk": ("fine.area.topk",),
    "fine.area_skip": ("fine.area.skip",),
    "fine.entropy_mu": ("fine.entropy.mu",),
    "fine.entropy_sigma": ("fine.entropy.sigma",),
    "fine.erasing_p": ("fine.erasing.erase_prob",),
    "fine.erasing_max_factor": ("fine.erasing.max_factor",),
    "fine.erasing_min_size": ("fine.erasing.min_size",),
}


class ConfigError(ValueError):
    """An unknown key or a value of the wrong type in a config file or override."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint`` (int → float is allowed); return the value."""
    origin = typing.get_origin(hint)
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


def _update(target: Any, values: dict[str, Any], prefix: str = "") -> None:
    hints = _hints(type(target))
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in hints:
            moved = LEGACY_KEYS.get(name)
            hint = f" (renamed: {', '.join(moved)})" if moved else ""
            raise ConfigError(f"unknown config key {name!r}{hint}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: expected a mapping, got {value!r}")
            _update(current, value, prefix=f"{name}.")
        else:
            setattr(target, key, _coerce(name, value, hints[key]))


def leaves(config: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Every leaf field as ``dotted.name -> (value, type hint)``."""
    out: dict[str, tuple[Any, Any]] = {}
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(leaves(value, prefix=f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (value, hints[f.name])
    return out


def load_config(path: str | Path | None, overrides: dict[str, str] | None = None) -> Config:
    """Defaults, then the YAML file ``path``, then ``overrides`` (``dotted.name -> YAML text``)."""
    config = Config()
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        try:
            _update(config, data)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    for name, text in (overrides or {}).items():
        *sections, key = name.split(".")
        nested: dict[str, Any] = {key: yaml.safe_load(text)}
        for section in reversed(sections):
            nested = {section: nested}
        _update(config, nested)
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
    """A nested mapping as ``dotted.name -> value``, with the flat keys of :data:`LEGACY_KEYS` moved to
    their nested names (a config saved by an older pipeline reads as today's)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            for target in LEGACY_KEYS.get(name, (name,)):
                out[target] = value
    return out


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :func:`to_dict`'s output (or an older, flat one)."""
    config = Config()
    known = leaves(config)
    for name, value in flatten(data).items():
        if name not in known:
            raise ConfigError(f"unknown config key {name!r}")
        *sections, key = name.split(".")
        nested: dict[str, Any] = {key: value}
        for section in reversed(sections):
            nested = {section: nested}
        _update(config, nested)
    return config
