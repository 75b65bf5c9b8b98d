"""GluonCV's ``gluoncv.utils.viz`` drawing of detections with matplotlib: :func:`plot_image`, :func:`plot_bbox`.

Same signatures, argument order and return value (a matplotlib Axes) as GluonCV's, and the same drawing: one
``Rectangle`` patch per box at GluonCV's integer corners, one label ``'{class} {score:.3f}'`` above it. Inputs
may be numpy arrays, MXNet NDArrays, torch CPU tensors or lists. For annotated images as arrays (no matplotlib),
use :func:`gluon_ssd.vis.draw_detections`, which the demo writes with.

Differences from GluonCV (docstrings below): default colours are :func:`gluon_ssd.vis.class_colour` (a class has
one colour in every figure and tool; GluonCV picks from the 'hsv' colormap by ``id / len(class_names)``, or at
random without class names); ``colors`` may give 0-255 RGB (GluonCV's docstring shows them, matplotlib refuses
them); ``bboxes`` is never changed in place (GluonCV scales it in place when ``absolute_coordinates=False``);
a box with a non-finite corner is skipped with a warning (GluonCV raises); without ``labels`` a box has no class
name (GluonCV labels it with the last of ``class_names``).
"""
from __future__ import annotations

import logging

import numpy as np

from .._mxnet import as_numpy
from ..vis import class_colour

__all__ = ["plot_image", "plot_bbox"]

log = logging.getLogger(__name__)


def plot_image(img, ax=None, reverse_rgb: bool = False):
    """Show an image on a matplotlib Axes (GluonCV's ``plot_image``).

    Parameters
    ----------
    img : (H, W, 3) numpy array, NDArray or tensor, RGB 0-255 (shown as uint8, as GluonCV's); (H, W) grey.
    ax : matplotlib Axes to draw on; default a new figure's.
    reverse_rgb : swap the first and third channels (BGR input, e.g. from ``cv2.imread``).

    Returns
    -------
    The matplotlib Axes.
    """
    from matplotlib import pyplot as plt

    if ax is None:
        fig = plt.figure()
        ax = fig.add_subplot(1, 1, 1)
    img = np.array(as_numpy(img))  # a copy: the caller's image is never changed
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
        raise ValueError(f"plot_image expects an (H, W, 3) RGB image, got shape {img.shape}")
    if reverse_rgb:
        if img.ndim != 3:
            raise ValueError(f"reverse_rgb=True needs an (H, W, 3) image, got shape {img.shape}")
        img[:, :, :3] = img[:, :, 2::-1]
    ax.imshow(img.astype(np.uint8))
    return ax


def _flat(values, name, count):
    if values is None:
        return None
    flat = np.asarray(as_numpy(values)).reshape(-1)
    if flat.size != count:
        raise ValueError(f"The length of {name} and bboxes mismatch, {flat.size} vs {count}: give one {name[:-1]} "
                         "per box ((N,) or (N, 1))")
    return flat


def _rgba(colour):
    """A matplotlib colour from a 0-1 tuple (GluonCV's) or a 0-255 one (GluonCV's docstring); names pass."""
    if isinstance(colour, str):
        return colour
    values = [float(c) for c in colour]
    return tuple(c / 255.0 for c in values) if max(values[:3]) > 1.0 else tuple(values)


def plot_bbox(img, bboxes, scores=None, labels=None, thresh: float = 0.5, class_names=None, colors=None, ax=None,
              reverse_rgb: bool = False, absolute_coordinates: bool = True, linewidth: float = 3.5,
              fontsize: int = 12):
    """Draw boxes with class names and scores on an image with matplotlib (GluonCV's ``plot_bbox``).

    Parameters
    ----------
    img : (H, W, 3) image, RGB 0-255 (numpy, NDArray or tensor).
    bboxes : (N, 4) corners x1, y1, x2, y2 in the image's pixels (in 0-1 of its width and height when
        ``absolute_coordinates`` is False). A model's outputs for one image: ``bboxes[0]``.
    scores : (N,) or (N, 1) confidences, optional; boxes scored below ``thresh`` are not drawn.
    labels : (N,) or (N, 1) class ids, optional; negative ids (padding) are not drawn.
    thresh : the display threshold on ``scores``.
    class_names : names indexed by class id; an id outside it is labelled with the number.
    colors : {class id: colour}, filled in place with the colours used (pass the same dict to keep colours
        across calls, as with GluonCV). A colour is a matplotlib colour: an RGB(A) tuple in 0-1, or in 0-255.
    ax : matplotlib Axes to draw on; default a new figure's.
    reverse_rgb : the image is BGR.
    absolute_coordinates : False when ``bboxes`` are fractions of the image's width and height.
    linewidth : box line width; fontsize : label font size.

    Returns
    -------
    The matplotlib Axes, with one ``Rectangle`` patch per drawn box at GluonCV's integer corners
    ``(int(x1), int(y1))``, width ``int(x2) - int(x1)``, height ``int(y2) - int(y1)``, and one text
    ``'{name} {score:.3f}'`` at ``(int(x1), int(y1) - 2)``.

    Raises
    ------
    ValueError when ``scores`` or ``labels`` do not have one value per box.
    """
    from matplotlib import pyplot as plt

    boxes = np.array(as_numpy(bboxes), dtype=np.float64).reshape(-1, 4) if len(bboxes) else np.zeros((0, 4))
    labels = _flat(labels, "labels", len(boxes))
    scores = _flat(scores, "scores", len(boxes))
    ax = plot_image(img, ax=ax, reverse_rgb=reverse_rgb)
    if len(boxes) < 1:
        return ax
    if not absolute_coordinates:
        height, width = np.asarray(as_numpy(img)).shape[:2]
        boxes[:, (0, 2)] *= width
        boxes[:, (1, 3)] *= height
    if colors is None:
        colors = {}
    for i, box in enumerate(boxes):
        if scores is not None and scores[i] < thresh:
            continue
        if labels is not None and labels[i] < 0:
            continue
        if not np.all(np.isfinite(box)):
            log.warning("plot_bbox: skipping box %d with non-finite corners %s", i, box.tolist())
            continue
        cls_id = int(labels[i]) if labels is not None else -1
        if cls_id not in colors:
            colors[cls_id] = tuple(c / 255.0 for c in class_colour(max(cls_id, 0)))
        colour = _rgba(colors[cls_id])
        xmin, ymin, xmax, ymax = (int(v) for v in box)
        ax.add_patch(plt.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=colour,
                                   linewidth=linewidth))
        if class_names is not None and 0 <= cls_id < len(class_names):
            class_name = class_names[cls_id]
        else:
            class_name = str(cls_id) if cls_id >= 0 else ""
        score = f"{scores[i]:.3f}" if scores is not None else ""
        if class_name or score:
            ax.text(xmin, ymin - 2, f"{class_name} {score}", bbox=dict(facecolor=colour, alpha=0.5),
                    fontsize=fontsize, color="white")
    return ax
