"""GluonCV's ``gluoncv.loss`` path for the SSD loss: :class:`gluon_ssd.train.loss.SSDMultiBoxLoss`, the same class
(``SSDMultiBoxLoss(negative_mining_ratio=3, rho=1.0, lambd=1.0, min_hard_negatives=0)``, called with lists of
per-device predictions and targets, returning lists of per-device sum, class and box losses)."""
from .train.loss import SSDMultiBoxLoss

__all__ = ["SSDMultiBoxLoss"]
