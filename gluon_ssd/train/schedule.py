"""Learning-rate schedules as pure functions of the (fractional) epoch, so a resumed run continues exactly."""
from __future__ import annotations

import math


def learning_rate(epoch: float, base_lr: float, mode: str = "step", decay: float = 0.1,
                  decay_epochs=(160, 200), warmup_epochs: float = 0.0, total_epochs: float = 240.0) -> float:
    """The learning rate at ``epoch`` (epoch index + fraction of the epoch done).

    mode 'step': ``base_lr * decay**k`` after the k-th of ``decay_epochs`` (GluonCV's recipe);
    mode 'cosine': half a cosine from ``base_lr`` to 0 between the warm-up's end and ``total_epochs``.
    A linear warm-up from 0 over ``warmup_epochs`` comes first in both modes.
    """
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    if mode == "step":
        return base_lr * decay ** sum(epoch >= e for e in decay_epochs)
    if mode == "cosine":
        span = max(total_epochs - warmup_epochs, 1e-12)
        progress = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr mode {mode!r}: use 'step' or 'cosine'")
