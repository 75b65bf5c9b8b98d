"""Feature extractors for SSDs on ImageNet classification backbones.

The backbone comes from ``mxnet.gluon.model_zoo.vision``; its internal outputs (``taps``) and a stack of
extra downsampling layers are assembled into one symbol and wrapped as a SymbolBlock. Built inside the
SSD's name scope, the parameter names are the ones GluonCV files carry
(``resnetv10_stage3_conv0_weight``, ``expand_trans_conv0_weight``, ...).
"""
from __future__ import annotations

import warnings

import mxnet as mx
from mxnet.gluon import SymbolBlock
from mxnet.gluon.model_zoo import vision

from ..specs import transition_channels


def _xavier_out():
    return mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)


def expand_symbol(top, filters, reduce_ratio=1.0, min_depth=128):
    """Extra SSD layers on top of ``top``: per filter, 1x1 transition, 3x3 stride-2 conv, each BN+ReLU.

    The BatchNorms are mxnet.symbol defaults (fix_gamma=True, eps=1e-3), which the published weights
    were trained with; the convolutions have no bias.
    """
    outputs = []
    y = top
    for i, channels in enumerate(filters):
        trans = transition_channels(channels, reduce_ratio, min_depth)
        y = mx.sym.Convolution(y, num_filter=trans, kernel=(1, 1), no_bias=True,
                               name=f"expand_trans_conv{i}", attr={"__init__": _xavier_out().dumps()})
        y = mx.sym.BatchNorm(y, name=f"expand_trans_bn{i}")
        y = mx.sym.Activation(y, act_type="relu", name=f"expand_trans_relu{i}")
        y = mx.sym.Convolution(y, num_filter=channels, kernel=(3, 3), pad=(1, 1), stride=(2, 2),
                               no_bias=True, name=f"expand_conv{i}", attr={"__init__": _xavier_out().dumps()})
        y = mx.sym.BatchNorm(y, name=f"expand_bn{i}")
        y = mx.sym.Activation(y, act_type="relu", name=f"expand_relu{i}")
        outputs.append(y)
    return outputs


def backbone_features(base: str, taps, filters, reduce_ratio=1.0, min_depth=128, norm_kwargs=None):
    """(SymbolBlock, backbone): the block maps (B, 3, H, W) -> [tap_1, ..., tap_k, extra_1, ...].

    Must be called inside the SSD's ``name_scope()`` so that names carry the SSD's prefix.
    ``base`` is a ``mxnet.gluon.model_zoo.vision`` name such as 'resnet50_v1' or 'mobilenet1.0'.
    """
    kwargs = {}
    if norm_kwargs:
        kwargs["norm_kwargs"] = norm_kwargs
    net = vision.get_model(base, **kwargs)
    data = mx.sym.var("data")
    sym = net(data)
    internals = sym.get_internals()
    names = set(internals.list_outputs())
    outputs = []
    for tap in taps:
        full = f"{net.prefix}{tap}_output"
        if full not in names:
            raise ValueError(f"backbone {base} has no layer named {tap!r} ({full})")
        outputs.append(internals[full])
    outputs += expand_symbol(outputs[-1], filters, reduce_ratio, min_depth)
    with warnings.catch_warnings():
        # SymbolBlock cannot infer the input dtype before the first call; harmless, and noisy.
        warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
        block = SymbolBlock(outputs, data, params=net.collect_params())
    return block, net
