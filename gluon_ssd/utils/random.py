"""GluonCV's ``gluoncv.utils.random``: one seed for Python's ``random``, numpy's global generator and MXNet's."""
from __future__ import annotations

import random as _pyrandom

import numpy as np

from .._mxnet import mx

__all__ = ["seed"]


def seed(a: int | None = None) -> None:
    """Seed Python's ``random``, ``numpy.random`` and ``mxnet.random`` (where MXNet is installed) at once.

    Parameters
    ----------
    a : int or None
        An int seeds all three with it, as ``gluoncv.utils.random.seed(a)`` does: the draws that follow are
        GluonCV's. None seeds Python and numpy from the operating system's entropy, and MXNet with a number drawn
        from numpy's generator just after (numpy's own stream is left as ``np.random.seed(None)`` made it).

    Notes
    -----
    Difference from GluonCV: there ``seed()`` (None, its default) raises where MXNet is installed, since
    ``mx.random.seed`` takes only an int. Only the global generators are seeded: the library's own randomness
    takes seeds or ``np.random.Generator`` objects and does not depend on them. Torch is not seeded (GluonCV does
    not either; use ``torch.manual_seed``).
    """
    _pyrandom.seed(a)
    np.random.seed(a)
    if mx is None:
        return
    if a is None:
        state = np.random.get_state()
        mx.random.seed(int(np.random.randint(0, 2**31 - 1)))
        np.random.set_state(state)
    else:
        mx.random.seed(int(a))
