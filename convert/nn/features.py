"""PyTorch twins of gluon_ssd's feature extractors on ``mxnet.gluon.model_zoo.vision`` classifiers (ResNet v1/v2,
MobileNet) with the SSD extra layers (:mod:`gluon_ssd.nn.features`); VGG16-atrous is in :mod:`convert.nn.vgg`,
ResNet34-v1b in :mod:`convert.nn.resnetv1b`.

Each returns the list of SSD feature maps and exposes ``out_channels``. Layers carry their MXNet names
(see :mod:`convert.nn.layers`), assigned by the same rules MXNet uses, so files convert by name: these
backbones are a SymbolBlock in gluon_ssd, their keys are ``features.`` + the full layer name, e.g.
``features.resnetv10_stage3_conv4_``. MXNet numbers layers per name scope in creation order (``conv0, conv1,
...`` within ``stage3_``).

The taps are the names of layer outputs in the MXNet graph:

* ResNet ``stage{s}_activation{a}``: the a-th ``F.Activation`` called by the residual blocks of stage
  s. A v1 block calls it once (its output); a v2 bottleneck three times (after bn1, bn2, bn3, i.e.
  inside the block), so ``stage3_activation22`` of ResNet101-v2 is block 7's ReLU after bn2.
* MobileNet ``relu{k}_fwd``: the k-th ReLU block, i.e. the output of the k-th conv-BN-ReLU unit.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from gluon_ssd.specs import transition_channels

from .layers import BatchNorm2d, Conv2d, FixedGammaBatchNorm2d, LayerNames, Unit, conv_bn_relu

# mxnet.gluon.model_zoo.vision ResNets: depth -> (block kind, blocks per stage, channels).
RESNET_LAYERS = {
    18: ("basic", (2, 2, 2, 2), (64, 64, 128, 256, 512)),
    34: ("basic", (3, 4, 6, 3), (64, 64, 128, 256, 512)),
    50: ("bottleneck", (3, 4, 6, 3), (64, 256, 512, 1024, 2048)),
    101: ("bottleneck", (3, 4, 23, 3), (64, 256, 512, 1024, 2048)),
    152: ("bottleneck", (3, 8, 36, 3), (64, 256, 512, 1024, 2048)),
}


def _projection(cin: int, channels: int, stride: int, names: LayerNames):
    """The 1x1 conv + BN shortcut of a residual block whose shape changes, else None (identity)."""
    if stride == 1 and cin == channels:
        return None
    return nn.Sequential(Conv2d(cin, channels, 1, stride, bias=False, gluon_key=names("conv")),
                         BatchNorm2d(channels, gluon_key=names("batchnorm")))


class BasicBlockV1(nn.Module):
    """ResNet v1 basic block (mxnet vision): two 3x3 convs without bias, BN; ReLU after the sum."""

    def __init__(self, cin: int, channels: int, stride: int, names: LayerNames):
        super().__init__()
        self.conv1 = Conv2d(cin, channels, 3, stride, 1, bias=False, gluon_key=names("conv"))
        self.bn1 = BatchNorm2d(channels, gluon_key=names("batchnorm"))
        self.conv2 = Conv2d(channels, channels, 3, 1, 1, bias=False, gluon_key=names("conv"))
        self.bn2 = BatchNorm2d(channels, gluon_key=names("batchnorm"))
        self.downsample = _projection(cin, channels, stride, names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(out + shortcut)
        return out, out


class BottleneckV1(nn.Module):
    """ResNet v1 bottleneck (mxnet vision): stride on the first 1x1 conv; the 1x1 convs have biases."""

    def __init__(self, cin: int, channels: int, stride: int, names: LayerNames):
        super().__init__()
        mid = channels // 4
        self.conv1 = Conv2d(cin, mid, 1, stride, bias=True, gluon_key=names("conv"))
        self.bn1 = BatchNorm2d(mid, gluon_key=names("batchnorm"))
        self.conv2 = Conv2d(mid, mid, 3, 1, 1, bias=False, gluon_key=names("conv"))
        self.bn2 = BatchNorm2d(mid, gluon_key=names("batchnorm"))
        self.conv3 = Conv2d(mid, channels, 1, bias=True, gluon_key=names("conv"))
        self.bn3 = BatchNorm2d(channels, gluon_key=names("batchnorm"))
        self.downsample = _projection(cin, channels, stride, names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(out + shortcut)
        return out, out


class BottleneckV2(nn.Module):
    """ResNet v2 (pre-activation) bottleneck of mxnet vision; stride on the 3x3 conv.

    Its three ReLUs are the taps ``activation 3k, 3k+1, 3k+2`` of block k. ``tap`` picks which one the
    block reports beside its output (3 = the output); ``stop`` ends the block after that ReLU (the last
    tapped block of an SSD, whose later layers MXNet's graph does not contain).
    """

    def __init__(self, cin: int, channels: int, stride: int, names: LayerNames, tap: int = 3, stop: int = 3):
        super().__init__()
        mid = channels // 4
        self.tap = tap
        # MXNet creation order (this fixes the names): bn1, conv1, bn2, conv2, bn3, conv3, downsample.
        self.bn1 = BatchNorm2d(cin, gluon_key=names("batchnorm"))
        conv1 = Conv2d(cin, mid, 1, bias=False, gluon_key=names("conv"))
        bn2 = BatchNorm2d(mid, gluon_key=names("batchnorm"))
        conv2 = Conv2d(mid, mid, 3, stride, 1, bias=False, gluon_key=names("conv"))
        bn3 = BatchNorm2d(mid, gluon_key=names("batchnorm"))
        conv3 = Conv2d(mid, channels, 1, bias=False, gluon_key=names("conv"))
        downsample = None
        if stride != 1 or cin != channels:
            downsample = Conv2d(cin, channels, 1, stride, bias=False, gluon_key=names("conv"))
        self.conv1 = conv1 if stop >= 1 else None
        self.bn2 = bn2 if stop >= 1 else None
        self.conv2 = conv2 if stop >= 2 else None
        self.bn3 = bn3 if stop >= 2 else None
        self.conv3 = conv3 if stop >= 3 else None
        self.downsample = downsample if stop >= 3 else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act0 = F.relu(self.bn1(x))
        if self.conv1 is None or self.bn2 is None:
            return act0, act0
        act1 = F.relu(self.bn2(self.conv1(act0)))
        if self.conv2 is None or self.bn3 is None:
            return act1, act1
        act2 = F.relu(self.bn3(self.conv2(act1)))
        if self.conv3 is None:
            return act2, act2
        shortcut = x if self.downsample is None else self.downsample(act0)
        out = self.conv3(act2) + shortcut
        if self.tap == 0:
            return out, act0
        if self.tap == 1:
            return out, act1
        if self.tap == 2:
            return out, act2
        return out, out


class TappedBackbone(nn.Module):
    """Units run in order; the outputs reported by units listed in ``taps`` are the first feature maps,
    the extra layers continue from the last one.

    Every unit returns (output, tapped output); they differ only for taps inside a block.
    """

    def __init__(self, units: list[nn.Module], taps: list[int], tap_channels: list[int],
                 extras: list[nn.Module], extra_channels: list[int]):
        super().__init__()
        self.units = nn.ModuleList(units)
        self.taps = taps
        self.extras = nn.ModuleList(extras)
        self.out_channels = list(tap_channels) + list(extra_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for i, unit in enumerate(self.units):
            x, tapped = unit(x)
            if i in self.taps:
                outputs.append(tapped)
        y = outputs[-1]
        for extra in self.extras:
            y = extra(y)
            outputs.append(y)
        return outputs


def expand_layers(cin: int, filters, reduce_ratio: float = 1.0, min_depth: int = 128):
    """The SSD extra layers of vision backbones (MXNet symbol names ``expand_*``): per filter a 1x1
    transition and a 3x3 stride-2 conv, no bias, each followed by a fix_gamma BatchNorm (eps 1e-3,
    the ``mx.sym.BatchNorm`` defaults) and ReLU. Returns (layers, output channels)."""
    layers, channels = [], []
    for i, out in enumerate(filters):
        trans = transition_channels(out, reduce_ratio, min_depth)
        layers.append(nn.Sequential(
            Conv2d(cin, trans, 1, bias=False, gluon_key=f"features.expand_trans_conv{i}_"),
            FixedGammaBatchNorm2d(trans, eps=1e-3, gluon_key=f"features.expand_trans_bn{i}_"),
            nn.ReLU(inplace=True),
            Conv2d(trans, out, 3, 2, 1, bias=False, gluon_key=f"features.expand_conv{i}_"),
            FixedGammaBatchNorm2d(out, eps=1e-3, gluon_key=f"features.expand_bn{i}_"),
            nn.ReLU(inplace=True)))
        channels.append(out)
        cin = out
    return layers, channels


def _parse_resnet_tap(tap: str, acts_per_block: int, layers) -> tuple[int, int, int]:
    match = re.fullmatch(r"stage(\d+)_activation(\d+)", tap)
    if not match:
        raise ValueError(f"ResNet tap {tap!r} is not of the form 'stage<S>_activation<A>'")
    stage, act = int(match.group(1)), int(match.group(2))
    block, within = divmod(act, acts_per_block)
    if not 1 <= stage <= len(layers) or block >= layers[stage - 1]:
        raise ValueError(f"ResNet tap {tap!r} does not exist: stage {stage} has {layers[stage - 1]} blocks "
                         f"of {acts_per_block} activation(s)" if 1 <= stage <= len(layers)
                         else f"ResNet tap {tap!r} names stage {stage}; there are {len(layers)}")
    return stage, block, within


def resnet_features(depth: int, version: int, taps, filters, reduce_ratio=1.0, min_depth=128):
    """ResNet v1/v2 of mxnet.gluon.model_zoo.vision, cut at its taps, with the SSD extra layers."""
    kind, layers, channels = RESNET_LAYERS[depth]
    if version == 2 and kind != "bottleneck":
        raise NotImplementedError(f"resnet{depth}_v2 (basic pre-activation blocks) has no SSD in the zoo "
                                  "and is not supported by the converter")
    acts_per_block = 1 if version == 1 else 3
    parsed = [_parse_resnet_tap(t, acts_per_block, layers) for t in taps]
    if parsed != sorted(parsed) or len(set(parsed)) != len(parsed):
        raise ValueError(f"ResNet taps {list(taps)} must be distinct and in network order")
    last_stage, last_block, last_act = parsed[-1]
    prefix = f"features.resnetv{version}0_"
    top = LayerNames(prefix)
    if version == 1:
        stem = Unit(Conv2d(3, channels[0], 7, 2, 3, bias=False, gluon_key=top("conv")),
                    BatchNorm2d(channels[0], gluon_key=top("batchnorm")), nn.ReLU(inplace=True),
                    nn.MaxPool2d(3, 2, 1))
    else:
        stem = Unit(FixedGammaBatchNorm2d(3, eps=1e-5, gluon_key=top("batchnorm"), stats="running"),
                    Conv2d(3, channels[0], 7, 2, 3, bias=False, gluon_key=top("conv")),
                    BatchNorm2d(channels[0], gluon_key=top("batchnorm")), nn.ReLU(inplace=True),
                    nn.MaxPool2d(3, 2, 1))
    units: list[nn.Module] = [stem]
    tap_units: list[int] = []
    tap_channels: list[int] = []
    cin = channels[0]
    for s, count in enumerate(layers, start=1):
        if s > last_stage:
            break
        names = LayerNames(f"{prefix}stage{s}_")
        for b in range(count):
            if (s, b) > (last_stage, last_block):
                break
            stride = 1 if s == 1 or b > 0 else 2
            out = channels[s]
            tapped = [act for (ts, tb, act) in parsed if (ts, tb) == (s, b)]
            if version == 1:
                block_cls = BasicBlockV1 if kind == "basic" else BottleneckV1
                unit = block_cls(cin, out, stride, names)
                tap_ch = out
            else:
                if len(tapped) > 1:
                    raise ValueError(f"taps {list(taps)} name two activations of one block")
                tap = tapped[0] if tapped else 3
                stop = last_act if (s, b) == (last_stage, last_block) else 3
                unit = BottleneckV2(cin, out, stride, names, tap=tap, stop=stop)
                tap_ch = cin if tap == 0 else (out // 4 if tap in (1, 2) else out)
            if tapped:
                tap_units.append(len(units))
                tap_channels.append(tap_ch)
            units.append(unit)
            cin = out
    extras, extra_channels = expand_layers(tap_channels[-1], filters, reduce_ratio, min_depth)
    return TappedBackbone(units, tap_units, tap_channels, extras, extra_channels)


def mobilenet_features(multiplier: float, taps, filters, reduce_ratio=1.0, min_depth=128):
    """MobileNet v1 of mxnet.gluon.model_zoo.vision, cut at its taps, with the SSD extra layers."""
    names = LayerNames("features.mobilenet0_")
    dw_channels = [int(c * multiplier) for c in [32, 64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024]]
    channels = [int(c * multiplier) for c in [64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024] * 2]
    strides = [1, 2] * 3 + [1] * 5 + [2, 1]
    first = int(32 * multiplier)
    units = [conv_bn_relu(3, first, 3, 2, 1, 1, names("conv"), names("batchnorm"))]
    unit_channels = [first]
    cin = first
    for dwc, out, stride in zip(dw_channels, channels, strides):
        units.append(conv_bn_relu(cin, dwc, 3, stride, 1, dwc, names("conv"), names("batchnorm")))
        units.append(conv_bn_relu(dwc, out, 1, 1, 0, 1, names("conv"), names("batchnorm")))
        unit_channels += [dwc, out]
        cin = out
    tap_units = []
    for tap in taps:
        match = re.fullmatch(r"relu(\d+)_fwd", tap)
        if not match or int(match.group(1)) >= len(units):
            raise ValueError(f"MobileNet tap {tap!r} is not one of relu0_fwd..relu{len(units) - 1}_fwd")
        tap_units.append(int(match.group(1)))
    if tap_units != sorted(set(tap_units)):
        raise ValueError(f"MobileNet taps {list(taps)} must be distinct and in network order")
    units = units[: tap_units[-1] + 1]
    tap_channels = [unit_channels[i] for i in tap_units]
    extras, extra_channels = expand_layers(tap_channels[-1], filters, reduce_ratio, min_depth)
    return TappedBackbone(units, tap_units, tap_channels, extras, extra_channels)
