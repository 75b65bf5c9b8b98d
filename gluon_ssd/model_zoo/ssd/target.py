"""GluonCV's ``gluoncv.model_zoo.ssd.target``: the same name for :class:`gluon_ssd.train.target.SSDTargetGenerator`
(one implementation; see that module for the matching and its one difference from GluonCV)."""
from ...train.target import SSDTargetGenerator

__all__ = ["SSDTargetGenerator"]
