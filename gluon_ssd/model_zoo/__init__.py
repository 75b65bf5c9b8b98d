"""The SSD model zoo: one table of specs, ``get_model`` and ``list_models``.

Every model of GluonCV 0.10.5's SSD zoo is a row here; adding a model is adding a row. GluonCV's dotted paths
of the training parts live below: ``gluon_ssd.model_zoo.ssd.target.SSDTargetGenerator`` (GluonCV's
``gluoncv.model_zoo.ssd.target``) and ``gluon_ssd.loss.SSDMultiBoxLoss`` (``gluoncv.loss``).
"""
from __future__ import annotations

import logging
import os
import types
from functools import partial

import mxnet as mx

from .. import model_store, params
from ..classes import DATASET_CLASSES
from ..nn.features import backbone_features
from ..nn.resnetv1b import resnet34_v1b_features
from ..nn.ssd import SSD
from ..nn.vgg import VGGAtrousExtractor
from ..specs import (  # noqa: F401  (MODEL_SPECS, list_models: re-exported, the zoo table)
    MODEL_SPECS,
    SSDSpec,
    get_spec,
    head_classes,
    list_models,
)

log = logging.getLogger(__name__)

# GluonCV's int8 SSDs are calibrated graphs over a float32 zoo model, so their loader sits a layer above the
# zoo (gluon_ssd.quantization, which sets this on import; gluon_ssd.get_model imports it).
_int8_loader: list = []


def use_int8_loader(loader) -> None:
    """Make :func:`get_model` of an int8 name call ``loader(name, pretrained=, root=, ctx=, **kwargs)``
    (set by :mod:`gluon_ssd.quantization`)."""
    _int8_loader[:] = [loader]


def norm_layer_error(backbone: str) -> str | None:
    """Why a normalization layer other than BatchNorm (GluonCV's ``norm_layer=SyncBatchNorm``) cannot be put in
    ``backbone``; None for VGG16, which has no normalization layer to replace."""
    if backbone == "vgg16_atrous":
        return None
    if backbone == "resnet34_v1b":
        where = "gluon_ssd.nn.resnetv1b builds its BatchNorm layers as mxnet.gluon.nn.BatchNorm"
    else:
        where = (f"the {backbone.replace('_lite', '')} backbone comes from mxnet.gluon.model_zoo.vision, whose "
                 f"ResNet and MobileNet blocks create mxnet.gluon.nn.BatchNorm themselves and take no norm_layer "
                 f"argument in MXNet {mx.__version__}")
    return (f"{where} (GluonCV passes SyncBatchNorm to backbones of its own that take one), so SyncBatchNorm cannot "
            f"be put in")


def _features_fn(spec: SSDSpec, base_holder: list):
    if spec.backbone == "vgg16_atrous":
        return partial(VGGAtrousExtractor, spec.base_size, prefix="vggatrousextractor0_")
    if spec.backbone == "resnet34_v1b":
        return partial(resnet34_v1b_features, spec.filters, base_holder)

    def build():
        base = spec.backbone.replace("_lite", "")
        block, net = backbone_features(base, spec.taps, spec.filters, spec.reduce_ratio, spec.min_depth)
        base_holder.append(net)
        return block

    return build


def build_ssd(name: str, classes=None, **kwargs) -> SSD:
    """An uninitialized SSD for ``name`` (see :func:`get_model`)."""
    spec = get_spec(name)
    if classes is None:
        if spec.dataset == "custom":
            raise ValueError(f"{name} is a custom model: pass classes=[...] with your class names")
        classes = DATASET_CLASSES[spec.dataset]
    classes = tuple(classes)
    if not classes:
        raise ValueError("classes is empty: an SSD needs at least one foreground class")
    holder: list = []
    net = SSD(_features_fn(spec, holder), spec.sizes, spec.ratios, spec.steps, classes,
              anchor_kind=spec.anchor_kind, predictor_kernel=spec.predictor_kernel, **kwargs)
    net.name_in_zoo = name
    net.spec = spec
    # The classification net whose parameters the features share (a namespace, so it is no child block).
    net._backbone = types.SimpleNamespace(net=holder[0] if holder else None)
    return net


def file_class_count(path, network: str, classes=None) -> int | None:
    """How many classes the SSD in parameter file ``path`` detects, read from its first class head.

    The head of layer 0 has ``A * (classes + 1)`` output channels, ``A`` the anchors per location of that
    layer; ``A`` is taken from the network itself (its first anchor generator), so every anchor layout
    counts right: the 'ssd' layout has ``len(ratios) + 1`` anchors, the 'lite' one (ssd_300_mobilenet1.0_lite)
    ``len(ratios)`` on layer 0.

    Parameters
    ----------
    path : str or os.PathLike
        An MXNet parameter file (any format :func:`gluon_ssd.params.load_ssd_parameters` reads).
    network : str
        The zoo model the file is expected to hold, e.g. 'ssd_300_mobilenet1.0_lite_coco'.
    classes : sequence of str, optional
        Classes to build ``network`` with (only the anchors matter; a '*_custom' model gets a placeholder
        class when not given).

    Returns
    -------
    int or None
        The file's number of foreground classes; None when the file is not of ``network``'s architecture
        (its parameters other than the class heads differ in names or shapes), so loading it would fail.

    Raises
    ------
    FileNotFoundError, ValueError
        The file does not exist or is no MXNet parameter file; ``network`` is no zoo model.
    """
    if classes is None and get_spec(network).dataset == "custom":
        classes = ("object",)
    net = build_ssd(network, classes=classes)
    loaded = params.to_structural(net, params.read_param_file(path), path)
    weight = loaded.get("class_predictors.0.predictor.weight")

    params.infer_shapes(net)

    def body(shapes):
        return {k: tuple(v) for k, v in shapes.items() if not k.startswith("class_predictors.")}

    ours = {k: p.shape for k, p in net._collect_params_with_prefix().items()}
    if weight is None or body({k: v.shape for k, v in loaded.items()}) != body(ours):
        return None
    return head_classes(weight.shape[0], net.anchor_generators[0].num_depth)


def _check_norm_layer(name, spec, norm_layer, norm_kwargs):
    """GluonCV's ``norm_layer`` / ``norm_kwargs`` arguments: BatchNorm as built, or a ValueError saying why not."""
    if (norm_layer is None or norm_layer is mx.gluon.nn.BatchNorm) and not norm_kwargs:
        return
    reason = norm_layer_error(spec.backbone)
    if reason is None:
        return  # VGG16: no normalization layer, as in GluonCV, where these arguments change nothing
    what = getattr(norm_layer, "__name__", repr(norm_layer)) if norm_layer is not None else "BatchNorm"
    raise ValueError(f"get_model({name!r}, norm_layer={what}, norm_kwargs={norm_kwargs!r}): {reason}. Build it "
                     f"without norm_layer/norm_kwargs (BatchNorm with GluonCV's settings)")


def get_model(name: str, pretrained=False, pretrained_base=True, classes=None, ctx=None, root=None,
              transfer=None, norm_layer=None, norm_kwargs=None, **kwargs) -> SSD:
    """An SSD from the zoo, GluonCV's API.

    Parameters
    ----------
    name : a name from :func:`list_models`, e.g. 'ssd_512_resnet50_v1_voc', or one of GluonCV's int8
        models ('ssd_512_mobilenet1.0_voc_int8', ...: see :func:`gluon_ssd.quantization.get_int8_model`,
        which takes ``symbol_file=`` too).
    pretrained : False; True for GluonCV's published weights (model store); or a path to a
        parameter file (GluonCV's, in either key format, or ours).
    pretrained_base : True to start from the ImageNet backbone (model store), a path to a backbone
        file, or False. Ignored when ``pretrained`` is given.
    classes : class names; required for '*_custom'. With a pretrained model of another class list
        the class heads are reset (reusing the weights of classes of the same name).
    ctx : mx.Context or list of them (default cpu).
    root : model store folder (default $MXNET_HOME/models, else ~/.mxnet/models).
    transfer : for '*_custom' models: 'voc' or 'coco' to start from that pretrained model.
    norm_layer, norm_kwargs : GluonCV's arguments, accepted as its train_ssd.py passes them:
        ``mxnet.gluon.nn.BatchNorm`` (or None) without keyword arguments. Another layer (SyncBatchNorm) is
        refused with the reason (:func:`norm_layer_error`), except on VGG16, which has no normalization.
    **kwargs : nms_thresh, nms_topk, post_nms, stds.

    Returns
    -------
    An initialized :class:`gluon_ssd.nn.SSD` (an int8 ``SymbolBlock`` for the int8 names).

    Notes
    -----
    Difference from GluonCV: without ``pretrained``, GluonCV returns a network whose parameters outside
    the backbone are not initialized yet, and its scripts and tutorials call ``net.initialize()``. Here they
    are initialized already, with what that call gives in GluonCV's training (each layer's own initializer:
    Xavier for the heads and extra layers, GluonCV's BatchNorm defaults), except that the extra layers'
    BatchNorm statistics start at mean 0 and variance 1 instead of mxnet's default U(-0.07, 0.07) draw (a
    negative variance gives NaN before training). So the network saves, exports, converts and predicts
    right away, and ``net.initialize()`` after it changes nothing and warns about nothing
    (:meth:`gluon_ssd.nn.SSD.initialize`; ``force_reinit=True`` draws every parameter again).
    """
    if name.endswith("_int8"):
        if not _int8_loader:
            raise ValueError(f"{name} is one of GluonCV's int8 models: import gluon_ssd.quantization first (which "
                             f"loads them), or call gluon_ssd.get_model")
        return _int8_loader[0](name, pretrained=pretrained, root=root, ctx=ctx, **kwargs)
    ctx = ctx or mx.cpu()
    ctx_list = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    spec = get_spec(name)
    _check_norm_layer(name, spec, norm_layer, norm_kwargs)
    if transfer is not None:
        if spec.dataset != "custom":
            raise ValueError(f"transfer={transfer!r} applies to *_custom models, not {name}")
        if classes is None:
            raise ValueError("transfer needs classes=[...] with the new class names")
        source = name.replace("_custom", f"_{transfer}")
        net = get_model(source, pretrained=True, pretrained_base=False, ctx=ctx, root=root, **kwargs)
        net.reset_class(classes, reuse_weights=[c for c in classes if c in net.classes])
        return net
    if pretrained and spec.dataset == "custom":
        if pretrained is True:
            raise ValueError(f"{name} has no published weights; use transfer='voc'|'coco' or a file path")
    file_classes = None
    if pretrained and classes is not None:
        file_classes = DATASET_CLASSES.get(spec.dataset)
    net = build_ssd(name, classes=file_classes if file_classes else classes, **kwargs)
    if pretrained:
        path = model_store.get_model_file(name, root=root) if pretrained is True else os.fspath(pretrained)
        params.load_ssd_parameters(net, path, ctx=ctx_list)
        if classes is not None and tuple(classes) != net.classes:
            net.reset_class(classes, reuse_weights=[c for c in classes if c in net.classes])
        return net
    params.infer_shapes(net)  # no deferred initialization: the returned net can be saved right away
    if pretrained_base:
        path = (model_store.get_model_file(spec.base_store_name, root=root) if pretrained_base is True
                else os.fspath(pretrained_base))
        params.load_backbone_parameters(net, path, ctx=ctx_list)
    params.initialize_missing(net, ctx_list)
    return net


from . import ssd  # noqa: E402,F401  (GluonCV's `model_zoo.ssd.target` path, an attribute as in GluonCV)
