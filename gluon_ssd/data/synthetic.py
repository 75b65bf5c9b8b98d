"""A synthetic shapes detection dataset in VOC format, for training runs without downloads.

``python -m gluon_ssd.cli.synthetic --out DIR --train N --val M --seed S`` (:func:`write_synthetic_dataset`) writes::

    DIR/JPEGImages/{train,val}_NNNNNN.jpg
    DIR/Annotations/{train,val}_NNNNNN.xml     VOC XML, 1-based inclusive pixel boxes, difficult 0
    DIR/ImageSets/Main/train.txt, val.txt
    DIR/classes.txt                            circle, square, triangle, cross, ring (or the --classes subset)

which :class:`gluon_ssd.data.CustomVOCDetection` reads. Images are 200-400 px a side (any aspect ratio
in that range) with 1-6 filled shapes of 40-160 px (from 10% of the short side, where SSD's smallest
anchors start) in 8 colours on textured, noisy backgrounds (gradients, smooth noise, stripes, checkers,
stray lines). Placement limits occlusion: at least three quarters of every shape's pixels stay visible
and box IoU stays at most 0.3. Every box
is the tight box of the shape's *visible* pixels (computed from the drawn mask, so it is exact; shapes
are drawn without anti-aliasing). Each image has its own random stream from ``(seed, split, index)``:
the same arguments give byte-identical files.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import cv2
import numpy as np

from ..boxes import iou_voc

__all__ = ["SHAPE_CLASSES", "write_synthetic_dataset", "render_synthetic_image"]

logger = logging.getLogger(__name__)

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring")
VERSION = 2  # bumped whenever the same arguments draw different images (2: shapes of at least 40 px)

_PALETTE = np.array(
    [
        (220, 40, 40), (40, 170, 60), (40, 80, 220), (235, 205, 40),
        (200, 50, 200), (40, 200, 210), (245, 130, 30), (245, 245, 245),
    ],
    dtype=np.float32,
)
_MIN_CONTRAST = 60.0
_MAX_COVER = 0.25
_MAX_IOU = 0.3
_PLACEMENT_TRIES = 30
_CLEAN_BACKGROUND = 128.0


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _fill_polygon(mask: np.ndarray, points: np.ndarray) -> None:
    """Fill ``points`` (K, 2), any scale, stretched onto the whole mask (h, w)."""
    h, w = mask.shape
    lo, hi = points.min(axis=0), points.max(axis=0)
    scaled = (points - lo) / np.maximum(hi - lo, 1e-9) * np.array([w - 1, h - 1])
    cv2.fillPoly(mask, [np.round(scaled * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)


def _shape_mask(cls: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w) uint8 mask of one shape filling its w x h box."""
    mask = np.zeros((h, w), np.uint8)
    if cls in ("circle", "ring"):
        center, axes = ((w - 1) // 2, (h - 1) // 2), ((w - 1) // 2, (h - 1) // 2)
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, thickness=-1, lineType=cv2.LINE_8)
        if cls == "ring":
            inner = rng.uniform(0.45, 0.65)
            hole = (max(1, int(axes[0] * inner)), max(1, int(axes[1] * inner)))
            cv2.ellipse(mask, center, hole, 0, 0, 360, 0, thickness=-1, lineType=cv2.LINE_8)
    elif cls == "square":
        square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
        _fill_polygon(mask, _rotate(square, rng.uniform(-0.35, 0.35)))
    elif cls == "triangle":
        apex = rng.uniform(-0.4, 0.4)
        tri = np.array([[apex, -1], [1, 1], [-1, 1]], np.float64)
        _fill_polygon(mask, _rotate(tri, rng.integers(4) * np.pi / 2 + rng.uniform(-0.15, 0.15)))
    elif cls == "cross":
        t = rng.uniform(0.25, 0.4)
        arm = np.array(
            [[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t],
             [-1, -t], [-t, -t]],
            np.float64,
        )
        _fill_polygon(mask, _rotate(arm, rng.uniform(-0.35, 0.35)))
    else:
        raise ValueError(f"unknown shape class {cls!r}; choose from {SHAPE_CLASSES}")
    return mask


def _dilate(mask: np.ndarray) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) float32 textured background in muted colours."""
    gray = rng.uniform(60, 190)
    c1 = (gray + rng.uniform(-35, 35, 3)).astype(np.float32)
    c2 = (gray + rng.uniform(-35, 35, 3)).astype(np.float32)
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    if kind == 0:
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == 1:
        grid = rng.uniform(-30, 30, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.float32)
        img = c1 + cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 2:
        period = rng.uniform(8, 40)
        img = c1 + rng.uniform(8, 25) * np.sin(2 * np.pi * proj / period)[..., None]
    else:
        cell = int(rng.integers(8, 41))
        checker = ((xx // cell + yy // cell) % 2)[..., None]
        img = c1 * (1 - checker) + c2 * checker
    img = np.ascontiguousarray(img, dtype=np.float32)
    for _ in range(int(rng.integers(0, 5))):
        p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
        p2 = tuple(int(v) for v in rng.integers(0, (w, h)))
        colour = tuple(float(v) for v in gray + rng.uniform(-50, 50, 3))
        cv2.line(img, p1, p2, colour, int(rng.integers(1, 4)), lineType=cv2.LINE_8)
    return img


def render_synthetic_image(
    rng: np.random.Generator,
    min_size: int = 200,
    max_size: int = 400,
    min_object_size: int = 40,
    max_object_size: int = 160,
    max_objects: int = 6,
    clean: bool = False,
    classes: Sequence[str] = SHAPE_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image and its exact boxes.

    Parameters
    ----------
    rng : np.random.Generator
        The image's random stream.
    min_size, max_size : int
        Range of the image's width and of its height (drawn independently).
    min_object_size, max_object_size : int
        Range of a shape's box side before its aspect jitter (log-uniform), capped at 60% of the image's
        short side.
    max_objects : int
        Each image gets 1..max_objects shapes (fewer when placement fails).
    clean : bool
        Flat grey background, no stray lines, no pixel noise (for tests of box tightness).
    classes : sequence of str
        The shapes to draw, drawn uniformly (any of :data:`SHAPE_CLASSES`, each once).

    Returns
    -------
    image : np.ndarray
        (H, W, 3) uint8 RGB.
    label : np.ndarray
        (K, 5) int64 rows ``[x1, y1, x2, y2, class]``, 0-based inclusive pixel corners of each shape's
        visible pixels; class indexes ``classes``.
    """
    w, h = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    img = np.full((h, w, 3), _CLEAN_BACKGROUND, np.float32) if clean else _background(w, h, rng)
    owner = np.full((h, w), -1, np.int32)
    visible = np.zeros(max_objects, np.int64)
    drawn = np.zeros(max_objects, np.int64)
    boxes = np.zeros((0, 4), np.int64)
    kinds: list[int] = []
    colours: list[int] = []
    top = max(min_object_size, min(max_object_size, int(0.6 * min(w, h))))
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(classes)))
        for _try in range(_PLACEMENT_TRIES):
            side = np.exp(rng.uniform(np.log(min_object_size), np.log(top)))
            aspect = np.sqrt(rng.uniform(0.75, 1.33))
            bw = int(np.clip(round(side * aspect), min_object_size, w))
            bh = int(np.clip(round(side / aspect), min_object_size, h))
            x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            box = np.array([x0, y0, x0 + bw - 1, y0 + bh - 1])
            # Integer corners with x2 inclusive: the VOC convention, exact in integers.
            if len(boxes) and iou_voc(box[None], boxes).max() > _MAX_IOU:
                continue
            mask = _shape_mask(classes[cls], bw, bh, rng).astype(bool)
            region = owner[y0:y0 + bh, x0:x0 + bw]
            covered = np.bincount(region[mask] + 1, minlength=len(boxes) + 1)[1:]
            if np.any(visible[: len(boxes)] - covered < (1 - _MAX_COVER) * drawn[: len(boxes)]):
                continue
            patch = img[y0:y0 + bh, x0:x0 + bw]
            # shapes that touch get different colours, so that they do not merge into one blob
            touching = np.unique(region[mask | _dilate(mask)])
            allowed = np.setdiff1d(np.arange(len(_PALETTE)), np.asarray(colours)[touching[touching >= 0]])
            for _c in range(8):
                pick = int(allowed[rng.integers(len(allowed))])
                colour = _PALETTE[pick] + rng.uniform(-15, 15, 3).astype(np.float32)
                if np.abs(patch[mask].mean(axis=0) - colour).max() >= _MIN_CONTRAST:
                    break
            colours.append(pick)
            patch[mask] = colour
            region[mask] = len(boxes)
            visible[: len(boxes)] -= covered
            visible[len(boxes)] = drawn[len(boxes)] = int(mask.sum())
            boxes = np.vstack([boxes, box])
            kinds.append(cls)
            break
    if not clean:
        img += rng.uniform(0, 10) * rng.standard_normal((h, w, 3), dtype=np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    tight = np.zeros((len(kinds), 5), np.int64)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        ys, xs = np.nonzero(owner[y0:y1 + 1, x0:x1 + 1] == k)
        tight[k] = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max(), y0 + ys.max(), kinds[k])
    return image, tight


def _voc_xml(image_id: str, width: int, height: int, label: np.ndarray, classes: Sequence[str]) -> str:
    objects = "".join(
        f"\t<object>\n\t\t<name>{classes[c]}</name>\n\t\t<pose>Unspecified</pose>\n"
        f"\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
        f"\t\t\t<xmin>{x1 + 1}</xmin>\n\t\t\t<ymin>{y1 + 1}</ymin>\n"
        f"\t\t\t<xmax>{x2 + 1}</xmax>\n\t\t\t<ymax>{y2 + 1}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for x1, y1, x2, y2, c in label.tolist()
    )
    return (
        "<annotation>\n\t<folder>synthetic</folder>\n"
        f"\t<filename>{image_id}.jpg</filename>\n"
        "\t<source>\n\t\t<database>gluon-ssd synthetic shapes</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>0</segmented>\n{objects}</annotation>\n"
    )


def write_synthetic_dataset(
    out: str,
    n_train: int,
    n_val: int,
    seed: int = 0,
    *,
    min_size: int = 200,
    max_size: int = 400,
    min_object_size: int = 40,
    max_object_size: int = 160,
    max_objects: int = 6,
    clean: bool = False,
    classes: Sequence[str] = SHAPE_CLASSES,
    jpeg_quality: int = 90,
    progress: bool = True,
) -> dict:
    """Write the synthetic shapes dataset (layout in the module docstring).

    Parameters
    ----------
    out : str
        Output folder (created; existing files of the same names are overwritten).
    n_train, n_val : int
        Number of training and validation images.
    seed : int
        Image ``i`` of split ``s`` is drawn from ``np.random.default_rng([seed, s, i])`` (s = 0 train,
        1 val), so it does not depend on the other counts.
    min_size, max_size, min_object_size, max_object_size, max_objects, clean, classes
        See :func:`render_synthetic_image`; ``classes`` is also the class list written to classes.txt.
    jpeg_quality : int
        JPEG quality; ``clean=True`` writes quality 100 without chroma subsampling instead.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        ``{'root': out, 'train': n_train, 'val': n_val, 'objects': {class: count}}``.
    """
    from tqdm import tqdm

    for name, value, low in (("n_train", n_train, 0), ("n_val", n_val, 0), ("min_size", min_size, 1),
                             ("min_object_size", min_object_size, 2), ("max_objects", max_objects, 1)):
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if max_size < min_size:
        raise ValueError(f"max_size ({max_size}) must be >= min_size ({min_size})")
    if not min_object_size <= max_object_size:
        raise ValueError(f"max_object_size ({max_object_size}) must be >= min_object_size {min_object_size}")
    if min_object_size > min_size:
        raise ValueError(f"min_object_size ({min_object_size}) must not exceed min_size ({min_size})")
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPE_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes {list(classes)}: give distinct names among {', '.join(SHAPE_CLASSES)}")
    if clean:
        params = [cv2.IMWRITE_JPEG_QUALITY, 100, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    out = os.fspath(out)
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    counts = np.zeros(len(classes), np.int64)
    bar = tqdm(total=n_train + n_val, desc="synthetic", unit="img", disable=not progress, file=sys.stderr)
    for split_code, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        ids = [f"{split}_{i:06d}" for i in range(n)]
        for i, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, split_code, i])
            image, label = render_synthetic_image(
                rng, min_size, max_size, min_object_size, max_object_size, max_objects, clean, classes
            )
            ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], params)
            if not ok:
                raise RuntimeError(f"OpenCV could not encode image {image_id}")
            with open(os.path.join(out, "JPEGImages", f"{image_id}.jpg"), "wb") as f:
                f.write(buf.tobytes())
            with open(os.path.join(out, "Annotations", f"{image_id}.xml"), "w", encoding="utf-8") as f:
                f.write(_voc_xml(image_id, image.shape[1], image.shape[0], label, classes))
            counts += np.bincount(label[:, 4], minlength=len(classes))
            bar.update(1)
        with open(os.path.join(out, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
    bar.close()
    with open(os.path.join(out, "classes.txt"), "w") as f:
        f.write("".join(f"{c}\n" for c in classes))
    summary = {"root": out, "train": n_train, "val": n_val,
               "objects": dict(zip(classes, counts.tolist()))}
    logger.info("wrote synthetic dataset %s", summary)
    return summary
