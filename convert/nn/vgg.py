"""The PyTorch twin of gluon_ssd's VGG16-atrous feature extractor (:mod:`gluon_ssd.nn.vgg`).

A plain Gluon block in gluon_ssd: its parameter keys are the block paths (``features.stages.0.0.``), and the
torch modules sit at the same paths (:func:`convert.nn.layers.assign_structural_keys`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gluon_ssd.specs import IMAGENET_STD, VGG16_STAGES, VGG_EXTRAS

from .layers import Conv2d, L2Norm, assign_structural_keys


def _max_pool_ceil(x: torch.Tensor, kernel: int, stride: int, pad: int) -> torch.Tensor:
    # MXNet pooling_convention='full' is ceil mode (Caffe SSD): 75 -> 38 on the 300 model.
    return F.max_pool2d(x, kernel, stride, pad, ceil_mode=True)


class VGGAtrous(nn.Module):
    """VGG16 with dilated fc6/fc7, L2-normalized conv4_3, and the SSD extra layers.

    Forward: x (B, 3, H, W) ImageNet-normalized RGB -> [conv4_3 normalized, fc7, extra_1, ...].
    """

    def __init__(self, size: int):
        super().__init__()
        if size not in VGG_EXTRAS:
            raise ValueError(f"VGG16-atrous SSD exists for input sizes {sorted(VGG_EXTRAS)}, not {size}")
        # Multiplying ImageNet-normalized input by std*255 gives back the Caffe mean-subtracted range.
        self.register_buffer("init_scale", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1) * 255)
        stages = []
        cin = 3
        for depth, channels in VGG16_STAGES:
            layers: list[nn.Module] = []
            for _ in range(depth):
                layers += [Conv2d(cin, channels, 3, padding=1), nn.ReLU(inplace=True)]
                cin = channels
            stages.append(nn.Sequential(*layers))
        stages.append(nn.Sequential(Conv2d(cin, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
                                    Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)))
        self.stages = nn.ModuleList(stages)
        self.norm4 = L2Norm(VGG16_STAGES[3][1])
        extras = []
        cin = 1024
        self.out_channels = [VGG16_STAGES[3][1], 1024]
        for config in VGG_EXTRAS[size]:
            layers = []
            for channels, kernel, stride, pad in config:
                layers += [Conv2d(cin, channels, kernel, stride, pad), nn.ReLU(inplace=True)]
                cin = channels
            extras.append(nn.Sequential(*layers))
            self.out_channels.append(cin)
        self.extras = nn.ModuleList(extras)
        assign_structural_keys(self, "features")

    def gluon_names(self) -> dict[str, str]:
        return {"init_scale": "init_scale"}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x * self.init_scale
        outputs: list[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < 3:
                x = _max_pool_ceil(x, 2, 2, 0)
            elif i == 3:
                outputs.append(self.norm4(x))
                x = _max_pool_ceil(x, 2, 2, 0)
            elif i == 4:
                x = _max_pool_ceil(x, 3, 1, 1)
            else:
                outputs.append(x)
        for extra in self.extras:
            x = extra(x)
            outputs.append(x)
        return outputs
