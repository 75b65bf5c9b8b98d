"""GluonCV's ``gluoncv.utils.metrics`` detection metrics at GluonCV's import paths (no MXNet needed)."""
from .coco_detection import COCODetectionMetric
from .voc_detection import VOC07MApMetric, VOCMApMetric

__all__ = ["COCODetectionMetric", "VOCMApMetric", "VOC07MApMetric"]
