"""GluonCV's ``gluoncv.utils.metrics.voc_detection``: :class:`VOCMApMetric` and :class:`VOC07MApMetric`.

They are :mod:`gluon_ssd.eval.voc`'s, under GluonCV's import path: the same constructors (``iou_thresh=0.5,
class_names=None``), ``update(pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels, gt_difficults=None)``
and ``get()`` (per-class APs, then ``'mAP'``), with GluonCV's numbers (tested against gluoncv to 1e-12).

One difference, kept from :mod:`gluon_ssd.eval.voc` (the README's "Differences from GluonCV"): detections of equal
score are ranked in input order; ``tie_order='gluoncv'`` ranks them exactly as GluonCV does (the two differ only
when a tie mixes true and false positives). What they add: ``exact_thresholds`` (VOC07), PR curves.
"""
from ...eval.voc import VOC07MApMetric, VOCMApMetric

__all__ = ["VOCMApMetric", "VOC07MApMetric"]
