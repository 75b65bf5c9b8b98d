"""Datasets (one way to open them: :func:`open_dataset`), the synthetic dataset writer, batching and loading."""
from .batchify import SeededRandomSampler, batchify_detection, make_loader
from .coco import COCO_CLASSES, COCODetection, CustomCOCODetection
from .custom import BadImageError, DetectionDataset, read_image
from .open import DatasetError, open_dataset
from .transforms import SSDDefaultTrainTransform, SSDDefaultValTransform, load_test, transform_test
from .voc import VOC_CLASSES, AnnotationError, CustomVOCDetection, UnknownClassError, VOCDetection

__all__ = [
    "AnnotationError",
    "BadImageError",
    "COCO_CLASSES",
    "COCODetection",
    "CustomCOCODetection",
    "CustomVOCDetection",
    "DatasetError",
    "DetectionDataset",
    "SHAPE_CLASSES",
    "SSDDefaultTrainTransform",
    "SSDDefaultValTransform",
    "SeededRandomSampler",
    "UnknownClassError",
    "VOC_CLASSES",
    "VOCDetection",
    "batchify_detection",
    "load_test",
    "make_loader",
    "open_dataset",
    "read_image",
    "transform_test",
    "write_synthetic_dataset",
]


def __getattr__(name):
    # Lazy: importing the module here would make `python -m gluon_ssd.data.synthetic` warn that the module
    # was imported before it ran.
    if name in ("SHAPE_CLASSES", "write_synthetic_dataset"):
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'gluon_ssd.data' has no attribute {name!r}")
