"""Which class-prediction heads survive int8 outputs: the check behind ``quantize_heads='auto'``.

An int8 convolution rounds its output to one of 256 levels over the range seen in calibration. For the box
heads and the feature layers that is harmless; for a class head it rounds the logits that the softmax turns
into scores, and a head with a wide logit range (a confident trained model: the suite's ResNet-18 SSD has
class logits up to 284 on its largest map) loses the score differences NMS and the mAP rank by. Measured on
that model (float32 VOC07 mAP 0.849): every class head int8 0.780, only the two heads that fail this check
float32 0.845. Seeded random weights of the four headline zoo models have logit ranges near 10 and pass
(GluonCV's published weights could not be checked here: no download).

The check is numpy only, shared by MXNet's flow (:func:`gluon_ssd.quantize`: symmetric int8 over the largest
magnitude, as MXNet's naive calibration requantizes) and the twin's (:mod:`convert.runtime.quantization`:
asymmetric uint8 over [min, max], as ONNX Runtime's QDQ activations).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["HEAD_TOLERANCE", "SCHEMES", "check_quantize_heads", "choose_float_heads", "float_heads",
           "head_score_error"]

# Largest change of a foreground score (a softmax probability) that int8 rounding may make on a calibration
# image for the head to be quantized. Measured per head (tests/gluon_ssd/test_quantization.py): trained model 0.38 and
# 0.11 on its two largest maps, 0.0003-0.0008 on the others; random weights of the four zoo models 0.005-0.03.
HEAD_TOLERANCE = 0.05
SCHEMES = ("symmetric", "asymmetric")


def _softmax(logits: np.ndarray, num_classes: int) -> np.ndarray:
    """(B, A*(C+1), H, W) head output -> (B, A, C+1, H, W) class probabilities."""
    x = logits.reshape(logits.shape[0], -1, num_classes + 1, *logits.shape[2:]).astype(np.float64)
    x = np.exp(x - x.max(axis=2, keepdims=True))
    return x / x.sum(axis=2, keepdims=True)


def _rounded(logits: np.ndarray, scheme: str) -> np.ndarray:
    if scheme == "symmetric":  # int8 levels -127..127 over the largest magnitude
        step = float(np.abs(logits).max()) / 127.0
        return logits if step == 0 else np.round(logits / step) * step
    low, high = min(float(logits.min()), 0.0), max(float(logits.max()), 0.0)  # uint8 over [min, max], 0 exact
    step = (high - low) / 255.0
    if step == 0:
        return logits
    zero = np.round(-low / step)
    return (np.clip(np.round(logits / step) + zero, 0, 255) - zero) * step


def head_score_error(logits: np.ndarray, num_classes: int, scheme: str = "symmetric") -> float:
    """The largest change of a foreground class probability when one class head's output ``logits``
    (B, A*(C+1), H, W) over the calibration images is rounded to int8 by ``scheme`` (:data:`SCHEMES`)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 4 or logits.shape[1] % (num_classes + 1):
        raise ValueError(f"a class head's output is (B, anchors*(classes+1), H, W), got {logits.shape} for "
                         f"{num_classes} classes")
    change = np.abs(_softmax(_rounded(logits, scheme), num_classes) - _softmax(logits, num_classes))
    return float(change[:, :, 1:].max())


def float_heads(outputs: Sequence[np.ndarray], num_classes: int, scheme: str = "symmetric",
                tolerance: float = HEAD_TOLERANCE) -> tuple[list[int], list[float]]:
    """Indices of the class heads to keep float32 (score error above ``tolerance``), and every head's error.

    ``outputs[k]``: head k's outputs over the calibration images, (B, A*(C+1), H, W)."""
    errors = [head_score_error(out, num_classes, scheme) for out in outputs]
    return [k for k, err in enumerate(errors) if err > tolerance], errors


def check_quantize_heads(quantize_heads):
    """``quantize_heads`` if it is True, False or 'auto'; else a ValueError."""
    if isinstance(quantize_heads, str) and quantize_heads == "auto":
        return quantize_heads
    if not isinstance(quantize_heads, str) and quantize_heads in (True, False):
        return quantize_heads
    raise ValueError(f"quantize_heads {quantize_heads!r}: expected True, False or 'auto'")


def choose_float_heads(quantize_heads, num_heads: int, head_outputs: Callable[[], Sequence[np.ndarray]] | None,
                       num_classes: int, scheme: str, tolerance: float | None = None) -> tuple[list[int], list | None]:
    """The class heads to keep float32 for a ``quantize_heads`` choice, and (for 'auto') every head's error.

    quantize_heads : True (every head int8), False (none) or 'auto' (by :func:`float_heads` on
        ``head_outputs()``, the heads' outputs over the calibration images; None: no images, every head float).
    """
    if check_quantize_heads(quantize_heads) != "auto":
        return ([] if quantize_heads else list(range(num_heads))), None
    if head_outputs is None:
        return list(range(num_heads)), None
    tolerance = HEAD_TOLERANCE if tolerance is None else float(tolerance)
    kept, errors = float_heads(head_outputs(), num_classes, scheme, tolerance)
    log.info("int8 score error of each class head on the calibration images: %s (tolerance %g); kept float32: %s",
             ", ".join(f"{e:.4f}" for e in errors), tolerance, kept or "none")
    return kept, errors
