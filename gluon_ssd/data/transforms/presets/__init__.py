"""GluonCV's ``gluoncv.data.transforms.presets`` path: the SSD presets (:mod:`.ssd`)."""
from . import ssd

__all__ = ["ssd"]
