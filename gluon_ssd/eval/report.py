"""What an evaluation leaves behind: ``results.json``, ``coco_detections.json``, ``pr_curves.png`` and the
per-class AP table, from an :class:`~gluon_ssd.eval.loop.EvalResult` or a scored COCO results file, and the
records of what was evaluated how (:func:`settings_record`, :func:`dataset_record`).

``results.json`` holds JSON only: an AP that is not a number (a class without ground truth) is ``null``.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

from .. import cpu
from ..fileio import atomic_write
from . import plots
from .coco import coco_stats

__all__ = ["METRIC_TEXT", "finite", "write_json", "ap_table", "coco_stats_record", "keep_coco_detections",
           "write_pr_curves", "evaluation_record", "write_evaluation", "score_results_file", "results_file_record",
           "precision", "settings_record", "dataset_record"]

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


def write_evaluation(out_dir: str, metric_name: str, metric, result, dataset, name: str, settings: dict,
                     dataset_info: dict, plots: bool = True) -> str:
    """Write what an evaluation leaves in ``out_dir``: ``coco_detections.json`` (the COCO metric's results
    file, moved), ``pr_curves.png`` (unless not ``plots``) and ``results.json``
    (:func:`evaluation_record`); returns the path of ``results.json``."""
    files = {}
    if metric_name == "coco":
        kept = keep_coco_detections(metric, os.path.join(out_dir, "coco_detections.json"))
        if kept:
            files["coco_detections"] = kept
    if plots:
        files["pr_curves"] = write_pr_curves(os.path.join(out_dir, "pr_curves.png"), metric_name, metric, dataset,
                                             result.per_class(), name, files.get("coco_detections"))
    record = evaluation_record(metric_name, result, settings, dataset_info, files)
    return write_json(os.path.join(out_dir, "results.json"), record)


def score_results_file(dataset, path: str) -> dict:
    """:func:`~gluon_ssd.eval.coco_stats` of the COCO results file ``path`` against ``dataset``'s annotations (a
    COCO dataset, or a custom one read from a COCO JSON).

    Raises
    ------
    ValueError for a dataset without COCO annotations, a missing or malformed file, or detections of images or
    categories the annotations do not have.
    """
    coco = getattr(dataset, "coco", None) if hasattr(dataset, "contiguous_id_to_json") else None
    if coco is None:
        raise ValueError("--results scores a COCO results file: use --dataset coco (or custom with a COCO JSON as "
                         "--dataset-root)")
    if not os.path.isfile(path):
        raise ValueError(f"--results {path}: file not found")
    try:
        return coco_stats(coco, path)
    except ValueError as err:  # json.JSONDecodeError included
        raise ValueError(f"--results {path}: {err}") from None


def results_file_record(results_path: str, stats: Mapping, dataset: dict) -> dict:
    """The ``results.json`` of a COCO results file scored by :func:`~gluon_ssd.eval.coco_stats` (``stats``)."""
    return {"mode": "results_file", "results_file": os.path.abspath(results_path), "metric": "coco",
            "per_class_ap": {k: finite(float(v)) for k, v in stats["per_class"].items()},
            "map": finite(float(stats["AP"])), "coco_stats": coco_stats_record(stats), "dataset": dataset}


# ------------------------------------------------------------------------ what was evaluated, and how
def precision(backend: str, dtype: str, int8: bool) -> str:
    """The precision the network runs at: 'int8' for a quantized model, else ``dtype`` of a backend that
    has a choice (the mxnet backend runs float32)."""
    if int8:
        return "int8"
    return dtype if backend != "mxnet" else "fp32"


def settings_record(network: str, ctx, nms, *, precision: str, backend: str, pretrained, deploy: bool = False,
                    model_prefix: str | None = None, quantized: bool = False, calibration: dict | None = None,
                    data_shape: int, batch_size: int, num_workers: int, num_gpus: int) -> dict:
    """The ``settings`` of ``results.json`` / ``benchmark.json``: the model, how it ran (precision, backend,
    the CPU and its vector features, contexts, ``nms`` as (nms_thresh, nms_topk, post_nms)) and, for a
    model quantized here, the ``calibration`` settings. An exported model (``deploy``) has backend
    'deploy' and no ``pretrained``."""
    return {"network": network, "precision": precision, "quantized": quantized, "calibration": calibration,
            "cpu": cpu.describe(), "cpu_features": cpu.vector_features(),
            "backend": "deploy" if deploy else backend, "pretrained": None if deploy else pretrained,
            "deploy": deploy, "model_prefix": model_prefix, "data_shape": data_shape, "batch_size": batch_size,
            "num_workers": num_workers, "num_gpus": num_gpus, "ctx": [str(c) for c in ctx],
            "nms": dict(zip(("nms_thresh", "nms_topk", "post_nms"), nms))}


def dataset_record(kind: str, root: str | None, splits: str | None, image_dir: str | None, dataset) -> dict:
    """The ``dataset`` of ``results.json``: its kind, root (absolute; None: the kind's default root), splits
    (None: the kind's default validation splits, as text), image folder, number of images and classes."""
    from ..data.open import DEFAULT_ROOTS, TRAINING_SPLITS  # loads OpenCV: the metrics run without images

    default_splits = ",".join(f"{s[0]}_{s[1]}" if isinstance(s, tuple) else s for s in TRAINING_SPLITS[kind]["val"])
    return {"kind": kind, "root": os.path.abspath(os.path.expanduser(root)) if root else DEFAULT_ROOTS.get(kind),
            "splits": splits or default_splits, "image_dir": image_dir, "images": len(dataset),
            "classes": list(dataset.classes)}
