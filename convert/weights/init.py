"""Start a PyTorch twin the way gluon_ssd starts its MXNet network, on a machine without MXNet.

``gluon_ssd.get_model(name, pretrained_base=...)`` builds the network, gives every parameter its
initializer (:func:`gluon_ssd.params.initialize_missing`) and loads an ImageNet classifier into the feature
extractor (:func:`gluon_ssd.params.load_backbone_parameters`). This module does both to a twin
(:func:`convert.get_torch_model`), with torch and numpy only:

* :func:`init_like_gluon`: every parameter and buffer drawn from the distribution MXNet gives it. Which
  initializer a tensor gets is decided by its gluon structural key (:func:`convert.mapping.key_map`) in one
  table, :data:`INIT_RULES`.
* :func:`load_backbone`: the arrays of a classifier file (keys as the file has them) copied onto the twin's
  tensors, by name: :func:`backbone_key` tells the SSD key that a file key lands on, for each backbone kind.

The random numbers are torch's, not MXNet's: the twin gets the same distributions, not the same values.
"""
from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import torch

from gluon_ssd.specs import BACKBONE_KEY_MAP, IMAGENET_STD, VGG16_STAGES

from .backbones import RESNET_LAYERS
from .mapping import key_map

log = logging.getLogger(__name__)

__all__ = ["Constant", "Xavier", "INIT_RULES", "initializer_for", "init_like_gluon", "backbone_key", "start_model",
           "load_backbone", "vision_layer_names", "vgg_legacy_names"]


# ----------------------------------------------------------------------------------------------------
# Initializers


@dataclasses.dataclass(frozen=True)
class Constant:
    """Every element ``value`` (a number, or nested tuples broadcast to the tensor's shape): ``mx.init.Constant``,
    ``'zeros'``, ``'ones'`` and the constants of ``params.get_constant``."""

    value: float | tuple

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        array = np.broadcast_to(np.asarray(self.value, dtype=np.float32), shape)
        return torch.from_numpy(array.copy()).to(generator.device)


@dataclasses.dataclass(frozen=True)
class Xavier:
    """``mx.init.Xavier(rnd_type, factor_type, magnitude)``.

    With ``r = prod(shape[2:])`` (1 for a matrix), fan_in = shape[1] * r and fan_out = shape[0] * r; the
    factor is their mean ('avg'), fan_in ('in') or fan_out ('out'), and scale = sqrt(magnitude / factor).
    'uniform' draws from U(-scale, scale), 'gaussian' from N(0, scale**2).
    """

    rnd_type: str = "uniform"
    factor_type: str = "avg"
    magnitude: float = 3.0

    def scale(self, shape: tuple[int, ...]) -> float:
        """The bound (uniform) or standard deviation (gaussian) for a tensor of ``shape``."""
        if len(shape) < 2:
            raise ValueError(f"Xavier needs a tensor of at least 2 dimensions, not shape {tuple(shape)}")
        receptive = float(np.prod(shape[2:])) if len(shape) > 2 else 1.0
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
        factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}.get(self.factor_type)
        if factor is None:
            raise ValueError(f"Xavier factor_type {self.factor_type!r}: expected 'avg', 'in' or 'out'")
        return float(np.sqrt(self.magnitude / factor))

    def std(self, shape: tuple[int, ...]) -> float:
        """The standard deviation of the distribution for ``shape``."""
        scale = self.scale(shape)
        return scale / np.sqrt(3.0) if self.rnd_type == "uniform" else scale

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        scale = self.scale(shape)
        out = torch.empty(shape, dtype=torch.float32, device=generator.device)
        if self.rnd_type == "uniform":
            return out.uniform_(-scale, scale, generator=generator)
        if self.rnd_type == "gaussian":
            return out.normal_(0.0, scale, generator=generator)
        raise ValueError(f"Xavier rnd_type {self.rnd_type!r}: expected 'uniform' or 'gaussian'")


ZERO = Constant(0.0)
ONE = Constant(1.0)


def _as_tuple(array):
    return tuple(_as_tuple(a) for a in array) if np.ndim(array) else float(array)


# The VGG input scale: ImageNet std * 255, computed in float32 as gluon_ssd.nn.vgg does.
VGG_INIT_SCALE = Constant(_as_tuple((np.asarray(IMAGENET_STD, dtype=np.float32) * np.float32(255)).reshape(1, 3, 1, 1)))

# (gluon structural key pattern, initializer, where gluon_ssd sets it); the first pattern that matches wins.
# Measured against gluon_ssd.get_model(name, pretrained_base=False) tensor by tensor, for every backbone kind,
# in tests/test_convert_init.py.
INIT_RULES: tuple[tuple[str, Constant | Xavier, str], ...] = (
    (r"^(class|box)_predictors\.\d+\.predictor\.weight$", Xavier("uniform", "avg", 2.0),
     "ConvPredictor: weight_initializer=Xavier(magnitude=2)"),
    (r"^features\.init_scale$", VGG_INIT_SCALE, "VGGAtrousExtractor: get_constant('init_scale', std * 255)"),
    (r"^features\.norm4\.scale$", Constant(20.0), "L2Normalize: Constant(20)"),
    (r"(^|[._])(bias|beta|running_mean|moving_mean)$", ZERO,
     "biases: bias_initializer 'zeros'; BatchNorm beta and mean: gluon's 'zeros', initialize_missing's Zero()"),
    (r"(^|[._])(gamma|running_var|moving_var)$", ONE,
     "BatchNorm gamma and variance: gluon's 'ones', initialize_missing's One()"),
    (r"(^|[._])weight$", Xavier("gaussian", "out", 2.0),
     "every other convolution: VGG and ResNet34-v1b extras set Xavier(gaussian, out, 2), the backbones and the "
     "expand layers get it from initialize_missing"),
)
_COMPILED_RULES = tuple((re.compile(pattern), init, origin) for pattern, init, origin in INIT_RULES)


def initializer_for(gluon_key: str) -> tuple[Constant | Xavier, str]:
    """(initializer, where gluon_ssd sets it) of the tensor with gluon structural key ``gluon_key``.

    Raises
    ------
    KeyError
        No rule of :data:`INIT_RULES` covers the key (a layer kind this module does not know).
    """
    for pattern, init, origin in _COMPILED_RULES:
        if pattern.search(gluon_key):
            return init, origin
    raise KeyError(f"no initialization rule for gluon key {gluon_key!r} (convert.init.INIT_RULES)")


def init_like_gluon(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Draw every parameter and buffer of a twin as ``gluon_ssd.get_model(name, pretrained_base=False)`` does.

    Parameters
    ----------
    model : convert.SSD
        A twin from :func:`convert.get_torch_model`; changed in place (its devices and dtypes are kept).
    generator : torch.Generator
        The only source of randomness: the same seed gives the same tensors. Samples are drawn on the
        generator's device in float32, in the order of :func:`convert.mapping.key_map`.

    Notes
    -----
    Each tensor's initializer is the first rule of :data:`INIT_RULES` matching its gluon key. torch's
    ``num_batches_tracked`` counters (no MXNet counterpart) are set to 0. MXNet keeps a gamma for its
    fix_gamma BatchNorms that the twin has no tensor for (it is 1 and unused).

    Raises
    ------
    RuntimeError
        A tensor without gluon key or rule (a bug in the twin or in :data:`INIT_RULES`).
    """
    table = key_map(model)
    state = model.state_dict(keep_vars=True)
    unmapped = [k for k in state if k not in table and not k.endswith("num_batches_tracked")]
    if unmapped:
        raise RuntimeError(f"tensors of {getattr(model, 'name', type(model).__name__)} without an MXNet name: "
                           f"{', '.join(unmapped[:5])} (a bug in the twin)")
    counts: dict[str, int] = {}
    with torch.no_grad():
        for torch_key, gluon_key in table.items():
            try:
                init, _ = initializer_for(gluon_key)
            except KeyError as err:
                raise RuntimeError(str(err.args[0])) from None
            tensor = state[torch_key]
            tensor.copy_(init.sample(tuple(tensor.shape), generator))
            kind = type(init).__name__
            counts[kind] = counts.get(kind, 0) + 1
        for key, tensor in state.items():
            if key.endswith("num_batches_tracked"):
                tensor.zero_()
    log.debug("initialized %s like gluon_ssd: %s", getattr(model, "name", "the model"), counts)


# ----------------------------------------------------------------------------------------------------
# Backbone files: which SSD key a classifier file's key lands on


def _counter(scope: str):
    """MXNet's layer naming within a name scope: 'conv' -> '<scope>conv0_', then 'conv1_', ... per hint."""
    counts: dict[str, int] = {}

    def name(hint: str) -> str:
        n = counts.get(hint, 0)
        counts[hint] = n + 1
        return f"{scope}{hint}{n}_"

    return name


def _resnet_layers(depth: int, version: int) -> dict[str, str]:
    """mxnet.gluon.model_zoo.vision ResNet v1/v2 (bottleneck v2 only): {structural layer path: name prefix}."""
    kind, blocks, channels = RESNET_LAYERS[depth]
    if version == 2 and kind != "bottleneck":
        raise ValueError(f"resnet{depth}_v2 has no SSD twin")
    top = _counter("")
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
        name = _counter(f"stage{s}_")
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
    name = _counter("")
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
        The twin's gluon keys (values of :func:`convert.mapping.key_map`), in model order.
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


# ----------------------------------------------------------------------------------------------------
# The start of a training run without MXNet


def _file_class_count(model, arrays: dict, source: str) -> int:
    weight = arrays.get("class_predictors.0.predictor.weight")
    if weight is None:
        raise ValueError(f"{source} holds no SSD class head (class_predictors.0.predictor.weight): pass a parameter "
                         f"file of {model.name} (GluonCV's or from a training run) or a model name")
    per_anchor, rest = divmod(int(np.shape(weight)[0]), model.anchor_generators[0].num_anchors)
    if rest or per_anchor < 2:
        raise ValueError(f"{source}: its first class head has {np.shape(weight)[0]} outputs, which is no number of "
                         f"classes for {model.name}: is it a file of this network?")
    return per_anchor - 1


def reuse_class_heads(model, source_model, reuse: list[str]) -> None:
    """Give ``model``'s class heads the background outputs of ``source_model``'s and those of the classes named
    in ``reuse`` (present in both), as ``gluon_ssd.nn.SSD.reset_class(classes, reuse_weights=reuse)`` does; the
    other classes keep ``model``'s own (fresh) values."""
    pairs = [(0, 0)] + [(model.classes.index(c) + 1, source_model.classes.index(c) + 1) for c in reuse]
    with torch.no_grad():
        for new, old, gen in zip(model.class_predictors, source_model.class_predictors, model.anchor_generators):
            anchors = gen.num_anchors
            for name in ("weight", "bias"):
                dst = getattr(new, name).view(anchors, model.num_classes + 1, -1)
                src = getattr(old, name).view(anchors, source_model.num_classes + 1, -1)
                for n_idx, o_idx in pairs:
                    dst[:, n_idx] = src[:, o_idx]


def start_model(name: str, classes, seed: int, pretrained_base=False, transfer: str = "", root=None):
    """The twin a ``--backend torch`` run starts from where MXNet is not installed, as ``train_ssd.py``'s
    ``prepare()`` builds the gluon network: :func:`init_like_gluon` (seeded by ``seed``), then the ImageNet
    classifier of ``pretrained_base`` (True: the model store's file; or a path; False: none) in the backbone, or, for
    ``transfer`` (a parameter file of this network, or a zoo model name), all of that model's weights with
    the class heads of the classes both lists share (the others fresh).

    Returns
    -------
    (convert.SSD in train mode, ignored MXNet values of the transferred file: see convert.mapping)

    Raises
    ------
    ValueError (a file that does not fit, legacy names where only MXNet can translate them),
    FileNotFoundError, gluon_ssd.model_store.ModelStoreError (a download that failed).
    """
    import os

    from gluon_ssd import model_store, ndfile
    from gluon_ssd.classes import COCO_CLASSES, VOC_CLASSES
    from gluon_ssd.specs import MODEL_SPECS, get_spec

    from .mapping import gluon_to_torch, read_structural_file
    from .model import get_torch_model

    classes = tuple(classes)
    model = get_torch_model(name, classes=classes)
    init_like_gluon(model, torch.Generator().manual_seed(int(seed)))
    ignored: dict = {}
    if transfer:
        is_file = os.path.isfile(transfer)
        if not is_file and transfer not in MODEL_SPECS:
            raise ValueError(f"--transfer {transfer}: neither a file nor a model name")
        path = transfer if is_file else model_store.get_model_file(transfer, root=root)
        arrays = read_structural_file(path)
        n_file = _file_class_count(model, arrays, path)
        file_classes = ({20: VOC_CLASSES, 80: COCO_CLASSES}.get(n_file) or tuple(f"class{i}" for i in range(n_file))
                        if is_file else tuple({"voc": VOC_CLASSES, "coco": COCO_CLASSES}[get_spec(transfer).dataset]))
        source = get_torch_model(name, classes=file_classes)
        state, ignored = gluon_to_torch(source, arrays, source=path)
        source.load_state_dict(state, strict=True)
        if file_classes == classes:
            return source.train(), ignored
        own = model.state_dict()
        model.load_state_dict({k: (v if k.startswith("class_predictors.") else state[k]) for k, v in own.items()})
        reuse_class_heads(model, source, [c for c in classes if c in file_classes])
        log.info("transferred %s (%d classes) to %d classes, reusing %d class heads", path, n_file, len(classes),
                 len([c for c in classes if c in file_classes]))
        return model.train(), ignored
    if pretrained_base:
        path = (model_store.get_model_file(get_spec(name).base_store_name, root=root) if pretrained_base is True
                else pretrained_base)
        load_backbone(model, ndfile.load(path), source=os.fspath(path))
    return model.train(), ignored
