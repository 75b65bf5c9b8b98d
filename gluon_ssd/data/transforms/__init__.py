"""SSD transforms: the validation/demo preprocessing and the training augmentation of GluonCV.

Its names are those of :mod:`.pipeline` (the versions our training and evaluation use; its docstring
says how the training transform draws its random numbers). GluonCV's spelling,
``gluon_ssd.data.transforms.presets.ssd`` (:mod:`.presets.ssd`), wraps the same functions with GluonCV's
return types.
"""
from . import pipeline, presets
from .pipeline import *  # noqa: F403  (the names of pipeline.__all__, this package's names)

__all__ = ["presets", *pipeline.__all__]
