"""Reading and writing SSD parameter files.

Accepted: GluonCV files in both key formats (structural ``features.stages.0.0.weight`` from
``save_parameters``; legacy ``vggatrousextractor0_conv0_weight`` from the deprecated ``save_params``),
files exported with ``arg:``/``aux:`` prefixes, and our own files (which are GluonCV's structural format,
so they load into gluoncv too).
"""
from __future__ import annotations

import logging
import os
import types

import mxnet as mx
import numpy as np

from .fileio import atomic_save_ndarrays  # noqa: F401  (re-exported: convert/ writes its files through this name)
from .nn import ssd
from .specs import BACKBONE_KEY_MAP, head_classes

log = logging.getLogger(__name__)


def save_ssd_parameters(net, path):
    """Write ``net``'s parameters with GluonCV's structural keys (loadable by gluoncv)."""
    params = net._collect_params_with_prefix()
    atomic_save_ndarrays(path, {k: p._reduce() for k, p in params.items()})


def read_param_file(path) -> dict:
    """{key: NDArray} from an MXNet parameter file, with a clear error for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"parameter file not found: {path}")
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "Check failed" in ln or "Error" in ln), lines[-1])
        raise ValueError(f"{path} is not an MXNet parameter file (mx.nd.load failed: {reason})") from None
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"{path} holds no named parameters (an MXNet .params file with names is expected)")
    out = {}
    for key, value in loaded.items():
        if key.startswith(("arg:", "aux:")):
            key = key[4:]
        out[key] = value
    return out


def _legacy_names(net) -> dict:
    """{GluonCV legacy key: structural key} for ``net``: the full parameter name minus the net's prefix."""
    mapping = {}
    for key, param in net._collect_params_with_prefix().items():
        name = param.name
        mapping[name[len(net.prefix):] if name.startswith(net.prefix) else name] = key
    return mapping


def _describe(net) -> str:
    name = getattr(net, "name_in_zoo", type(net).__name__)
    return f"{name} ({net.num_classes} classes)" if hasattr(net, "num_classes") else name


def to_structural(net, loaded: dict, path) -> dict:
    """Rename a file's keys to ``net``'s structural keys (legacy and full-name files)."""
    if any("." in k for k in loaded):
        return loaded
    names = _legacy_names(net)
    full = {p.name: k for k, p in net._collect_params_with_prefix().items()}
    out = {}
    for key, value in loaded.items():
        out[names.get(key) or full.get(key) or key] = value
    log.info("%s: legacy key format, %d keys renamed", path, len(loaded))
    return out


def infer_shapes(net):
    """Make every deferred parameter shape known, from a zero input at the model's base size."""
    if any(0 in (p.shape or (0,)) for p in net.collect_params().values()):
        size = getattr(getattr(net, "spec", None), "base_size", 300)
        # Symbolic shape inference only (no compute). HybridBlock.infer_shape cannot be used: the
        # stored anchor constants are not part of the graph when the formula computes the anchors.
        with mx.autograd.predict_mode():
            inputs, out = net._get_graph(mx.nd.zeros((1, 3, size, size)))
        arg_shapes, _, aux_shapes = out.infer_shape(**{inputs[0].name: (1, 3, size, size)})
        shapes = dict(zip(out.list_arguments(), arg_shapes))
        shapes.update(zip(out.list_auxiliary_states(), aux_shapes))
        for param in net.collect_params().values():
            if param.name in shapes:
                param.shape = shapes[param.name]
        net._clear_cached_op()


def check_fit(net, loaded: dict, path, allow_missing=False, ignore_extra=False):
    """Raise ValueError naming the model, the file and the first mismatching keys, if they do not fit."""
    params = net._collect_params_with_prefix()
    missing = [k for k in params if k not in loaded]
    extra = [k for k in loaded if k not in params]
    wrong = [(k, tuple(loaded[k].shape), tuple(p.shape)) for k, p in params.items()
             if k in loaded and tuple(loaded[k].shape) != tuple(p.shape)]
    def first(items):
        more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
        return ", ".join(items[:5]) + more

    problems = []
    if wrong:
        problems.append("shape mismatch (file vs model): " + first([f"{k}: {f} vs {m}" for k, f, m in wrong]))
    if missing and not allow_missing:
        problems.append(f"missing in file: {first(missing)}")
    if extra and not ignore_extra:
        problems.append(f"not in model: {first(extra)}")
    if not problems:
        return
    hint, file_classes = "", None
    if wrong and all(k.startswith("class_predictors.") for k, _, _ in wrong) and not missing and not extra:
        file_classes = head_classes(wrong[0][1][0], net.anchor_generators[0].num_depth)
    if file_classes is not None:
        hint = (f" The file's class heads are for {file_classes} classes, the model has {net.num_classes}: "
                f"build the model with the file's classes (classes=[...] of length {file_classes}), "
                "then call net.reset_class() to change them.")
    if missing or extra:
        hint = " The file is probably for another model: check the model name it was trained with."
    raise ValueError(f"parameter file {path} does not fit model {_describe(net)}: "
                     + " | ".join(problems) + "." + hint)


def load_ssd_parameters(net, path, ctx=None, allow_missing=False, ignore_extra=False):
    """Load a parameter file (any supported format) into an SSD, then honor the file's anchors."""
    ctx = ctx or [mx.cpu()]
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    loaded = to_structural(net, read_param_file(path), path)
    infer_shapes(net)
    check_fit(net, loaded, path, allow_missing, ignore_extra)
    params = net._collect_params_with_prefix()
    for key, value in loaded.items():
        if key in params:
            params[key]._load_init(value, ctx)
    initialize_missing(net, ctx)
    sync_anchors(net, path)


def sync_anchors(net, source="the loaded file"):
    """Use stored anchors where they differ from the formula (a file with edited anchors)."""
    net._clear_cached_op()
    stored = [i for i, gen in enumerate(net.anchor_generators) if gen.sync_with_stored()]
    if stored:
        log.warning("anchors of layers %s in %s differ from the model's formula; using the stored ones "
                    "(input size is then limited to the stored grid)", stored, source)


def load_backbone_parameters(net, path, ctx=None):
    """Load ImageNet backbone weights (a classifier file) into an SSD's feature extractor."""
    ctx = ctx or [mx.cpu()]
    backbone = getattr(net, "_backbone", None)
    target = backbone.net if isinstance(backbone, types.SimpleNamespace) and backbone.net else None
    loaded = read_param_file(path)
    if target is None:
        target = net.features
        if net.spec.backbone == "resnet34_v1b":
            renamed = {}
            for key, value in loaded.items():
                for old, new in BACKBONE_KEY_MAP:
                    if key.startswith(old):
                        renamed[new + key[len(old):]] = value
            loaded = renamed
    loaded = to_structural(target, loaded, path)
    params = target._collect_params_with_prefix()
    used = [k for k in loaded if k in params]
    if not used:
        raise ValueError(f"{path} has no parameter of the {net.spec.backbone} backbone of {_describe(net)}: "
                         f"is it the right file? (first keys: {', '.join(list(loaded)[:3])})")
    for key in used:
        p = params[key]
        if p.shape and 0 not in p.shape and tuple(p.shape) != tuple(loaded[key].shape):
            raise ValueError(f"backbone file {path}: {key} has shape {tuple(loaded[key].shape)}, "
                             f"the {net.spec.backbone} backbone needs {tuple(p.shape)}")
        p._load_init(loaded[key], ctx)
    log.info("loaded %d backbone parameters from %s", len(used), path)


def initialize_missing(net, ctx):
    """Initialize the parameters that hold no data yet.

    Convolution weights without an initializer of their own get He-style Xavier (gaussian, fan-out,
    magnitude 2: what GluonCV gives the SSD's extra layers); everything else its own or mxnet's default.
    """
    conv_init = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)
    # mxnet's default initializer would draw the extra layers' BatchNorm statistics (SymbolBlock
    # parameters without an initializer of their own) from U(-0.07, 0.07): a negative variance gives NaN
    # at inference until training has moved it. Statistics and affine terms get their neutral values.
    by_suffix = {"_moving_var": mx.init.One(), "_running_var": mx.init.One(), "_gamma": mx.init.One(),
                 "_moving_mean": mx.init.Zero(), "_running_mean": mx.init.Zero(), "_beta": mx.init.Zero()}
    for param in net.collect_params().values():
        if param._data is None and not param._deferred_init:
            init = None
            if param.init is None:
                if param.name.endswith("_weight"):
                    init = conv_init
                init = next((v for k, v in by_suffix.items() if param.name.endswith(k)), init)
            param.initialize(init=init, ctx=ctx)


def param_arrays(net) -> dict[str, np.ndarray]:
    """{structural key: numpy array} of a net (for comparisons and conversion)."""
    return {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}


# The SSD block knows no file format (DESIGN.md: nn sits below params); its load_parameters/save_parameters
# use these once this module is imported, which the model zoo does before it builds any SSD.
ssd.use_parameter_format(load_ssd_parameters, save_ssd_parameters)
