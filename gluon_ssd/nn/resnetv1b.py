"""ResNet-34 (v1b: stride on the 3x3 conv) SSD feature extractor, GluonCV's ``ResNetV1bSSD`` layout.

The 300 model taps conv1..layer2 (stride 8) and, with layer3's stride removed, layer3+layer4 (stride 8,
dilated receptive field), then four extra stages of 1x1 + 3x3/2 convolutions with bias and no BN.
"""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from ..specs import BACKBONE_KEY_MAP, transition_channels  # noqa: F401  (BACKBONE_KEY_MAP: gluon_ssd.params)
from ..specs import RESNET34_V1B_CHANNELS as _CHANNELS
from ..specs import RESNET34_V1B_LAYERS as _LAYERS_34
from ..specs import RESNET34_V1B_SSD_STRIDES as _SSD_STRIDES


class BasicBlockV1b(nn.HybridBlock):
    """Two 3x3 convs (no bias) with BN, identity or projection shortcut; names land in the caller's scope."""

    def __init__(self, channels, stride, downsample=None):
        super().__init__(prefix="")
        self.conv1 = nn.Conv2D(channels, 3, stride, 1, use_bias=False)
        self.bn1 = nn.BatchNorm(in_channels=channels)
        self.conv2 = nn.Conv2D(channels, 3, 1, 1, use_bias=False)
        self.bn2 = nn.BatchNorm(in_channels=channels)
        self.downsample = downsample

    def hybrid_forward(self, F, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + shortcut)


def _resnet34_layers():
    """conv1, bn1, [layer1..layer4] named as GluonCV's resnet34_v1b (prefix 'resnetv1b_')."""
    scope = nn.HybridSequential(prefix="resnetv1b_")
    layers = []
    with scope.name_scope():
        conv1 = nn.Conv2D(64, 7, 2, 3, use_bias=False)
        bn1 = nn.BatchNorm(in_channels=64)
        in_ch = 64
        for idx, (depth, ch) in enumerate(zip(_LAYERS_34, _CHANNELS), start=1):
            stride = _SSD_STRIDES[idx - 1]
            down = None
            if stride != 1 or in_ch != ch:
                down = nn.HybridSequential(prefix=f"down{idx}_")
                with down.name_scope():
                    down.add(nn.Conv2D(ch, 1, stride, use_bias=False), nn.BatchNorm(in_channels=ch))
            layer = nn.HybridSequential(prefix=f"layers{idx}_")
            with layer.name_scope():
                for b in range(depth):
                    layer.add(BasicBlockV1b(ch, stride if b == 0 else 1, down if b == 0 else None))
            layers.append(layer)
            in_ch = ch
    return conv1, bn1, layers


class ResNetV1bSSDFeatures(nn.HybridBlock):
    """(B, 3, H, W) -> [layer2 out, layer4 out, extra_1, ..., extra_k]."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        conv1, bn1, layers = _resnet34_layers()
        init = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)
        with self.name_scope():
            self.stage1 = nn.HybridSequential(prefix="stage1")
            self.stage1.add(conv1, bn1, nn.Activation("relu"), nn.MaxPool2D(3, 2, 1), layers[0], layers[1])
            self.stage2 = nn.HybridSequential(prefix="stage2")
            self.stage2.add(layers[2], layers[3])
            self.more_stages = nn.HybridSequential(prefix="more_stages")
            for i, ch in enumerate(filters):
                stage = nn.HybridSequential(prefix=f"more_stages_{i}")
                pad = 0 if i == len(filters) - 1 else 1
                stage.add(nn.Conv2D(transition_channels(ch), 1, weight_initializer=init), nn.Activation("relu"),
                          nn.Conv2D(ch, 3, 2, pad, weight_initializer=init), nn.Activation("relu"))
                self.more_stages.add(stage)

    def hybrid_forward(self, F, x):
        y1 = self.stage1(x)
        y = self.stage2(y1)
        outputs = [y1, y]
        for stage in self.more_stages:
            y = stage(y)
            outputs.append(y)
        return outputs


def resnet34_v1b_features(filters, base_holder=None):
    return ResNetV1bSSDFeatures(filters, prefix="resnetv1bssd0_")
