"""VGG16 with atrous fc6/fc7 (the SSD paper's base), plus the SSD extra layers."""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import nn

from ..specs import IMAGENET_STD, VGG16_STAGES, VGG_EXTRAS

# The network takes ImageNet-normalized input; multiplying by std*255 (init_scale) gives back Caffe's
# mean-subtracted 0..255 range that the VGG weights were trained on.

def _conv_init():
    return {"weight_initializer": mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2),
            "bias_initializer": "zeros"}


class L2Normalize(nn.HybridBlock):
    """Per-position L2 normalization over channels times a learned per-channel scale (init 20)."""

    def __init__(self, channels, initial=20.0, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self._eps = eps
        with self.name_scope():
            self.scale = self.params.get("normalize_scale", shape=(1, channels, 1, 1),
                                         init=mx.init.Constant(initial))

    def hybrid_forward(self, F, x, scale):
        return F.broadcast_mul(F.L2Normalization(x, mode="channel", eps=self._eps), scale)


class VGGAtrousExtractor(nn.HybridBlock):
    """VGG16-atrous base and SSD extras; forward returns the list of SSD feature maps.

    Forward: x (B, 3, H, W) normalized RGB -> [conv4_3 L2-normed, fc7, extra_1, ...].
    Parameter names and structure follow GluonCV's so that its files load unchanged.
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        if size not in VGG_EXTRAS:
            raise ValueError(f"VGG16-atrous SSD exists for input sizes {sorted(VGG_EXTRAS)}, not {size}")
        init = _conv_init()
        with self.name_scope():
            scale = mx.nd.array(IMAGENET_STD).reshape((1, 3, 1, 1)) * 255
            self.init_scale = self.params.get_constant("init_scale", scale)
            self.stages = nn.HybridSequential()
            for depth, channels in VGG16_STAGES:
                stage = nn.HybridSequential(prefix="")
                with stage.name_scope():
                    for _ in range(depth):
                        stage.add(nn.Conv2D(channels, 3, padding=1, **init), nn.Activation("relu"))
                self.stages.add(stage)
            fc = nn.HybridSequential(prefix="dilated_")
            with fc.name_scope():
                fc.add(nn.Conv2D(1024, 3, padding=6, dilation=6, **init), nn.Activation("relu"),
                       nn.Conv2D(1024, 1, **init), nn.Activation("relu"))
            self.stages.add(fc)
            self.norm4 = L2Normalize(VGG16_STAGES[3][1], 20.0, prefix="normalize0_")
            self.extras = nn.HybridSequential()
            for i, config in enumerate(VGG_EXTRAS[size]):
                extra = nn.HybridSequential(prefix=f"extra{i}_")
                with extra.name_scope():
                    for channels, kernel, stride, pad in config:
                        extra.add(nn.Conv2D(channels, kernel, stride, pad, **init), nn.Activation("relu"))
                self.extras.add(extra)

    def hybrid_forward(self, F, x, init_scale):
        def pool(y, kernel=2, stride=2, pad=0):
            # 'full' = ceil mode, as Caffe's SSD: 75 -> 38 on the 300 model.
            return F.Pooling(y, pool_type="max", kernel=(kernel, kernel), stride=(stride, stride),
                             pad=(pad, pad), pooling_convention="full")

        x = F.broadcast_mul(x, init_scale)
        for stage in self.stages[:3]:
            x = pool(stage(x))
        x = self.stages[3](x)
        outputs = [self.norm4(x)]
        x = self.stages[4](pool(x))
        x = self.stages[5](pool(x, 3, 1, 1))
        outputs.append(x)
        for extra in self.extras:
            x = extra(x)
            outputs.append(x)
        return outputs
