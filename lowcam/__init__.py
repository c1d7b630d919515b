"""lowcam: reusable, fused PyTorch components and exact metrics for weakly supervised object localization.

The pieces of ORNet (Xie et al., ICCV 2021) as standalone modules, each with a functional twin, plus the
WSOL metrics of both evaluation protocols in :mod:`lowcam.metrics`, the helpers of :mod:`lowcam.maps`
that turn a CAM-style head into the ``[0, 1]`` maps the components expect (the map contract), and the
training data of :mod:`lowcam.data` (CUB's and ILSVRC's own files, box-aware transforms).
"""

from lowcam import data, metrics
from lowcam._version import __version__
from lowcam.backbones import BackboneSplit, CamNet, split_backbone
from lowcam.erasing import AttentiveErasing, ErasingOutput, ErasingParams, attentive_erasing
from lowcam.evaluator import Evaluator
from lowcam.generator import GeneratorOutput, LowLevelActivationGenerator
from lowcam.losses import (
    AreaLoss,
    AreaLossParams,
    EntropyParams,
    WeightedEntropyLoss,
    area_loss,
    weighted_entropy_loss,
)
from lowcam.maps import (
    ClassActivationMapper,
    cam_class_maps,
    class_activation_maps,
    normalize_map,
    select_class_map,
)

__all__ = [
    "AreaLoss",
    "AreaLossParams",
    "AttentiveErasing",
    "BackboneSplit",
    "CamNet",
    "ClassActivationMapper",
    "EntropyParams",
    "ErasingOutput",
    "ErasingParams",
    "Evaluator",
    "GeneratorOutput",
    "LowLevelActivationGenerator",
    "WeightedEntropyLoss",
    "__version__",
    "area_loss",
    "attentive_erasing",
    "cam_class_maps",
    "class_activation_maps",
    "data",
    "metrics",
    "normalize_map",
    "select_class_map",
    "split_backbone",
    "weighted_entropy_loss",
]
