"""Training: target generation and the SSD loss."""
from .loss import SSDMultiBoxLoss
from .target import SSDTargetGenerator, batch_targets

__all__ = ["SSDMultiBoxLoss", "SSDTargetGenerator", "batch_targets"]
