"""GluonCV's ``gluoncv.utils`` names for the parts an SSD user calls: ``viz``, ``random``, ``metrics`` and
``export_block``, so that ``from gluon_ssd import utils`` stands in for ``from gluoncv import utils``.

``viz``, ``random`` and ``metrics`` work without MXNet (matplotlib, numpy, pycocotools); ``export_block`` needs
it and raises :class:`gluon_ssd._mxnet.MXNetMissing` where it is not installed (GluonCV sets it to None there).
The submodules load on first use, so importing ``gluon_ssd.utils`` costs nothing.
"""
from __future__ import annotations

import importlib

__all__ = ["viz", "random", "metrics", "export_block"]


def __getattr__(name):
    if name in ("viz", "random", "metrics"):
        return importlib.import_module(f"{__name__}.{name}")
    if name == "export_block":
        from .._mxnet import require  # lazy: importing gluon_ssd.utils loads nothing (not even MXNet's probe)

        require("gluon_ssd.utils.export_block (an MXNet graph export)")
        from .export_helper import export_block  # needs MXNet

        return export_block
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
