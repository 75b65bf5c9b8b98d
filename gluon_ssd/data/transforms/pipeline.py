"""The SSD input pipeline: the validation/demo preprocessing and the training augmentation of GluonCV.

The package :mod:`gluon_ssd.data.transforms` exports these names; this module holds them so that GluonCV's
path, :mod:`.presets.ssd`, can build on them without importing the package that imports it. These are the
versions our training and evaluation use: the validation transform and ``load_test`` /
``transform_test`` return NDArray image tensors, the training transform numpy arrays (faster to batch).
GluonCV's spelling, ``gluon_ssd.data.transforms.presets.ssd`` (:mod:`.presets.ssd`), wraps these same
functions with GluonCV's return types (NDArrays where GluonCV returns them).

Images are HWC RGB (numpy uint8 or ``mx.nd.NDArray``); labels are numpy (N, 5+) rows
``[x1, y1, x2, y2, class, (difficult, ...)]`` in pixels, N may be 0.

Random state
------------
:class:`SSDDefaultTrainTransform` never touches the global ``np.random`` / ``random`` state. Each call
may pass its own ``rng`` (e.g. one seeded per sample and epoch, which makes a run reproducible sample
for sample whatever the worker layout). Otherwise the transform draws from a stream of its ``seed``
(an int, a ``np.random.SeedSequence``, a ``np.random.Generator`` or None for fresh entropy), one
generator per process:

- in the process that built it, the stream of ``seed`` itself (a Generator is used as given);
- in any other process (DataLoader workers, forked or spawned), a stream derived on first use from
  ``seed``, the worker's multiprocessing identity and the epoch (see :meth:`set_epoch`, 0 by
  default): ``SeedSequence(seed.entropy, spawn_key=seed.spawn_key + identity + (epoch,))``, where
  ``identity`` is ``multiprocessing.current_process()._identity`` (``(1,)`` and ``(2,)`` for the
  two workers of the first pool a process starts; the process id if there is none). With a
  Generator as ``seed`` the entropy is one draw from its state at fork time. After ``set_epoch(e)``
  with e > 0 the building process also switches to a derived stream, with identity ``(0,)``.

So two workers never share a stream, and a program gets the same streams run after run. Which worker
gets which sample is up to the DataLoader, so with several workers only per-sample ``rng`` makes the
samples themselves reproducible.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence

import cv2
import numpy as np

from ..._mxnet import is_ndarray, mx
from ...boxes import box_iou
from ...specs import BOX_STDS, IMAGENET_MEAN, IMAGENET_STD
from ..custom import read_image
from ..image import (
    as_image,
    auto_interp,
    color_distort_matrix,
    expanded_crop,
    imresize,
    resize_short_within_size,
    to_tensor,
)

__all__ = [
    "SSDDefaultTrainTransform",
    "SSDDefaultValTransform",
    "bbox_iou",
    "crop_boxes",
    "flip_boxes",
    "load_test",
    "random_crop_with_constraints",
    "random_expand_placement",
    "resize_boxes",
    "transform_test",
]

logger = logging.getLogger(__name__)

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD
# The crop constraints' IoU: MXNet's convention (corner boxes, no +1), as GluonCV's crop sampler computes it.
bbox_iou = box_iou

# GluonCV's crop constraints: (min IoU, max IoU) that every ground truth must have with the crop.
CROP_CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None), (None, 1))


# ----------------------------------------------------------------------------------------- labels
def _as_label(label, name: str = "label") -> np.ndarray:
    """Labels as a float (N, K>=4) numpy array; empty input becomes (0, 6)."""
    if is_ndarray(label):
        label = label.asnumpy()
    label = np.asarray(label)
    if label.size == 0:
        width = label.shape[-1] if label.ndim == 2 and label.shape[-1] >= 4 else 6
        return np.zeros((0, width), dtype=np.float32)
    if label.ndim != 2 or label.shape[1] < 4:
        raise ValueError(
            f"{name} must be an (N, 5+) array of [x1, y1, x2, y2, class, ...] rows, got shape {label.shape}")
    return label


def resize_boxes(label: np.ndarray, in_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Scale box corners from an image of ``in_size`` (w, h) to ``out_size`` (w, h); float64 result."""
    out = np.array(label, dtype=np.float64)
    out[:, (0, 2)] *= out_size[0] / in_size[0]
    out[:, (1, 3)] *= out_size[1] / in_size[1]
    return out


def flip_boxes(label: np.ndarray, width: float) -> np.ndarray:
    """Mirror boxes left-right in an image ``width`` pixels wide: x1' = W - x2, x2' = W - x1."""
    out = np.array(label, copy=True)
    out[:, 0] = width - label[:, 2]
    out[:, 2] = width - label[:, 0]
    return out


def crop_boxes(label: np.ndarray, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes seen through each of K crops, keeping those whose centre lies inside the crop.

    Parameters
    ----------
    label : (N, 4+) boxes.
    crops : (K, 4) crops as (x, y, width, height).

    Returns
    -------
    boxes : (K, N, 4+) boxes clipped to each crop, in crop coordinates.
    keep : (K, N) bool: centre inside the crop (left/top edges inclusive) and positive area after
        clipping.
    """
    lo = crops[:, None, :2].astype(np.float64)
    hi = lo + crops[:, None, 2:4]
    centers = (label[:, :2] + label[:, 2:4]) / 2
    keep = ((lo <= centers) & (centers < hi)).all(axis=-1)
    boxes = np.repeat(label[None].astype(np.float64), len(crops), axis=0)
    boxes[..., :2] = np.maximum(boxes[..., :2], lo) - lo
    boxes[..., 2:4] = np.minimum(boxes[..., 2:4], hi) - lo
    keep &= (boxes[..., :2] < boxes[..., 2:4]).all(axis=-1)
    return boxes, keep


# ----------------------------------------------------------------------------- random geometry
def random_expand_placement(rng: np.random.Generator, height: int, width: int, max_ratio: float = 4.0):
    """Canvas for GluonCV's zoom-out: side ratio uniform in [1, max_ratio] (same for both sides).

    Returns
    -------
    (off_x, off_y, canvas_w, canvas_h): the image goes at (off_x, off_y) of a canvas_w x canvas_h canvas,
    offsets uniform over the valid integer positions.
    """
    ratio = rng.uniform(1.0, max_ratio)
    canvas_h, canvas_w = int(height * ratio), int(width * ratio)
    off_y = int(rng.integers(0, canvas_h - height + 1))
    off_x = int(rng.integers(0, canvas_w - width + 1))
    return off_x, off_y, canvas_w, canvas_h


def random_crop_with_constraints(label: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                                 min_scale: float = 0.3, max_scale: float = 1.0,
                                 max_aspect_ratio: float = 2.0,
                                 constraints: Sequence[tuple[float | None, float | None]] = CROP_CONSTRAINTS,
                                 max_trial: int = 50) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """SSD's IoU-constrained random crop, as GluonCV does it.

    For each (min IoU, max IoU) constraint, up to ``max_trial`` crops are drawn (scale uniform in
    [min_scale, max_scale], aspect ratio uniform in [max(1/max_ar, scale^2), min(max_ar, 1/scale^2)],
    side lengths truncated to integers, the position uniform such that the crop ends before the last
    row/column); the first whose IoU with **every** box is inside the constraint is a candidate. The
    uncropped image is always a candidate too. One candidate is picked uniformly among those that keep
    at least one box (whose centre is inside it); with no boxes every candidate qualifies (the
    constraints hold vacuously). If none qualifies, the image and boxes are returned unchanged.

    Parameters
    ----------
    label : (N, 4+) boxes in pixels.
    size : (width, height) of the image.
    rng : np.random.Generator.

    Returns
    -------
    boxes : (M, 4+) float64 boxes of the crop, M <= N.
    crop : (x, y, width, height) in pixels.
    """
    width, height = size
    num_constraints = len(constraints)
    scale = rng.uniform(min_scale, max_scale, (num_constraints, max_trial))
    low = np.maximum(1.0 / max_aspect_ratio, scale * scale)
    high = np.minimum(max_aspect_ratio, 1.0 / (scale * scale))
    aspect = rng.uniform(low, high)
    crop_h = np.maximum((height * scale / np.sqrt(aspect)).astype(np.int64), 1)
    crop_w = np.maximum((width * scale * np.sqrt(aspect)).astype(np.int64), 1)
    top = rng.integers(0, np.maximum(height - crop_h, 1))
    left = rng.integers(0, np.maximum(width - crop_w, 1))
    trials = np.stack([left, top, crop_w, crop_h], axis=-1)  # (C, T, 4)

    if len(label):
        corners = np.concatenate([trials[..., :2], trials[..., :2] + trials[..., 2:]], axis=-1)
        iou = bbox_iou(corners.astype(np.float64), label)  # (C, T, N)
        min_iou = np.array([-np.inf if lo is None else lo for lo, _ in constraints])[:, None]
        max_iou = np.array([np.inf if hi is None else hi for _, hi in constraints])[:, None]
        ok = (iou.min(axis=-1) >= min_iou) & (iou.max(axis=-1) <= max_iou)
    else:
        ok = np.ones((num_constraints, max_trial), dtype=bool)
    found = ok.any(axis=1)
    first = ok.argmax(axis=1)
    chosen = trials[np.nonzero(found)[0], first[found]]
    candidates = np.concatenate([np.array([[0, 0, width, height]]), chosen])

    boxes, keep = crop_boxes(label, candidates)
    usable = keep.any(axis=1) if len(label) else np.ones(len(candidates), dtype=bool)
    if not usable.any():
        return np.array(label, dtype=np.float64), (0, 0, int(width), int(height))
    pick = rng.choice(np.nonzero(usable)[0])
    x, y, w, h = (int(v) for v in candidates[pick])
    return boxes[pick][keep[pick]], (x, y, w, h)


# ------------------------------------------------------------------------------ random streams
class _ProcessRandom:
    """One ``np.random.Generator`` per process, derived from a seed (see the module docstring)."""

    def __init__(self, seed):
        self._epoch = 0
        if isinstance(seed, np.random.Generator):
            self._seq = None
            self._root = seed
        else:
            self._seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
            self._root = np.random.default_rng(self._seq)
        self._home = os.getpid()
        self._pid = self._home
        self._rng = self._root

    def set_epoch(self, epoch: int):
        self._epoch = int(epoch)
        self._pid = None  # derive again on next use, in every process

    def _derive(self, pid: int) -> np.random.Generator:
        identity = tuple(multiprocessing.current_process()._identity)
        if not identity:
            identity = (0,) if pid == self._home else (pid,)
        key = identity + (self._epoch,)
        if self._seq is None:
            entropy = int(self._root.integers(0, 2**63))
            return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))
        return np.random.default_rng(
            np.random.SeedSequence(self._seq.entropy, spawn_key=tuple(self._seq.spawn_key) + key))

    def get(self) -> np.random.Generator:
        pid = os.getpid()
        if pid != self._pid:
            home = pid == self._home and self._epoch == 0
            self._rng = self._root if home else self._derive(pid)
            self._pid = pid
        return self._rng


# ---------------------------------------------------------------------------------- presets
def _mx(array: np.ndarray):
    """Wrap a freshly made array as an NDArray without copying it (the array itself without MXNet)."""
    if mx is None:
        return np.ascontiguousarray(array)
    return mx.nd.from_numpy(np.ascontiguousarray(array), zero_copy=True)


class SSDDefaultValTransform:
    """Validation preprocessing, bit-identical to GluonCV's ``SSDDefaultValTransform``.

    Resizes to ``width`` x ``height`` (no aspect ratio kept) with MXNet's ``interp=9`` rule (bicubic
    when enlarging both sides, area when shrinking both, bilinear otherwise), then normalizes.

    Parameters
    ----------
    width, height : int, network input size.
    mean, std : 3 floats each, RGB normalization in [0, 1] units.

    Notes
    -----
    Called as ``(img, label) -> (image, label)``: img (H, W, 3) RGB uint8 (numpy or NDArray), label
    (N, 4+) numpy; returns image ``mx.nd.NDArray`` (3, height, width) float32 (numpy without MXNet) and the
    label as float32 with its boxes scaled to the new size.
    """

    def __init__(self, width: int, height: int, mean=MEAN, std=STD):
        self._width, self._height = int(width), int(height)
        self._mean, self._std = tuple(mean), tuple(std)

    def __call__(self, img, label):
        src = img if is_ndarray(img) else as_image(img)
        height, width = src.shape[:2]
        interp = auto_interp((height, width), (self._height, self._width))
        resized = imresize(src, self._width, self._height, interp)
        boxes = resize_boxes(_as_label(label), (width, height), (self._width, self._height))
        return _mx(to_tensor(resized, self._mean, self._std)), boxes.astype(np.float32)


def transform_test(imgs, short: int = 512, max_size: int = 1024, mean=MEAN, std=STD):
    """Demo preprocessing, bit-identical to GluonCV's ``presets.ssd.transform_test``.

    Each image is resized (bicubic, aspect ratio kept) so that its short side is ``short`` unless its
    long side would exceed ``max_size``, then normalized.

    Parameters
    ----------
    imgs : an image or a list of images, (H, W, 3) RGB uint8, numpy or NDArray.
    short, max_size : int.
    mean, std : 3 floats each.

    Returns
    -------
    For one image ``(tensor, original)``: tensor ``mx.nd.NDArray`` (1, 3, H', W') float32 and the
    resized image as a (H', W', 3) uint8 numpy array for display. For a list, two lists.
    """
    single = isinstance(imgs, np.ndarray) or is_ndarray(imgs)
    tensors, originals = [], []
    for img in ([imgs] if single else imgs):
        src = img if is_ndarray(img) else as_image(img)
        height, width = src.shape[:2]
        new_w, new_h = resize_short_within_size(height, width, short, max_size)
        resized = imresize(src, new_w, new_h, interp=2)
        originals.append(resized.astype(np.uint8))
        tensors.append(_mx(to_tensor(resized, mean, std)[None]))
    if single:
        return tensors[0], originals[0]
    return tensors, originals


def load_test(filenames, short: int = 512, max_size: int = 1024, mean=MEAN, std=STD):
    """Read image file(s) (as ``mx.image.imread``, RGB) and apply :func:`transform_test`.

    Parameters
    ----------
    filenames : str or list of str.

    Returns
    -------
    As :func:`transform_test`: ``(tensor, original)`` for one name, two lists for a list.
    """
    single = isinstance(filenames, (str, os.PathLike))
    names = [filenames] if single else list(filenames)
    imgs = []
    for name in names:
        if not os.path.isfile(name):
            raise FileNotFoundError(f"image file not found: {name}")
        if mx is None:
            imgs.append(read_image(os.fspath(name)))
        else:
            imgs.append(mx.image.imread(os.fspath(name)))
    return transform_test(imgs[0] if single else imgs, short, max_size, mean, std)


class SSDDefaultTrainTransform:
    """GluonCV's SSD training augmentation, vectorized, with its own random streams.

    In order: photometric distortion (:func:`~gluon_ssd.data.image.color_distort_matrix`); with
    p=.5 a zoom-out onto a canvas up to 4x each side filled with ``mean * 255``; the IoU-constrained
    crop (:func:`random_crop_with_constraints`); resize to ``width`` x ``height`` with an
    interpolation drawn from 0..4; left-right flip with p=.5; normalization. Images without objects
    are fine (GluonCV fails on them): they go through the same steps and get all-background targets.

    Parameters
    ----------
    width, height : int, network input size.
    anchors : NDArray (1, N, 4), optional
        The network's anchors (third output of a training-mode forward). With them the transform also
        returns training targets, as GluonCV's does; without, it returns the augmented label, and
        targets can be made for a whole batch on the training device with
        :func:`gluon_ssd.train.batch_targets` instead (much faster).
    mean, std : 3 floats each.
    iou_thresh : float, matching threshold of the targets.
    box_norm : 4 floats, box target stds.
    seed : int, SeedSequence, Generator or None. See the module docstring for worker processes.
    max_expand : float, largest zoom-out ratio (GluonCV: 4); 1 turns the zoom-out off, which suits short
        schedules on objects that are small already.

    Notes
    -----
    Called as ``(img, label, rng=None)`` with img (H, W, 3) RGB uint8 (numpy or NDArray), label
    (N, 5+) numpy and optionally the ``np.random.Generator`` to draw from (instead of the transform's
    own stream, e.g. one seeded per sample). Returns ``(image, label)``: image (3, height, width)
    float32 and label (M, 5+) float32 (M <= N, boxes in output pixels), or with anchors ``(image,
    cls_targets (N,), box_targets (N, 4))``. All are numpy arrays (GluonCV returns NDArrays, and so does
    :class:`gluon_ssd.data.transforms.presets.ssd.SSDDefaultTrainTransform`, the same numbers): every
    batchify (GluonCV's ``Stack``, MXNet's default, :func:`gluon_ssd.data.batchify.batchify_detection`)
    accepts them, and stacking numpy arrays is several times faster than ``mx.nd.stack`` on CPU.
    """

    def __init__(self, width: int, height: int, anchors=None, mean=MEAN, std=STD, iou_thresh: float = 0.5,
                 box_norm=BOX_STDS, seed=None, max_expand: float = 4.0):
        self._width, self._height = int(width), int(height)
        self._max_expand = float(max_expand)
        if self._width < 1 or self._height < 1:
            raise ValueError(f"width and height must be positive, got {width} x {height}")
        self._mean, self._std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._fill = tuple(m * 255.0 for m in self._mean)
        self._anchors = anchors
        self._iou_thresh = float(iou_thresh)
        self._box_norm = tuple(box_norm)
        self._random = _ProcessRandom(seed)
        if anchors is not None and (anchors.ndim not in (2, 3) or anchors.shape[-1] != 4):
            raise ValueError(f"anchors must be (1, N, 4) as the network returns them, got shape {anchors.shape}")

    def set_epoch(self, epoch: int):
        """Mix ``epoch`` into the random streams (for loaders that start new workers every epoch)."""
        self._random.set_epoch(epoch)

    def augment(self, img, label, rng: np.random.Generator | None = None):
        """The augmentation without normalization and targets.

        Returns
        -------
        image : np.ndarray (height, width, 3) float32 in pixel units (distorted, not clipped).
        label : np.ndarray (M, K) float64.
        flip : bool, whether the image and label still have to be mirrored.
        """
        rng = self._random.get() if rng is None else rng
        src = as_image(img)
        label = _as_label(label)
        height, width = src.shape[:2]
        color = color_distort_matrix(rng)
        if self._max_expand > 1 and rng.uniform() > 0.5:
            off_x, off_y, canvas_w, canvas_h = random_expand_placement(rng, height, width, self._max_expand)
            boxes = np.array(label, dtype=np.float64)
            boxes[:, (0, 2)] += off_x
            boxes[:, (1, 3)] += off_y
        else:
            off_x, off_y, canvas_w, canvas_h = 0, 0, width, height
            boxes = label
        boxes, crop = random_crop_with_constraints(boxes, (canvas_w, canvas_h), rng)
        region = expanded_crop(src, color, self._fill, (off_x, off_y), crop)
        interp = int(rng.integers(0, 5))
        resized = cv2.resize(region, (self._width, self._height), interpolation=interp)
        boxes = resize_boxes(boxes, (crop[2], crop[3]), (self._width, self._height))
        flip = bool(rng.uniform() < 0.5)
        return resized, boxes, flip

    def __call__(self, img, label, rng: np.random.Generator | None = None):
        resized, boxes, flip = self.augment(img, label, rng)
        if flip:
            boxes = flip_boxes(boxes, self._width)
        image = to_tensor(resized, self._mean, self._std, flip=flip)
        boxes = boxes.astype(np.float32)
        if self._anchors is None:
            return image, boxes
        from ...train.target import batch_targets  # imports MXNet; only the anchors option needs it

        padded = np.full((1, max(len(boxes), 1), max(boxes.shape[1], 5)), -1, dtype=np.float32)
        padded[0, :len(boxes), :boxes.shape[1]] = boxes
        cls_targets, box_targets = batch_targets(self._anchors, padded, self._iou_thresh, self._box_norm)
        return image, cls_targets[0].asnumpy(), box_targets[0].asnumpy()

