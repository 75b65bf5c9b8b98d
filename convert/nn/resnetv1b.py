"""The PyTorch twin of GluonCV's ResNet34-v1b SSD feature extractor (:mod:`gluon_ssd.nn.resnetv1b`).

A plain Gluon block in gluon_ssd: its parameter keys are the block paths (``features.stage1.4.0.conv1.``), and
the torch modules sit at the same paths (:func:`convert.nn.layers.assign_structural_keys`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gluon_ssd.specs import (
    RESNET34_V1B_CHANNELS,
    RESNET34_V1B_LAYERS,
    RESNET34_V1B_SSD_STRIDES,
    transition_channels,
)

from .layers import BatchNorm2d, Conv2d, assign_structural_keys


class BasicBlockV1b(nn.Module):
    """ResNet v1b basic block (GluonCV): stride on the first 3x3 conv; projection shortcut."""

    def __init__(self, cin: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = Conv2d(cin, channels, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or cin != channels:
            self.downsample = nn.Sequential(Conv2d(cin, channels, 1, stride, bias=False), BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet34V1bSSD(nn.Module):
    """GluonCV's ``ResNetV1bSSD`` for resnet34_v1b: stage1 = conv1..layer2 (stride 8); stage2 = layer3
    (stride removed) and layer4; extra stages of 1x1 + 3x3/2 convs with bias and no BN.

    Forward: x -> [stage1 out, stage2 out, extra_1, ...].
    """

    def __init__(self, filters):
        super().__init__()
        depths, widths, strides = RESNET34_V1B_LAYERS, RESNET34_V1B_CHANNELS, RESNET34_V1B_SSD_STRIDES
        layers = []
        cin = 64
        for depth, width, stride in zip(depths, widths, strides):
            blocks = [BasicBlockV1b(cin if b == 0 else width, width, stride if b == 0 else 1)
                      for b in range(depth)]
            layers.append(nn.Sequential(*blocks))
            cin = width
        self.stage1 = nn.Sequential(Conv2d(3, 64, 7, 2, 3, bias=False), BatchNorm2d(64), nn.ReLU(inplace=True),
                                    nn.MaxPool2d(3, 2, 1), layers[0], layers[1])
        self.stage2 = nn.Sequential(layers[2], layers[3])
        more = []
        cin = widths[-1]
        for i, out in enumerate(filters):
            pad = 0 if i == len(filters) - 1 else 1
            mid = transition_channels(out)
            more.append(nn.Sequential(Conv2d(cin, mid, 1), nn.ReLU(inplace=True),
                                      Conv2d(mid, out, 3, 2, pad), nn.ReLU(inplace=True)))
            cin = out
        self.more_stages = nn.ModuleList(more)
        self.out_channels = [widths[1], widths[3]] + list(filters)
        assign_structural_keys(self, "features")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y1 = self.stage1(x)
        y = self.stage2(y1)
        outputs = [y1, y]
        for stage in self.more_stages:
            y = stage(y)
            outputs.append(y)
        return outputs
