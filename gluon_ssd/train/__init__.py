"""Training: target generation and the SSD loss (MXNet), the training loop (shared with --backend torch) and MXNet's
engine."""

__all__ = ["SSDMultiBoxLoss", "SSDTargetGenerator", "batch_targets"]


def __getattr__(name):
    # Lazy: the training loop (gluon_ssd.train.loop, .run) also runs where MXNet is not installed.
    if name == "SSDMultiBoxLoss":
        from .loss import SSDMultiBoxLoss  # needs MXNet: the loop imports this package without it

        return SSDMultiBoxLoss
    if name in ("SSDTargetGenerator", "batch_targets"):
        from . import target  # needs MXNet, as above

        return getattr(target, name)
    raise AttributeError(f"module 'gluon_ssd.train' has no attribute {name!r}")
