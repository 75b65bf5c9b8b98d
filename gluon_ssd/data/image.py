"""Low-level image operations of the SSD transforms (HWC numpy images, RGB).

``imresize`` goes through ``mx.image.imresize`` (the OpenCV that MXNet bundles): the opencv-python
wheel's bicubic differs from it by one grey level on uint8 images, and GluonCV's validation numbers
depend on the exact resize. Where MXNet is not installed it is opencv-python's ``cv2.resize`` (the
validation of ``--backend torch`` there). The random training path uses opencv-python directly.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from .._mxnet import is_ndarray, mx

__all__ = [
    "INTERP_AREA",
    "INTERP_CUBIC",
    "INTERP_LINEAR",
    "as_image",
    "auto_interp",
    "color_distort_matrix",
    "expanded_crop",
    "imresize",
    "resize_short_within_size",
    "to_tensor",
]

logger = logging.getLogger(__name__)

# OpenCV / MXNet interpolation codes (0 nearest, 1 bilinear, 2 bicubic, 3 area, 4 Lanczos).
INTERP_LINEAR = 1
INTERP_CUBIC = 2
INTERP_AREA = 3

# NTSC YIQ conversion, RGB -> YIQ (rows Y, I, Q) and back.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.596, -0.274, -0.321],
                        [0.211, -0.523, 0.311]])
_YIQ_TO_RGB = np.array([[1.0, 0.956, 0.621],
                        [1.0, -0.272, -0.647],
                        [1.0, -1.107, 1.705]])
_LUMA = _RGB_TO_YIQ[0]


def as_image(img, name: str = "image") -> np.ndarray:
    """An HWC 3-channel image as a numpy array (no copy for numpy input).

    Parameters
    ----------
    img : numpy array or mx.nd.NDArray, (H, W, 3), uint8 or float.
    name : what to call it in error messages.

    Returns
    -------
    np.ndarray, (H, W, 3).
    """
    if is_ndarray(img):
        img = img.asnumpy()
    elif not isinstance(img, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or mx.nd.NDArray (H, W, 3), got {type(img).__name__}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name} must be an RGB image of shape (H, W, 3), got shape {img.shape}")
    return img


def auto_interp(old_hw: tuple[int, int], new_hw: tuple[int, int]) -> int:
    """MXNet's ``interp=9`` rule: bicubic when both sides grow, area when both shrink, else bilinear."""
    (old_h, old_w), (new_h, new_w) = old_hw, new_hw
    if new_h > old_h and new_w > old_w:
        return INTERP_CUBIC
    if new_h < old_h and new_w < old_w:
        return INTERP_AREA
    return INTERP_LINEAR


def imresize(img, width: int, height: int, interp: int) -> np.ndarray:
    """Resize exactly as ``mx.image.imresize`` does (MXNet's bundled OpenCV).

    Parameters
    ----------
    img : numpy array or NDArray, (H, W, 3) uint8 or float32.
    width, height : output size in pixels.
    interp : 0 nearest, 1 bilinear, 2 bicubic, 3 area, 4 Lanczos.

    Returns
    -------
    np.ndarray, (height, width, 3), same dtype as ``img``.
    """
    if interp not in (0, 1, 2, 3, 4):
        raise ValueError(f"interp must be 0..4 (nearest, bilinear, bicubic, area, lanczos), got {interp}")
    if mx is None:  # opencv-python (see the module docstring)
        return cv2.resize(as_image(img), (int(width), int(height)), interpolation=int(interp))
    if not isinstance(img, mx.nd.NDArray):
        img = mx.nd.array(as_image(img), dtype=img.dtype)
    return mx.image.imresize(img, int(width), int(height), interp=int(interp)).asnumpy()


def resize_short_within_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """Output (width, height) that brings the short side to ``short`` unless the long side would pass
    ``max_size``, in which case the long side becomes ``max_size``. Aspect ratio is kept; sides are
    rounded half to even (numpy), as GluonCV's ``resize_short_within``.
    """
    small, large = (height, width) if width > height else (width, height)
    scale = float(short) / float(small)
    if np.round(scale * large) > max_size:
        scale = float(np.floor(max_size)) / float(large)
    return int(np.round(width * scale)), int(np.round(height * scale))


def to_tensor(img: np.ndarray, mean, std, flip: bool = False) -> np.ndarray:
    """HWC image in [0, 255] -> normalized CHW float32: ``(img / 255 - mean) / std`` per channel.

    The arithmetic is float32 in MXNet's order (``to_tensor`` then ``normalize``), so the result is
    bit-identical to ``mx.nd.image.normalize(mx.nd.image.to_tensor(img), mean, std)``.

    Parameters
    ----------
    img : np.ndarray, (H, W, 3) uint8 or float32.
    mean, std : 3 floats each (RGB, in [0, 1] units).
    flip : mirror left-right on the way (output column j reads input column W-1-j).

    Returns
    -------
    np.ndarray, (3, H, W) float32.
    """
    height, width = img.shape[:2]
    src = img[:, ::-1] if flip else img
    out = np.empty((3, height, width), dtype=np.float32)
    for c in range(3):
        plane = out[c]
        np.divide(src[:, :, c], np.float32(255.0), out=plane, dtype=np.float32)
        plane -= np.float32(mean[c])
        plane /= np.float32(std[c])
    return out


def color_distort_matrix(rng: np.random.Generator, brightness_delta: float = 32.0,
                         contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                         hue_delta: float = 18.0) -> np.ndarray:
    """Draw GluonCV's SSD photometric distortion as one affine colour map.

    Brightness (+-``brightness_delta``, p=.5) comes first; then, in an order chosen by a coin, either
    contrast, saturation, hue or saturation, hue, contrast, each applied with p=.5. Contrast and
    saturation factors are uniform in their ranges. Hue rotates the IQ plane of YIQ by ``a * pi``
    radians with ``a`` uniform in [-hue_delta, hue_delta] (GluonCV's unit, which with 18 amounts to a
    uniformly random rotation). Every step is affine per pixel, so the whole distortion is
    ``rgb @ A + b``. There is no clipping (none in GluonCV either).

    Parameters
    ----------
    rng : np.random.Generator.

    Returns
    -------
    np.ndarray, (3, 4) float64 matrix ``[A.T | b]`` for ``cv2.transform`` (output = M[:, :3] @ px + M[:, 3]).
    """
    linear = np.eye(3)
    offset = 0.0
    if rng.uniform() > 0.5:
        offset = rng.uniform(-brightness_delta, brightness_delta)

    def contrast():
        if rng.uniform() > 0.5:
            return np.eye(3) * rng.uniform(*contrast_range)
        return np.eye(3)

    def saturation():
        if rng.uniform() > 0.5:
            alpha = rng.uniform(*saturation_range)
            # Blend with the grey (luma) value, which is the same in the three channels.
            return alpha * np.eye(3) + (1.0 - alpha) * np.outer(_LUMA, np.ones(3))
        return np.eye(3)

    def hue():
        if rng.uniform() > 0.5:
            angle = rng.uniform(-hue_delta, hue_delta) * np.pi
            cos, sin = np.cos(angle), np.sin(angle)
            rotation = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
            return (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).T
        return np.eye(3)

    steps = (contrast, saturation, hue) if rng.integers(0, 2) else (saturation, hue, contrast)
    for step in steps:
        linear = linear @ step()
    # (px + offset) @ L = px @ L + offset * (column sums of L).
    bias = offset * linear.sum(axis=0)
    return np.concatenate([linear.T, bias[:, None]], axis=1)


def expanded_crop(img: np.ndarray, color: np.ndarray | None, fill, placement: tuple[int, int],
                  crop: tuple[int, int, int, int]) -> np.ndarray:
    """A crop of the image placed on a larger canvas, with a colour map applied to the image pixels.

    Equivalent to colour-mapping the whole image, pasting it at ``placement`` on a canvas filled with
    ``fill``, and cropping; only the crop is ever built, and the colour map only touches image
    pixels inside it.

    Parameters
    ----------
    img : np.ndarray, (H, W, 3) uint8 or float.
    color : (3, 4) affine colour map (see :func:`color_distort_matrix`) or None.
    fill : 3 floats, canvas colour (not colour-mapped).
    placement : (x, y) of the image's top-left corner on the canvas.
    crop : (x, y, width, height) of the crop on the canvas.

    Returns
    -------
    np.ndarray, (height, width, 3) float32.
    """
    height, width = img.shape[:2]
    off_x, off_y = placement
    x0, y0, crop_w, crop_h = crop
    ix0, iy0 = max(x0, off_x), max(y0, off_y)
    ix1, iy1 = min(x0 + crop_w, off_x + width), min(y0 + crop_h, off_y + height)
    fill = [float(v) for v in fill]
    if ix1 <= ix0 or iy1 <= iy0:  # the crop shows no image pixel
        return cv2.resize(np.array([[fill]], dtype=np.float32), (crop_w, crop_h),
                          interpolation=cv2.INTER_NEAREST)
    part = img[iy0 - off_y:iy1 - off_y, ix0 - off_x:ix1 - off_x].astype(np.float32)
    if color is not None:
        part = cv2.transform(part, color)
    if part.shape[:2] == (crop_h, crop_w):
        return part
    return cv2.copyMakeBorder(part, iy0 - y0, y0 + crop_h - iy1, ix0 - x0, x0 + crop_w - ix1,
                              cv2.BORDER_CONSTANT, value=fill)
