"""MXNet's layer names of the backbones, without MXNet: which SSD key an ImageNet classifier file's key lands on.

``gluon_ssd.get_model(name, pretrained_base=...)`` loads an ImageNet classifier into the feature extractor
(:func:`gluon_ssd.params.load_backbone_parameters`); :func:`load_backbone` does it to a twin, with torch and
numpy only: the arrays of a classifier file (keys as the file has them) are copied onto the twin's tensors, by
name. :func:`backbone_key` tells the SSD key that a file key lands on, for each backbone kind; for the
``mxnet.gluon.model_zoo.vision`` backbones it rebuilds MXNet's layer names (:func:`vision_layer_names`), for
VGG16-atrous the legacy ``save_params`` names (:func:`vgg_legacy_names`).
"""
from __future__ import annotations

import logging
import re

import numpy as np
import torch

from gluon_ssd.specs import BACKBONE_KEY_MAP, VGG16_STAGES

from ..nn.features import RESNET_LAYERS
from ..nn.layers import LayerNames
from .mapping import key_map

log = logging.getLogger(__name__)

__all__ = ["backbone_key", "load_backbone", "vision_layer_names", "vgg_legacy_names"]


def _resnet_layers(depth: int, version: int) -> dict[str, str]:
    """mxnet.gluon.model_zoo.vision ResNet v1/v2 (bottleneck v2 only): {structural layer path: name prefix}."""
    kind, blocks, channels = RESNET_LAYERS[depth]
    if version == 2 and kind != "bottleneck":
        raise ValueError(f"resnet{depth}_v2 has no SSD twin")
    top = LayerNames("")
    table: dict[str, str] = {}
    if version == 1:  # features: conv, bn, relu, pool, stage1..4, pool
        table["features.0."] = top("conv")
        table["features.1."] = top("batchnorm")
        first_stage = 4
    else:  # features: bn (no scale, no center), conv, bn, relu, pool, stage1..4, bn, relu, pool, flatten
        table["features.0."] = top("batchnorm")
        table["features.1."] = top("conv")
        table["features.2."] = top("batchnorm")
        first_stage = 5
    cin = channels[0]
    for s, count in enumerate(blocks, start=1):
        name = LayerNames(f"stage{s}_")
        for b in range(count):
            cout = channels[s]
            path = f"features.{first_stage + s - 1}.{b}."
            projection = b == 0 and cout != cin  # the vision ResNets project when the channels change
            if version == 1:
                # body: conv, bn, relu, conv, bn[, relu, conv, bn]; downsample: conv, bn
                for j in range(2 if kind == "basic" else 3):
                    table[f"{path}body.{3 * j}."] = name("conv")
                    table[f"{path}body.{3 * j + 1}."] = name("batchnorm")
                if projection:
                    table[f"{path}downsample.0."] = name("conv")
                    table[f"{path}downsample.1."] = name("batchnorm")
            else:
                for j in (1, 2, 3):
                    table[f"{path}bn{j}."] = name("batchnorm")
                    table[f"{path}conv{j}."] = name("conv")
                if projection:
                    table[f"{path}downsample."] = name("conv")
            cin = cout
    if version == 2:
        table[f"features.{first_stage + len(blocks)}."] = top("batchnorm")
    table["output."] = top("dense")
    return table


def _mobilenet_layers() -> dict[str, str]:
    """mxnet.gluon.model_zoo.vision MobileNet (v1, any multiplier): features = 27 (conv, bn, relu) units."""
    name = LayerNames("")
    table: dict[str, str] = {}
    for unit in range(1 + 2 * 13):  # the first conv, then 13 (depthwise, pointwise) pairs
        table[f"features.{3 * unit}."] = name("conv")
        table[f"features.{3 * unit + 1}."] = name("batchnorm")
    table["output."] = name("dense")
    return table


def _vision_backbone(backbone: str) -> tuple[str, int | None, int | None] | None:
    """('resnetv1' | 'resnetv2' | 'mobilenet', depth, version) of a vision backbone name; None for the others."""
    base = backbone.replace("_lite", "")
    match = re.fullmatch(r"resnet(\d+)_v([12])", base)
    if match:
        return f"resnetv{match.group(2)}", int(match.group(1)), int(match.group(2))
    if re.fullmatch(r"mobilenet\d+(?:\.\d+)?", base):
        return "mobilenet", None, None
    return None


def vision_layer_names(backbone: str) -> dict[str, str]:
    """{structural layer path of the classifier: layer name} of a ``mxnet.gluon.model_zoo.vision`` backbone.

    E.g. for 'resnet50_v1': ``'features.4.0.body.0.' -> 'stage1_conv0_'``: the classifier file key
    ``features.4.0.body.0.weight`` holds the parameter named ``resnetv10_stage1_conv0_weight``, which the SSD
    stores under ``features.resnetv10_stage1_conv0_weight``. The names follow MXNet's numbering (per name
    scope, per layer kind, in creation order), so the table needs no MXNet.

    Parameters
    ----------
    backbone : str
        A zoo row's backbone: 'resnet{18,34,50,101,152}_v1', 'resnet{50,101,152}_v2', 'mobilenet<multiplier>'
        (with or without '_lite').
    """
    kind = _vision_backbone(backbone)
    if kind is None:
        raise ValueError(f"{backbone!r} is not a backbone of mxnet.gluon.model_zoo.vision with an SSD twin")
    family, depth, version = kind
    if family == "mobilenet":
        return _mobilenet_layers()
    if depth not in RESNET_LAYERS:
        raise ValueError(f"{backbone!r} has no SSD twin (ResNet depths: {sorted(RESNET_LAYERS)})")
    return _resnet_layers(depth, version)


def vgg_legacy_names(gluon_keys) -> dict[str, str]:
    """{legacy name: structural key inside the extractor} of the VGG16-atrous extractor, from its SSD keys.

    gluon_ssd's ``VGGAtrousExtractor`` names its convolutions ``conv0 .. conv12`` (the five VGG stages share
    the extractor's scope), ``dilated_conv0/1`` (fc6, fc7) and ``extra{i}_conv{j}``; its L2 scale is
    ``normalize0_normalize_scale``. Old ``save_params`` files carry these names, without the extractor's prefix.

    Parameters
    ----------
    gluon_keys : iterable of str
        The twin's gluon keys (values of :func:`convert.weights.mapping.key_map`), in model order.
    """
    table: dict[str, str] = {}
    scopes: dict[str, list] = {}
    for key in gluon_keys:
        if not key.startswith("features."):
            continue
        local = key[len("features."):]
        if local == "init_scale":
            table["init_scale"] = local
            continue
        if local == "norm4.scale":
            table["normalize0_normalize_scale"] = local
            continue
        match = re.fullmatch(r"(stages|extras)\.(\d+)\.(\d+)\.(weight|bias)", local)
        if not match:
            continue
        group, index, layer, suffix = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
        if group == "extras":
            scope = f"extra{index}_"
        else:
            scope = "dilated_" if index == len(VGG16_STAGES) else ""
        layers = scopes.setdefault(scope, [])
        if (index, layer) not in layers:
            layers.append((index, layer))
        table[f"{scope}conv{layers.index((index, layer))}_{suffix}"] = local
    return table


def _legacy_error(source: str, backbone: str, first: str) -> ValueError:
    return ValueError(
        f"{source} uses MXNet's legacy parameter names (the deprecated save_params: no '.' in any key, e.g. "
        f"{first!r}); the {backbone} backbone is read from structural keys only (the keys of save_parameters, "
        f"e.g. 'layer1.0.conv1.weight'). Re-save the file once where MXNet is installed: load it into its "
        f"classifier with load_parameters(path) (gluoncv.model_zoo.get_model('{backbone}')) and write "
        f"save_parameters(new_path); or build the network there with gluon_ssd.get_model(name, "
        f"pretrained_base=path) and convert it (convert.gluon_to_torch).")


def _key_mapper(model: torch.nn.Module, legacy: bool, source: str):
    """The function file key -> SSD gluon key (or None) for ``model``'s backbone kind (see :func:`backbone_key`)."""
    backbone = model.spec.backbone
    if backbone == "vgg16_atrous":
        if not legacy:
            return lambda key: "features." + key
        names = vgg_legacy_names(key_map(model).values())
        return lambda key: "features." + names[key] if key in names else None
    if backbone == "resnet34_v1b":
        if legacy:
            raise _legacy_error(source, backbone, "conv0_weight")

        def renamed(key):
            for old, new in BACKBONE_KEY_MAP:
                if key.startswith(old):
                    return "features." + new + key[len(old):]
            return None

        return renamed
    kind = _vision_backbone(backbone)
    if kind is None:
        raise ValueError(f"no backbone loading rule for {backbone!r} (vgg16_atrous, resnet34_v1b, "
                         "ResNet v1/v2 and MobileNet are supported)")
    family = kind[0]
    prefix = f"features.{family}0_"
    if legacy:
        full = re.compile(rf"{family}\d+_(.+)")

        def named(key):
            match = full.fullmatch(key)
            return prefix + (match.group(1) if match else key)

        return named
    layers = vision_layer_names(backbone)

    def structural(key):
        path, _, suffix = key.rpartition(".")
        name = layers.get(path + ".")
        return prefix + name + suffix if name is not None else None

    return structural


def backbone_key(model: torch.nn.Module, file_key: str, legacy: bool | None = None,
                 source: str = "the backbone file") -> str | None:
    """The SSD gluon key that backbone-file key ``file_key`` loads into (None: not part of the SSD).

    The backbone sits under ``features.`` in every SSD:

    * vgg16_atrous: the extractor's own structural keys, ``features.`` + key (``stages.0.0.weight``); legacy
      names through :func:`vgg_legacy_names`.
    * resnet34_v1b: GluonCV's classifier keys renamed by ``gluon_ssd.specs.BACKBONE_KEY_MAP``
      (``layer1.0.conv1.weight`` -> ``features.stage1.4.0.conv1.weight``); legacy names are refused.
    * vision backbones (ResNet v1/v2, MobileNet): ``features.`` + the parameter's MXNet name with the
      classifier's prefix (``resnetv10_``, ``resnetv20_``, ``mobilenet0_``): structural keys through
      :func:`vision_layer_names`; legacy names as written by save_params (prefix stripped:
      ``stage1_conv0_weight``) or with the family's prefix (``resnetv13_stage1_conv0_weight``).

    Parameters
    ----------
    model : convert.SSD
        The twin (its ``spec.backbone`` decides the rule).
    file_key : str
        A key of the file (``arg:``/``aux:`` already removed).
    legacy : bool, optional
        The file uses legacy names (none of its keys has a '.'); default: whether ``file_key`` has none.
    source : str
        Names the file in errors.

    Raises
    ------
    ValueError
        Legacy names for resnet34_v1b, or a backbone without rule.
    """
    if legacy is None:
        legacy = "." not in file_key
    return _key_mapper(model, legacy, source)(file_key)


def load_backbone(model: torch.nn.Module, arrays: dict[str, np.ndarray], source: str = "the backbone file") -> int:
    """Copy an ImageNet classifier's weights into a twin's feature extractor, as
    ``gluon_ssd.params.load_backbone_parameters`` does into the MXNet network.

    Parameters
    ----------
    model : convert.SSD
        The twin (e.g. after :func:`init_like_gluon`); changed in place, only where the file has a tensor.
    arrays : dict of str to numpy.ndarray
        The file's contents with its own keys: structural (``save_parameters``) or legacy names; ``arg:`` and
        ``aux:`` prefixes are dropped. Keys without a counterpart in the SSD (the classifier's output layer,
        blocks after the SSD's last tap) are skipped, as gluon_ssd skips them.
    source : str
        The file's name, for messages.

    Returns
    -------
    int
        How many of the twin's tensors were loaded.

    Raises
    ------
    ValueError
        No key of the file belongs to the backbone (the wrong file), a tensor's shape differs from the twin's
        (naming the file and the key; nothing is loaded then), or legacy names where they are not supported
        (resnet34_v1b).
    """
    arrays = {k[4:] if k.startswith(("arg:", "aux:")) else k: v for k, v in arrays.items()}
    if not arrays:
        raise ValueError(f"{source} holds no named parameters")
    table = key_map(model)
    by_gluon = {g: t for t, g in table.items()}
    legacy = not any("." in k for k in arrays)
    name = getattr(model, "name", "the model")
    backbone = model.spec.backbone
    mapper = _key_mapper(model, legacy, source)
    targets: dict[str, str] = {}
    for file_key in arrays:
        gluon_key = mapper(file_key)
        if gluon_key is not None and gluon_key in by_gluon:
            targets[file_key] = by_gluon[gluon_key]
    if not targets:
        raise ValueError(f"{source} has no parameter of the {backbone} backbone of {name}: is it the right file? "
                         f"(first keys: {', '.join(list(arrays)[:3])})")
    state = model.state_dict(keep_vars=True)
    for file_key, torch_key in targets.items():
        have, need = tuple(np.shape(arrays[file_key])), tuple(state[torch_key].shape)
        if have != need:
            raise ValueError(f"backbone file {source}: {file_key} has shape {have}, the {backbone} backbone of "
                             f"{name} needs {need} ({table[torch_key]})")
    with torch.no_grad():
        for file_key, torch_key in targets.items():
            value = torch.from_numpy(np.ascontiguousarray(arrays[file_key]))
            state[torch_key].copy_(value)
    skipped = len(arrays) - len(targets)
    log.info("loaded %d backbone tensors from %s%s", len(targets), source,
             f" ({'legacy names; ' if legacy else ''}{skipped} keys of the file not used by the SSD)" if skipped
             else (" (legacy names)" if legacy else ""))
    return len(targets)
