"""Shared test helpers: gluoncv reference models with seeded random weights, preprocessed photos."""
from __future__ import annotations

import mxnet as mx
import numpy as np

CUSTOM_CLASSES = ("cat", "dog", "person")


def build_reference(gcv, name, classes=None):
    """gluoncv's model for ``name`` (custom models get CUSTOM_CLASSES), initialized, shapes known."""
    kwargs = {"pretrained_base": False}
    if name.endswith("_custom"):
        kwargs["classes"] = classes or CUSTOM_CLASSES
    net = gcv.model_zoo.get_model(name, **kwargs)
    net.initialize()
    size = int(name.split("_")[1])
    net(mx.nd.zeros((1, 3, size, size)))
    return net


def randomize(net, seed=0, probe=None):
    """Seeded random weights, spread enough that class scores differ and every BN matters.

    Conv weights are He-scaled so activations neither vanish nor explode through deep backbones; BN
    statistics and affine terms are random; anchors and the VGG input scale stay as built. Each head is
    then rescaled on ``probe`` (a preprocessed batch) so that class logits have a standard deviation of
    about 2 and box offsets about 0.5: softmax scores are spread, decoded boxes finite.
    """
    rng = np.random.default_rng(seed)
    for key, param in net._collect_params_with_prefix().items():
        shape = param.shape
        if key.startswith("anchor_generators") or key.endswith("init_scale"):
            continue
        if key.endswith("norm4.scale"):
            value = rng.uniform(10, 30, shape)
        elif key.endswith(("gamma", "running_var", "moving_var")):
            value = rng.uniform(0.5, 1.5, shape)
        elif key.endswith(("beta", "running_mean", "moving_mean", "bias")):
            value = rng.normal(0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            std = np.sqrt(2.0 / fan_in)
            if key.startswith(("class_predictors", "box_predictors")):
                std *= 3.0
            value = rng.normal(0, std, shape)
        param.set_data(mx.nd.array(value.astype(np.float32)))
    if probe is not None:
        with mx.autograd.predict_mode():
            feats = net.features(probe)
        for heads, target in ((net.class_predictors, 2.0), (net.box_predictors, 0.5)):
            for head, feat in zip(heads, feats):
                out = head(feat).asnumpy()
                scale = target / max(float(out.std()), 1e-6)
                for p in (head.predictor.weight, head.predictor.bias):
                    p.set_data(p.data() * scale)
    return net


def save_legacy(net, path):
    """Write ``net``'s parameters the way GluonCV's train_ssd.py does (deprecated save_params):
    full names without the network's prefix."""
    net.collect_params().save(str(path), strip_prefix=net.prefix)


def photo_batch(gcv, paths, width, height):
    """Real photos through gluoncv's own validation transform, stacked: (B, 3, height, width)."""
    transform = gcv.data.transforms.presets.ssd.SSDDefaultValTransform(width, height)
    batch = []
    for path in paths:
        img = mx.image.imread(path)
        x, _ = transform(img, np.zeros((1, 6), dtype=np.float32))
        batch.append(x)
    return mx.nd.stack(*batch)
