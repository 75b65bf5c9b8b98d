"""Precision/recall curves of an evaluation, drawn with matplotlib's Agg canvas (no display, no pyplot
state: safe in worker processes and on headless machines).

One PNG holds a grid with one panel per class: a set of 20 (VOC) or 80 (COCO) curves reads better side
by side than as as many separate files.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["voc_pr_curves", "coco_pr_curves", "plot_pr_curves"]

logger = logging.getLogger(__name__)


def voc_pr_curves(metric) -> dict:
    """``{class name: (recall, precision)}`` from a VOC metric's ``get_pr_curves()``.

    Recall is ``nan`` everywhere for a class without non-difficult ground truth.
    """
    return {name: (np.asarray(c.recall, dtype=np.float64), np.asarray(c.precision, dtype=np.float64))
            for name, c in metric.get_pr_curves().items()}


def coco_pr_curves(coco_gt, detections: Sequence[dict], iou: float = 0.5, class_names=None) -> dict:
    """``{category name: (recall, precision)}`` from pycocotools' interpolated precision table.

    Parameters
    ----------
    coco_gt : pycocotools ``COCO``
        The ground truth.
    detections : list of dict
        COCO results (``image_id, category_id, bbox [x, y, w, h], score``).
    iou : float
        Which of COCOeval's IoU thresholds (0.5, 0.55, ..., 0.95) to draw.
    class_names : dict of category id -> name, optional
        Default: the ground truth's category names.

    Returns
    -------
    dict
        Per category in id order: recall at COCOeval's 101 recall thresholds and the interpolated
        precision there (area 'all', 100 detections per image); both empty when the category has no
        ground truth, or nothing was detected at all.
    """
    from pycocotools.cocoeval import COCOeval

    cat_ids = sorted(coco_gt.getCatIds())
    names = class_names or {c["id"]: c["name"] for c in coco_gt.loadCats(cat_ids)}
    empty = (np.zeros(0), np.zeros(0))
    if not detections:
        return {names[c]: empty for c in cat_ids}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco_gt.loadRes(list(detections))
        evaluator = COCOeval(coco_gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    thresholds = np.asarray(evaluator.params.iouThrs)
    t = int(np.argmin(np.abs(thresholds - iou)))
    if not math.isclose(thresholds[t], iou, abs_tol=1e-9):
        raise ValueError(f"iou must be one of COCOeval's thresholds {thresholds.tolist()}, got {iou}")
    recall = np.asarray(evaluator.params.recThrs, dtype=np.float64)
    precision = np.asarray(evaluator.eval["precision"])[t, :, :, 0, -1]  # (R, K)
    out = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, k]
        out[names[cat_id]] = empty if (p < 0).all() else (recall, np.maximum(p, 0.0))
    return out


def _step_xy(recall, precision):
    """The precision/recall curve as the vertices of a step line, from recall 0 on."""
    x = np.repeat(np.concatenate(([0.0], recall)), 2)[1:]
    y = np.repeat(np.concatenate((precision[:1], precision)), 2)[:-1]
    return x, y


def plot_pr_curves(curves: Mapping, path, aps: Mapping | None = None, title: str | None = None,
                   columns: int | None = None, dpi: int = 80) -> str:
    """Draw one precision/recall panel per class into a PNG.

    Parameters
    ----------
    curves : dict of class name -> (recall, precision)
        1-D arrays of equal length; empty or all-``nan`` recall means "no ground truth / no detection".
    path : str or os.PathLike
        The PNG to write (its folder is created).
    aps : dict of class name -> AP, optional
        Shown in each panel's title.
    title : str, optional
        Figure title.
    columns : int, optional
        Panels per row; default about the square root of the number of classes.
    dpi : int
        Resolution.

    Returns
    -------
    str
        The path written.

    Notes
    -----
    Every panel is the unit square (recall on x, precision on y, both 0..1) drawn inside one matplotlib
    Axes at its own offset: a separate Axes per class spends seconds in matplotlib's tick machinery for
    the 80 COCO classes, this takes a fraction of one.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    names = list(curves)
    if not names:
        raise ValueError("no curves to plot")
    cols = int(columns) if columns else max(1, math.ceil(math.sqrt(len(names))))
    rows = math.ceil(len(names) / cols)
    gap_x, gap_y = 0.25, 0.4  # between panels, in panel units (room for tick labels and titles)
    header = 0.55 if title else 0.35  # inches for the title and the caption
    fig = Figure(figsize=(2.4 * cols, 2.4 * rows + header), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - header / fig.get_figheight()))
    ax.set_axis_off()
    frames, grid, lines = [], [], []
    for i, name in enumerate(names):
        r, c = divmod(i, cols)
        x0, y0 = c * (1 + gap_x), -r * (1 + gap_y)
        frames.append([(x0, y0), (x0 + 1, y0), (x0 + 1, y0 + 1), (x0, y0 + 1), (x0, y0)])
        grid += [[(x0 + 0.5, y0), (x0 + 0.5, y0 + 1)], [(x0, y0 + 0.5), (x0 + 1, y0 + 0.5)]]
        ap = None if aps is None else aps.get(name)
        label = name if ap is None or not np.isfinite(ap) else f"{name}  AP {ap:.3f}"
        ax.text(x0 + 0.5, y0 + 1.03, label, ha="center", va="bottom", fontsize=8)
        for value, text in ((0.0, "0"), (0.5, ".5"), (1.0, "1")):
            ax.text(x0 + value, y0 - 0.02, text, ha="center", va="top", fontsize=6, color="0.3")
            ax.text(x0 - 0.02, y0 + value, text, ha="right", va="center", fontsize=6, color="0.3")
        recall, precision = (np.asarray(a, dtype=np.float64) for a in curves[name])
        if recall.size == 0 or not np.isfinite(recall).any():
            note = "no ground truth" if ap is not None and not np.isfinite(ap) else "no detections"
            ax.text(x0 + 0.5, y0 + 0.5, note, ha="center", va="center", fontsize=7, color="0.4")
            continue
        x, y = _step_xy(recall, precision)
        lines.append(np.column_stack([x0 + x, y0 + np.clip(y, 0.0, 1.0)]))
    ax.add_collection(LineCollection(grid, colors="0.85", linewidths=0.5))
    ax.add_collection(LineCollection(frames, colors="0.3", linewidths=0.8))
    ax.add_collection(LineCollection(lines, colors="tab:blue", linewidths=1.0))
    ax.set_xlim(-0.15, cols * (1 + gap_x) - gap_x + 0.05)
    ax.set_ylim(-(rows - 1) * (1 + gap_y) - 0.15, 1.2)
    caption = "x: recall, y: precision"
    fig.suptitle(f"{title}\n{caption}" if title else caption, fontsize=9)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path)
    logger.info("wrote precision/recall curves of %d classes to %s", len(names), path)
    return path
