"""Datasets (one way to open them: :func:`open_dataset`), the synthetic dataset writer, batching and loading.

GluonCV's names are here at GluonCV's paths (``gluoncv`` -> ``gluon_ssd`` in a script's imports): ``VOCDetection``,
``COCODetection``, ``RecordFileDetection``, ``LstDetection``, ``transforms.presets.ssd`` and ``batchify``
(``Tuple``, ``Stack``, ``Pad``).
"""
from . import batchify, transforms
from .batchify import SeededRandomSampler, batchify_detection, make_loader
from .coco import COCO_CLASSES, COCODetection, CustomCOCODetection
from .custom import BadImageError, DetectionDataset, read_image
from .im2rec import LstDetection, RecordFileDetection
from .open import DatasetError, open_dataset
from .synthetic import SHAPE_CLASSES, write_synthetic_dataset
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
    "LstDetection",
    "RecordFileDetection",
    "SHAPE_CLASSES",
    "SSDDefaultTrainTransform",
    "SSDDefaultValTransform",
    "SeededRandomSampler",
    "UnknownClassError",
    "VOC_CLASSES",
    "VOCDetection",
    "batchify",
    "batchify_detection",
    "load_test",
    "make_loader",
    "open_dataset",
    "read_image",
    "transform_test",
    "transforms",
    "write_synthetic_dataset",
]
