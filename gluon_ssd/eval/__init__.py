"""Detection metrics: Pascal VOC (11-point and all-point mAP) and COCO (pycocotools / faster-coco-eval)."""
from .coco import COCO_STAT_NAMES, COCODetectionMetric, coco_stats
from .voc import PRCurve, VOC07MApMetric, VOCMApMetric, voc_iou

__all__ = [
    "VOCMApMetric",
    "VOC07MApMetric",
    "PRCurve",
    "voc_iou",
    "coco_stats",
    "COCO_STAT_NAMES",
    "COCODetectionMetric",
]

from .loop import (  # noqa: E402
    EvalResult,
    ImagePredictions,
    benchmark,
    calibration_batches,
    evaluate,
    make_metric,
    random_batches,
)

__all__ += ["EvalResult", "ImagePredictions", "evaluate", "make_metric", "benchmark", "calibration_batches",
            "random_batches"]
