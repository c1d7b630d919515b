"""ORNet's losses: the weighted entropy loss and the area loss, each with its parameter dataclass."""

from lowcam.losses.area import AreaLoss, AreaLossParams, area_loss
from lowcam.losses.entropy import EntropyParams, WeightedEntropyLoss, weighted_entropy_loss

__all__ = [
    "AreaLoss",
    "AreaLossParams",
    "EntropyParams",
    "WeightedEntropyLoss",
    "area_loss",
    "weighted_entropy_loss",
]
