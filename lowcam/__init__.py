"""lowcam: reusable, fused PyTorch components and exact metrics for weakly supervised object localization.

The pieces of ORNet (Xie et al., ICCV 2021) as standalone modules, each with a functional twin, plus the
WSOL metrics of both evaluation protocols in :mod:`lowcam.metrics`.
"""

from lowcam import metrics
from lowcam._version import __version__
from lowcam.erasing import AttentiveErasing, ErasingOutput, attentive_erasing
from lowcam.evaluator import Evaluator
from lowcam.generator import GeneratorOutput, LowLevelActivationGenerator
from lowcam.losses import AreaLoss, WeightedEntropyLoss, area_loss, weighted_entropy_loss

__all__ = [
    "AreaLoss",
    "AttentiveErasing",
    "ErasingOutput",
    "Evaluator",
    "GeneratorOutput",
    "LowLevelActivationGenerator",
    "WeightedEntropyLoss",
    "__version__",
    "area_loss",
    "attentive_erasing",
    "metrics",
    "weighted_entropy_loss",
]
