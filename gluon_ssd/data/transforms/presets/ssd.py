"""GluonCV's ``gluoncv.data.transforms.presets.ssd`` at its dotted path, with its return types.

One implementation behind two spellings: these are thin layers over :mod:`gluon_ssd.data.transforms.pipeline` (the
numpy versions our training and evaluation use, faster) that hand back what GluonCV's functions hand back:
``mx.nd.NDArray`` image tensors and targets, numpy labels and display images. The pixels are the same
(validation and demo preprocessing bit-exact with GluonCV). Where MXNet is not installed they return numpy
arrays in place of the NDArrays (same values, same shapes).

Differences from GluonCV:

* ``short`` defaults to 512 (GluonCV's demo value; GluonCV makes it a required argument).
* Images may be numpy arrays as well as NDArrays; ``load_test`` also takes ``os.PathLike`` names.
* ``SSDDefaultTrainTransform`` draws from its own random streams (``seed``, or ``rng`` per call; see
  :mod:`gluon_ssd.data.transforms.pipeline`), never from the global ``np.random`` state GluonCV draws from, so the
  same global seed does not give GluonCV's crops. Its targets (with ``anchors``) are GluonCV's
  ``SSDTargetGenerator`` targets for the augmented label. Images without objects work (GluonCV fails).
"""
from __future__ import annotations

import numpy as np

from ...._mxnet import is_ndarray, mx
from ....specs import BOX_STDS
from ..pipeline import MEAN, STD, _mx
from ..pipeline import SSDDefaultTrainTransform as _TrainTransform
from ..pipeline import SSDDefaultValTransform as _ValTransform
from ..pipeline import load_test as _load_test
from ..pipeline import transform_test as _transform_test

__all__ = ["transform_test", "load_test", "SSDDefaultTrainTransform", "SSDDefaultValTransform"]

# GluonCV's transform hands its extra keyword arguments to SSDTargetGenerator, where (with hard negative mining
# off, as the transform sets it) none of them changes a target.
_TARGET_GENERATOR_OPTIONS = ("neg_thresh", "prefix", "params")


def _nd(array):
    """``array`` as an NDArray (without copying a numpy array); as it is without MXNet or when it is one."""
    if mx is None or is_ndarray(array):
        return array
    return _mx(np.asarray(array))


def _gluoncv_pairs(tensors, originals):
    """GluonCV's return rule: one (tensor, image) pair when there is one image, however it was given."""
    tensors = [_nd(t) for t in tensors]
    if len(tensors) == 1:
        return tensors[0], originals[0]
    return tensors, list(originals)


def transform_test(imgs, short: int = 512, max_size: int = 1024, mean=MEAN, std=STD):
    """GluonCV's demo preprocessing: resize the short side to ``short`` (long side at most ``max_size``,
    bicubic), normalize.

    Parameters
    ----------
    imgs : (H, W, 3) uint8 RGB image (NDArray or numpy), or a list of them.
    short, max_size : int.
    mean, std : 3 floats each, RGB in [0, 1] units.

    Returns
    -------
    (tensor, image) or (list of tensors, list of images)
        tensor: ``mx.nd.NDArray`` (1, 3, H', W') float32 (numpy without MXNet); image: the resized
        (H', W', 3) uint8 numpy array, for display. One pair for one image, also for a list of one
        image (as GluonCV); two lists otherwise.
    """
    if isinstance(imgs, np.ndarray) or is_ndarray(imgs):
        tensor, original = _transform_test(imgs, short, max_size, mean, std)
        return _nd(tensor), original
    return _gluoncv_pairs(*_transform_test(list(imgs), short, max_size, mean, std))


def load_test(filenames, short: int = 512, max_size: int = 1024, mean=MEAN, std=STD):
    """Read image file(s) (``mx.image.imread``, RGB) and apply :func:`transform_test`.

    Parameters
    ----------
    filenames : str or os.PathLike, or a list of them.
    short, max_size, mean, std : as :func:`transform_test`.

    Returns
    -------
    As :func:`transform_test`: one (tensor, image) pair for one file (also a list of one name), two lists for
    several.

    Raises
    ------
    FileNotFoundError
        A file does not exist; the message names it.
    """
    out = _load_test(filenames, short, max_size, mean, std)
    if isinstance(out[0], list):
        return _gluoncv_pairs(*out)
    return _nd(out[0]), out[1]


class SSDDefaultValTransform(_ValTransform):
    """GluonCV's SSD validation transform: resize to ``width`` x ``height`` (MXNet's ``interp=9``), normalize.

    Parameters
    ----------
    width, height : int, network input size.
    mean, std : 3 floats each.

    Notes
    -----
    Called as ``(src, label)``: src (H, W, 3) uint8 RGB (NDArray or numpy), label (N, 4+) numpy. Returns image
    ``mx.nd.NDArray`` (3, height, width) float32 (numpy without MXNet), bit-exact with GluonCV's, and the
    label as float32 numpy with its boxes scaled to the new size (as GluonCV).
    """

    def __call__(self, src, label):
        img, label = super().__call__(src, label)
        return _nd(img), label


class SSDDefaultTrainTransform(_TrainTransform):
    """GluonCV's SSD training augmentation, returning NDArrays as GluonCV's does.

    Parameters
    ----------
    width, height : int, network input size.
    anchors : NDArray (1, N, 4), optional
        The network's anchors (third output of a training-mode forward); with them the transform returns
        training targets (GluonCV's ``SSDTargetGenerator``, hard negative mining off).
    mean, std : 3 floats each.
    iou_thresh : float, matching threshold of the targets.
    box_norm : 4 floats, box target stds.
    seed : int, SeedSequence, Generator or None, keyword-only
        The random stream (see :mod:`gluon_ssd.data.transforms.pipeline`); GluonCV draws from ``np.random``'s global
        state instead.
    max_expand : float, keyword-only
        Largest zoom-out ratio (GluonCV: 4).
    **kwargs
        GluonCV's options of its target generator (``neg_thresh``, ``prefix``, ``params``): accepted, no effect
        on the targets (as in GluonCV, where hard negative mining is off).

    Notes
    -----
    Called as ``(src, label, rng=None)``: src (H, W, 3) uint8 RGB (NDArray or numpy), label (N, 5+) numpy.
    Returns ``(image, label)``: image ``mx.nd.NDArray`` (3, height, width) float32, label (M, 5+) float32 numpy
    (boxes in output pixels); with anchors ``(image, cls_targets, box_targets)``: NDArrays (3, height, width),
    (N,) and (N, 4) float32. Numpy arrays in place of the NDArrays where MXNet is not installed. The same
    numbers as :class:`gluon_ssd.data.transforms.SSDDefaultTrainTransform` (numpy outputs) with the same seed.
    """

    def __init__(self, width: int, height: int, anchors=None, mean=MEAN, std=STD, iou_thresh: float = 0.5,
                 box_norm=BOX_STDS, *, seed=None, max_expand: float = 4.0, **kwargs):
        unknown = sorted(set(kwargs) - set(_TARGET_GENERATOR_OPTIONS))
        if unknown:
            raise TypeError(f"SSDDefaultTrainTransform got unexpected keyword argument(s) {unknown}; it takes "
                            f"width, height, anchors, mean, std, iou_thresh, box_norm, seed, max_expand (and "
                            f"GluonCV's {list(_TARGET_GENERATOR_OPTIONS)}, which change no target)")
        super().__init__(width, height, anchors=anchors, mean=mean, std=std, iou_thresh=iou_thresh,
                         box_norm=box_norm, seed=seed, max_expand=max_expand)

    def __call__(self, src, label, rng: np.random.Generator | None = None):
        out = super().__call__(src, label, rng)
        if len(out) == 2:
            return _nd(out[0]), out[1]
        return tuple(_nd(x) for x in out)
