"""Leaf layers of the PyTorch twin that know the MXNet parameter names they hold.

Every layer with parameters carries ``gluon_key``: the prefix of its parameters in a gluon_ssd/GluonCV
file (``features.resnetv10_stage1_conv0_`` for backbones built as a SymbolBlock,
``features.stages.0.0.`` for structural Gluon blocks). ``GLUON_NAMES`` maps each torch parameter or
buffer name of the layer to the MXNet suffix. The conversion table is read off these attributes
(:func:`convert.mapping.key_map`), so weights are matched by name, never by position.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with its MXNet name."""

    def __init__(self, *args, gluon_key: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.gluon_key = gluon_key

    def gluon_names(self) -> dict[str, str]:
        names = {"weight": "weight"}
        if self.bias is not None:
            names["bias"] = "bias"
        return names


class BatchNorm2d(nn.BatchNorm2d):
    """A Gluon ``nn.BatchNorm`` (eps 1e-5, momentum 0.9 in MXNet terms = 0.1 in torch terms).

    ``stats`` is 'running' for Gluon blocks and 'moving' for ``mx.sym.BatchNorm`` layers.
    """

    def __init__(self, channels: int, eps: float = 1e-5, gluon_key: str = "", stats: str = "running"):
        super().__init__(channels, eps=eps, momentum=0.1)
        self.gluon_key = gluon_key
        self.stats = stats

    def gluon_names(self) -> dict[str, str]:
        return {"weight": "gamma", "bias": "beta", "running_mean": f"{self.stats}_mean",
                "running_var": f"{self.stats}_var"}


class FixedGammaBatchNorm2d(nn.Module):
    """BatchNorm with gamma fixed to 1 (MXNet ``fix_gamma=True``): there is no scale to learn.

    MXNet stores a gamma for these layers and ignores it; here it does not exist. This is the
    ``mx.sym.BatchNorm`` default (eps 1e-3) of the SSD extra layers and the input BatchNorm of ResNet v2
    (``scale=False``, eps 1e-5). The shift (beta) is used, as MXNet does.
    """

    def __init__(self, channels: int, eps: float, gluon_key: str = "", stats: str = "moving",
                 momentum: float = 0.1):
        super().__init__()
        self.num_features = channels
        self.eps = eps
        self.momentum = momentum
        self.gluon_key = gluon_key
        self.stats = stats
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def gluon_names(self) -> dict[str, str]:
        return {"bias": "beta", "running_mean": f"{self.stats}_mean", "running_var": f"{self.stats}_var"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, self.training,
                            self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, gamma fixed to 1"


class L2Norm(nn.Module):
    """Per-position L2 normalization over channels times a learned per-channel scale.

    MXNet ``L2Normalization(mode='channel')``: x / sqrt(sum_c x^2 + eps).
    """

    def __init__(self, channels: int, eps: float = 1e-5, gluon_key: str = ""):
        super().__init__()
        self.eps = eps
        self.gluon_key = gluon_key
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), 20.0))

    def gluon_names(self) -> dict[str, str]:
        return {"scale": "scale"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt((x * x).sum(dim=1, keepdim=True) + self.eps)
        return x / norm * self.scale


class Unit(nn.Sequential):
    """A sequence of layers used as one step of a tapped backbone: returns (output, output)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        for layer in self:
            x = layer(x)
        return x, x


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, pad: int, groups: int, conv_key: str,
                 bn_key: str) -> Unit:
    """conv (no bias) -> Gluon BatchNorm -> ReLU, as MobileNet's ``_add_conv``."""
    return Unit(Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False, gluon_key=conv_key),
                BatchNorm2d(cout, gluon_key=bn_key), nn.ReLU(inplace=True))
