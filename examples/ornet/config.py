"""The pipeline's configuration: typed dataclasses, YAML files and command-line overrides.

A YAML file sets any subset of the fields (an unknown key is an error); every field can then be
overridden on the command line as ``--section.key VALUE`` (``--seed 1``, ``--fine.lr 3e-4``,
``--model.backbone_weights null``). Values are parsed as YAML scalars and checked against the field's
type. Defaults are the paper's CUB setting; the reference quirks are in :class:`QuirksConfig`.
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
    metadata: ``metadata_dir/{train,test}`` relative to ``root``).
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
    """Behaviours of the reference code, as switches whose defaults reproduce the paper.

    ``frozen_train_mode``: frozen modules (stem, frozen generator blocks, evaluator) stay in train mode
    during stage 2, so BatchNorm statistics move and the evaluator's dropout is on. ``upsample``: how the
    activation map is resized onto the image for the evaluator (reference ``nearest``). The seed is the
    top-level ``seed`` (reference 517).
    """

    frozen_train_mode: bool = True
    upsample: str = "nearest"


@dataclass
class EvaluatorStage:
    """Stage 0: fine-tune the evaluator classifier (SGD, cosine per iteration). ``epochs: 0`` keeps the
    pretrained classifier as it is (ILSVRC)."""

    epochs: int = 200
    batch_size: int = 16
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4


@dataclass
class CoarseStage:
    """Stage 1: backbone + generator trained on CE(generator) + CE(main). The paper's code does not ship
    this stage; 70 epochs at lr 1e-3 follow its config (an assumption)."""

    epochs: int = 70
    batch_size: int = 16
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4


@dataclass
class FineStage:
    """Stage 2: refine the generator's last two decoder blocks and map head against the evaluator."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    area_weight: float = 0.02
    entropy_weight: float = 1.5
    area_topk: int = 25
    area_skip: int = 3
    entropy_mu: float = 0.5
    entropy_sigma: float = 0.1
    erasing_p: float = 0.5
    erasing_max_factor: float = 0.5
    erasing_min_size: int = 4


@dataclass
class CamStage:
    """A plain CAM baseline: the backbone trained as an ordinary classifier (not part of the paper)."""

    enabled: bool = False
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4


@dataclass
class EvalConfig:
    """Evaluation: batch size, number of images in the PNG grid."""

    batch_size: int = 32
    pictures: int = 16


@dataclass
class RuntimeConfig:
    """Execution switches. ``stop_after_epoch`` ends a stage after that epoch (simulates a kill)."""

    device: str = "auto"
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

    seed: int = 517
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
            raise ConfigError(f"unknown config key {name!r}")
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
    """Add one ``--section.key`` option per config field (metavar shows the default)."""
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


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from :func:`to_dict`'s output."""
    config = Config()
    _update(config, data)
    return config
