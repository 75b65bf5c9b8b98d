"""Schedules as pure functions of the epoch, so a resumed run continues exactly: the learning rate, and the
epochs that validate and save (GluonCV's train_ssd.py conditions)."""
from __future__ import annotations

import math


def learning_rate(epoch: float, base_lr: float, mode: str = "step", decay: float = 0.1,
                  decay_epochs=(160, 200), warmup_epochs: float = 0.0, total_epochs: float = 240.0) -> float:
    """The learning rate at ``epoch`` (epoch index + fraction of the epoch done).

    mode 'step': ``base_lr * decay**k`` after the k-th of ``decay_epochs`` (GluonCV's recipe). As in GluonCV's
    train_ssd.py, which decays at the start of each epoch whose index reaches a decay epoch, a fractional decay
    epoch (160.5) takes effect at the start of the next whole epoch (161);
    mode 'cosine': half a cosine from ``base_lr`` to 0 between the warm-up's end and ``total_epochs``.
    A linear warm-up from 0 over ``warmup_epochs`` comes first in both modes.
    """
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    if mode == "step":
        return base_lr * decay ** sum(math.floor(epoch) >= e for e in decay_epochs)
    if mode == "cosine":
        span = max(total_epochs - warmup_epochs, 1e-12)
        progress = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr mode {mode!r}: use 'step' or 'cosine'")


def parse_decay_epochs(text: str) -> tuple[float, ...]:
    """``--lr-decay-epoch``: comma-separated epochs, floats as GluonCV parses them ('160,200', '160.5'), sorted.

    Raises
    ------
    ValueError
        A part that is not a number, named with the whole value.
    """
    epochs = []
    for part in str(text).split(","):
        if part.strip():
            try:
                epochs.append(float(part))
            except ValueError:
                raise ValueError(f"--lr-decay-epoch {text!r}: {part.strip()!r} is not a number; give epochs "
                                 "separated by commas, e.g. 160,200") from None
    return tuple(sorted(epochs))


def saves_params(epoch: int, save_interval: int) -> bool:
    """Whether epoch ``epoch`` (0-based) writes ``{prefix}_{epoch:04d}_{map:.4f}.params``: GluonCV's
    ``save_interval and epoch % save_interval == 0`` (epochs 0, N, 2N, ...)."""
    return bool(save_interval) and epoch % save_interval == 0


def validates(epoch: int, val_interval: int, save_interval: int) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a validation: GluonCV's ``epoch % val_interval == 0`` or a
    saving epoch (:func:`saves_params`, whose file name carries the mAP). ``val_interval`` 0 (GluonCV: a
    division by zero) turns validation off, and with it GluonCV's parameter files."""
    return bool(val_interval) and (epoch % val_interval == 0 or saves_params(epoch, save_interval))
