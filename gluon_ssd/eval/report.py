"""What an evaluation leaves behind: ``results.json``, ``coco_detections.json``, ``pr_curves.png`` and the
per-class AP table, from an :class:`~gluon_ssd.eval.loop.EvalResult` or a scored COCO results file.

``results.json`` holds JSON only: an AP that is not a number (a class without ground truth) is ``null``.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

__all__ = ["METRIC_TEXT", "finite", "write_json", "ap_table", "coco_stats_record", "keep_coco_detections",
           "write_pr_curves", "evaluation_record"]

METRIC_TEXT = {
    "voc07": "VOC07 11-point mAP, IoU 0.5",
    "voc": "VOC all-point mAP, IoU 0.5",
    "coco": "COCO mAP@[.5:.95]",
}


def finite(value):
    """``value`` when it is a finite float, else None (JSON has no NaN)."""
    return value if isinstance(value, float) and math.isfinite(value) else None


def write_json(path: str, obj) -> str:
    """Write ``obj`` as indented JSON, atomically (a reader never sees half a file); returns ``path``."""
    from ..fileio import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    return path


def ap_table(per_class: Mapping[str, float], map_value: float, metric: str) -> str:
    """The table of per-class AP and the mAP, one line each, as text."""
    width = max([len(n) for n in per_class] + [5])
    lines = [f"{'class':<{width}}  AP ({METRIC_TEXT[metric]})"]
    for name, ap in per_class.items():
        lines.append(f"{name:<{width}}  {ap:.4f}" if math.isfinite(ap) else f"{name:<{width}}  n/a (no ground truth)")
    lines.append(f"{'mAP':<{width}}  {map_value:.4f}")
    return "\n".join(lines)


def coco_stats_record(stats: Mapping) -> dict:
    """The twelve COCO stats of a ``metric.stats`` / :func:`~gluon_ssd.eval.coco_stats` dict, for JSON."""
    return {k: v for k, v in stats.items() if k not in ("per_class", "summary")}


def keep_coco_detections(metric, path: str) -> str | None:
    """Move the COCO metric's results file (written under its save prefix, with a time stamp) to ``path``;
    None when it wrote none."""
    if metric.results_path and os.path.isfile(metric.results_path):
        os.replace(metric.results_path, path)
        return path
    return None


def write_pr_curves(path: str, metric_name: str, metric, dataset, per_class: Mapping[str, float], name: str,
                    detections_path: str | None = None) -> str:
    """Draw the precision/recall curve of every class into ``path``: the VOC metric's own curves, or for
    COCO pycocotools' interpolated precision at IoU 0.5 over the detections in ``detections_path``."""
    from . import plots

    if metric_name == "coco":
        detections = []
        if detections_path:
            with open(detections_path, encoding="utf-8") as f:
                detections = json.load(f)
        curves = plots.coco_pr_curves(dataset.coco, detections, iou=0.5)
        curves = {n: curves.get(n, ((), ())) for n in per_class}
        title = f"{name}: precision/recall at IoU 0.5 (COCOeval, all areas)"
    else:
        curves = plots.voc_pr_curves(metric)
        title = f"{name}: precision/recall, IoU 0.5"
    return plots.plot_pr_curves(curves, path, aps=per_class, title=title)


def evaluation_record(metric_name: str, result, settings: dict, dataset: dict, files: dict) -> dict:
    """The ``results.json`` of an evaluation: per-class AP, mAP, counts and times of ``result`` (an
    :class:`~gluon_ssd.eval.loop.EvalResult`), the ``settings`` and ``dataset`` descriptions and the
    ``files`` written."""
    record = {
        "mode": "evaluate",
        "metric": metric_name,
        "metric_description": METRIC_TEXT[metric_name],
        "per_class_ap": {k: finite(v) for k, v in result.per_class().items()},
        "map": finite(result.map),
        "images_evaluated": result.num_images,
        "seconds": result.seconds,
        "images_per_second": result.images_per_second,
        "metric_seconds": result.metric_seconds,
        "settings": settings,
        "dataset": dataset,
        "files": files,
    }
    if metric_name == "coco":
        record["coco_stats"] = coco_stats_record(result.metric.stats)
    return record
