"""ORNet's losses: the weighted entropy loss and the area loss."""

from lowcam.losses.area import AreaLoss, area_loss
from lowcam.losses.entropy import WeightedEntropyLoss, weighted_entropy_loss

__all__ = ["AreaLoss", "WeightedEntropyLoss", "area_loss", "weighted_entropy_loss"]
