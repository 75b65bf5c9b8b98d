"""SSD transforms: the validation/demo preprocessing and the training augmentation of GluonCV.

The names below are those of :mod:`.pipeline` (the versions our training and evaluation use; its docstring
says how the training transform draws its random numbers). GluonCV's spelling,
``gluon_ssd.data.transforms.presets.ssd`` (:mod:`.presets.ssd`), wraps the same functions with GluonCV's
return types.
"""
from . import presets
from .pipeline import (
    SSDDefaultTrainTransform,
    SSDDefaultValTransform,
    bbox_iou,
    crop_boxes,
    flip_boxes,
    load_test,
    random_crop_with_constraints,
    random_expand_placement,
    resize_boxes,
    transform_test,
)

__all__ = [
    "presets",
    "SSDDefaultTrainTransform",
    "SSDDefaultValTransform",
    "bbox_iou",
    "crop_boxes",
    "flip_boxes",
    "load_test",
    "random_crop_with_constraints",
    "random_expand_placement",
    "resize_boxes",
    "transform_test",
]
