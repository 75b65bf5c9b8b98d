"""Drawing detections on images (OpenCV, headless) and writing the result.

Colours are a function of the class id alone, so a class keeps its colour across images, runs and
tools (demo, evaluation, quickstart). Labels sit in a box filled with the class colour and are written in
black or white, whichever contrasts more with that fill, so they stay readable on any background.
"""
from __future__ import annotations

import colorsys
import logging
import os
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["class_colour", "text_colour", "draw_detections", "save_image"]

log = logging.getLogger(__name__)

_GOLDEN = 0.6180339887498949
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, saturated RGB colour for ``class_id``.

    Hues step by the golden ratio, so neighbouring ids get far-apart hues and no two of the first
    hundreds of ids coincide; value and saturation alternate a little to separate ids with close hues.
    """
    class_id = int(class_id)
    hue = (0.07 + class_id * _GOLDEN) % 1.0
    sat = 0.85 if class_id % 2 == 0 else 0.65
    val = 0.95 if (class_id // 2) % 2 == 0 else 0.8
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _luminance(rgb) -> float:
    """WCAG relative luminance of an sRGB colour (0..255 channels)."""
    def lin(c):
        c = c / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(float(c)) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_colour(fill) -> tuple[int, int, int]:
    """Black or white: whichever has the higher WCAG contrast ratio against ``fill`` (RGB)."""
    lum = _luminance(fill)
    contrast_black = (lum + 0.05) / 0.05
    contrast_white = 1.05 / (lum + 0.05)
    return (0, 0, 0) if contrast_black >= contrast_white else (255, 255, 255)


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    class_ids: Sequence[int],
    scores: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    thresh: float = 0.0,
    line_width: int | None = None,
    font_scale: float | None = None,
) -> np.ndarray:
    """Draw boxes with class names and scores on a copy of ``image``.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB (a (H, W) grey image is converted).
    boxes : (K, 4) corners x1, y1, x2, y2 in the image's pixels.
    class_ids : (K,) class indices; rows with a negative id are padding and skipped.
    scores : (K,) confidences, or None (no score in the label, no threshold).
    class_names : names indexed by class id; an id outside it is labelled with the number.
    thresh : rows with score below this are skipped.
    line_width, font_scale : default to values that grow with the image size.

    Returns
    -------
    (H, W, 3) uint8 RGB, a new array.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"draw_detections expects an (H, W, 3) RGB image, got shape {img.shape}")
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    height, width = out.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ids = np.asarray(class_ids).reshape(-1)
    if len(ids) != len(boxes):
        raise ValueError(f"got {len(boxes)} boxes but {len(ids)} class ids")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"got {len(boxes)} boxes but {len(scores)} scores")
    short = min(height, width)
    if line_width is None:
        line_width = max(1, int(round(short / 250)))
    if font_scale is None:
        font_scale = float(np.clip(short / 900, 0.4, 1.6))
    text_thick = max(1, int(round(font_scale * 1.5)))
    # Draw low scores first so the most confident labels end up on top.
    order = np.argsort(scores, kind="stable") if scores is not None else np.arange(len(boxes))
    for i in order:
        cid = int(ids[i])
        if cid < 0 or (scores is not None and scores[i] < thresh):
            continue
        x1, y1, x2, y2 = boxes[i]
        if not np.all(np.isfinite(boxes[i])):
            log.warning("skipping a box with non-finite corners %s", boxes[i].tolist())
            continue
        p1 = (int(round(np.clip(x1, 0, width - 1))), int(round(np.clip(y1, 0, height - 1))))
        p2 = (int(round(np.clip(x2, 0, width - 1))), int(round(np.clip(y2, 0, height - 1))))
        colour = class_colour(cid)
        cv2.rectangle(out, p1, p2, colour, line_width, lineType=cv2.LINE_8)
        name = class_names[cid] if class_names is not None and cid < len(class_names) else str(cid)
        label = name if scores is None else f"{name} {scores[i]:.2f}"
        _draw_label(out, label, p1, colour, font_scale, text_thick, line_width)
    return out


def _draw_label(img, text, corner, fill, font_scale, thickness, line_width):
    """A filled label box at the box's top-left corner: above it when there is room, else inside;
    shifted left when it would leave the image on the right."""
    height, width = img.shape[:2]
    (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
    pad = max(2, line_width)
    box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
    x = min(corner[0], max(0, width - box_w))
    y = corner[1] - box_h if corner[1] - box_h >= 0 else corner[1]
    y = min(y, max(0, height - box_h))
    cv2.rectangle(img, (x, y), (x + box_w - 1, y + box_h - 1), fill, thickness=-1)
    cv2.putText(img, text, (x + pad, y + pad + th), _FONT, font_scale, text_colour(fill), thickness,
                lineType=cv2.LINE_AA)


def save_image(path, image: np.ndarray) -> str:
    """Write an RGB uint8 image; the format follows the extension (.png, .jpg, ...).

    Encodes in memory and writes the bytes, so paths that OpenCV's file API cannot open (non-ASCII
    names on some platforms) work too. Raises ValueError for an extension OpenCV cannot encode and
    OSError when the file cannot be written, naming the path.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower() or ".png"
    img = np.asarray(image, dtype=np.uint8)
    bgr = img[:, :, ::-1] if img.ndim == 3 else img
    try:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode an image as {ext!r} for {path}: use .png or .jpg")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return path
