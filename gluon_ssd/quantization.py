"""INT8 SSDs on the CPU with MXNet's own quantization (``mxnet.contrib.quantization``), and GluonCV's int8 zoo.

:func:`quantize` turns a float32 gluon_ssd SSD into an int8 block: MXNet folds BatchNorm into the
convolutions, calibrates each quantized layer's output range on preprocessed images and fuses the
int8 kernels (oneDNN: CPU only). The decode and NMS at the end of the graph have no int8 version and stay
float32, so the block's outputs are the usual ``(ids, scores, boxes)``. It hybridizes, exports
(:func:`gluon_ssd.export`) and loads back (:func:`gluon_ssd.deploy.load_exported`) like any gluon_ssd model.

GluonCV's int8 models (:data:`INT8_MODELS`) are a calibrated symbol JSON, shipped inside GluonCV's package
(``gluoncv/model_zoo/quantized/{name}-symbol.json``), plus the float32 model's parameters from the model
store: the calibration ranges live in the JSON, the weights are quantized when the graph is built.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable, Sequence

import mxnet as mx
import numpy as np

from . import model_zoo
from .int8_heads import HEAD_TOLERANCE, check_quantize_heads, choose_float_heads
from .model_store import default_root
from .specs import INT8_MODELS  # GluonCV's int8 SSDs and the float32 model whose weights they take

log = logging.getLogger(__name__)

__all__ = ["CALIB_MODES", "INT8_MODELS", "QUANTIZED_DTYPES", "get_int8_model", "int8_symbol_file", "quantize"]

CALIB_MODES = ("naive", "entropy", "none")
QUANTIZED_DTYPES = ("auto", "int8", "uint8")
# GluonCV's graphs name every parameter under this prefix (its get_model(prefix='ssd0_')).
_GLUONCV_PREFIX = "ssd0_"


def _is_cpu(ctx) -> bool:
    return isinstance(ctx, mx.Context) and ctx.device_type == "cpu"


class _CalibrationBatches(mx.io.DataIter):
    """Batches of preprocessed images (NDArray or numpy (B, 3, H, W), or a tuple/list whose first element
    is that, as a gluon DataLoader of (image, label) gives) as the DataIter MXNet's calibration reads."""

    def __init__(self, batches: Iterable, limit: int | None):
        super().__init__()
        # Calibration reads the batches more than once (shape probe, then statistics): keep a one-shot
        # iterator's items.
        self._source = list(batches) if iter(batches) is batches else batches
        self._limit = limit
        first = next(iter(self._batches()), None)
        if first is None:
            raise ValueError("calibration needs at least one batch of images, got none: give calib_data "
                             "with images (or calib_mode='none' to quantize without calibration)")
        self.batch_size = int(first.shape[0])
        self.provide_data = [mx.io.DataDesc("data", first.shape)]
        self.provide_label = []
        self.reset()

    def _batches(self):
        seen = 0
        for batch in self._source:
            if self._limit is not None and seen >= self._limit:
                return
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            x = x if isinstance(x, mx.nd.NDArray) else mx.nd.array(np.asarray(x, dtype=np.float32))
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"calibration batches must be (B, 3, H, W) images, got shape {x.shape}")
            if self._limit is not None and seen + x.shape[0] > self._limit:
                x = x[: self._limit - seen]
            seen += int(x.shape[0])
            yield x.as_in_context(mx.cpu())

    def reset(self):
        self._iter = self._batches()

    def next(self):
        return mx.io.DataBatch(data=[next(self._iter)])


def quantize(net, calib_data=None, calib_mode: str = "naive", num_calib_examples: int | None = None,
             quantized_dtype: str = "auto", exclude_layers_match: Sequence[str] = ("flatten", "concat"),
             ctx=None, quantize_heads: bool | str = "auto", head_tolerance: float = HEAD_TOLERANCE):
    """An int8 version of a float32 SSD, built and calibrated by MXNet (``quantize_net``).

    Parameters
    ----------
    net : a gluon_ssd SSD (initialized; its NMS settings are baked into the int8 graph). Its parameters are
        moved to the CPU and it is re-hybridized (without static_alloc) to trace the graph.
    calib_data : iterable of preprocessed image batches, (B, 3, H, W) NDArray or numpy, or (images, labels)
        tuples as a DataLoader of the evaluation transform yields. Every batch must have the first batch's
        shape. Not needed with ``calib_mode='none'``.
    calib_mode : 'naive' (each layer's min/max over the calibration images), 'entropy' (thresholds that
        minimize the KL divergence of the int8 histogram) or 'none' (ranges computed at run time, per batch).
    num_calib_examples : images read for calibration (default: every image of calib_data).
    quantized_dtype : 'auto' (uint8 after ReLU, else int8), 'int8' or 'uint8'.
    exclude_layers_match : layers whose name contains one of these stay float32 (GluonCV excludes
        flatten and concat).
    ctx : mx.cpu() (default): MXNet's int8 kernels are oneDNN's, for the CPU only.
    quantize_heads : which class prediction convolutions are int8 (the box heads always are). True: all, as
        GluonCV's eval_ssd.py does (exactly its graph); False: none; 'auto' (default): each head whose int8
        output changes no foreground score on the calibration images by more than ``head_tolerance``
        (:mod:`gluon_ssd.int8_heads`; judged on the images' min/max range as naive calibration sets it, which
        entropy thresholds narrow; with calib_mode='none', none). MXNet 1.9's int8 convolutions
        requantize their outputs to int8, i.e. the class logits: on the suite's trained ResNet-18 SSD (VOC07
        mAP 0.849 in float32, naive calibration on 16 images) every class head int8 gives 0.780, no class
        head int8 0.845; 'auto' keeps its two widest-range heads float32.
    head_tolerance : the largest foreground score change an int8 class head may cause ('auto').

    Returns
    -------
    mx.gluon.SymbolBlock with ``classes`` (the SSD's) and ``quantized_dtype``: ``x (B, 3, H, W) -> ids
    (B, K, 1), scores (B, K, 1), boxes (B, K, 4)`` as the float32 SSD. Any batch size and input size work.

    Raises
    ------
    ValueError for a GPU context, an unknown mode or dtype, no calibration batch, or a non-positive
    num_calib_examples.
    """
    from mxnet.contrib.quantization import quantize_net

    ctx = mx.cpu() if ctx is None else ctx
    if not _is_cpu(ctx):
        raise ValueError(f"int8 quantization runs on the CPU only (MXNet's int8 kernels are oneDNN's), got "
                         f"ctx={ctx}: use ctx=mx.cpu()")
    if calib_mode not in CALIB_MODES:
        raise ValueError(f"calib_mode {calib_mode!r}: expected one of {', '.join(CALIB_MODES)}")
    if quantized_dtype not in QUANTIZED_DTYPES:
        raise ValueError(f"quantized_dtype {quantized_dtype!r}: expected one of {', '.join(QUANTIZED_DTYPES)}")
    if num_calib_examples is not None and int(num_calib_examples) < 1:
        raise ValueError(f"num_calib_examples must be at least 1, got {num_calib_examples}")
    check_quantize_heads(quantize_heads)
    classes = tuple(getattr(net, "classes", ()))
    data = None
    data_shapes = None
    if calib_mode != "none":
        if calib_data is None:
            raise ValueError(f"calib_mode={calib_mode!r} needs calib_data (batches of preprocessed images)")
        data = _CalibrationBatches(calib_data, num_calib_examples)
        data_shapes = data.provide_data
    else:
        size = getattr(getattr(net, "spec", None), "base_size", 300)
        shape = (1, 3, size, size)
        if calib_data is not None:
            data = _CalibrationBatches(calib_data, 1)
            shape = data.provide_data[0].shape
        data_shapes = [mx.io.DataDesc("data", shape)]
        data = None
    net.collect_params().reset_ctx(mx.cpu())
    heads, errors = _float_class_heads(net, quantize_heads, data, head_tolerance)
    net.hybridize()
    float_heads = [f"{net.class_predictors[k].predictor.prefix}fwd" for k in heads]
    qnet = quantize_net(net, quantized_dtype=quantized_dtype, exclude_layers=float_heads,
                        exclude_layers_match=list(exclude_layers_match),
                        calib_data=data, data_shapes=data_shapes, calib_mode=calib_mode,
                        num_calib_examples=num_calib_examples, ctx=mx.cpu(), logger=None)
    probe = mx.nd.zeros(data_shapes[0].shape)
    if data is not None:
        data.reset()
        probe = data.next().data[0]
    try:  # MXNet checks the int8/uint8 choices only when the graph runs: fail here, with advice
        mx.nd.waitall()
        qnet(probe)[0].wait_to_read()
    except mx.base.MXNetError as err:
        last = str(err).strip().splitlines()[-1]
        raise ValueError(f"the int8 graph ({quantized_dtype}, calibration {calib_mode}) does not run: {last}. "
                         "Normalized images are negative, which uint8 cannot hold, and MXNet 1.9's entropy "
                         "calibration works with quantized_dtype='auto' only: use 'auto' (or 'int8' with "
                         "naive calibration)") from None
    qnet.classes = classes
    qnet.spec = getattr(net, "spec", None)
    qnet.model_name = getattr(net, "name_in_zoo", None)
    qnet.quantized_dtype = quantized_dtype
    qnet.calib_mode = calib_mode
    qnet.float_heads, qnet.head_errors = heads, errors
    log.info("quantized %s (%s, calibration %s, %s examples; class heads kept float32: %s)",
             getattr(net, "name", type(net).__name__), quantized_dtype, calib_mode,
             num_calib_examples if num_calib_examples else "all", heads or "none")
    return qnet


def _float_class_heads(net, quantize_heads, data, tolerance) -> tuple[list[int], list[float] | None]:
    """The class heads ``quantize`` keeps float32, and (for 'auto' with images) every head's score error."""
    def outputs():
        # The heads' outputs from the traced graph (faster than an imperative run with forward hooks).
        net.hybridize()
        internals = net(mx.sym.var("data"))[0].get_internals()
        probe = mx.gluon.SymbolBlock([internals[f"{head.predictor.prefix}fwd_output"]
                                      for head in net.class_predictors], mx.sym.var("data"),
                                     params=net.collect_params())
        per_head: list[list[np.ndarray]] = [[] for _ in net.class_predictors]
        for x in data._batches():
            for k, out in enumerate(probe(x)):
                per_head[k].append(out.asnumpy())
        return [np.concatenate(o) for o in per_head]

    return choose_float_heads(quantize_heads, len(net.class_predictors), None if data is None else outputs,
                              net.num_classes, "symmetric", tolerance)


def _gluoncv_package_json(name: str) -> str | None:
    """The JSON inside an installed gluoncv package, found without importing gluoncv."""
    try:
        spec = importlib.util.find_spec("gluoncv")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "model_zoo", "quantized", f"{name}-symbol.json")
        if os.path.isfile(path):
            return path
    return None


def int8_symbol_file(name: str, symbol_file: str | None = None, root: str | None = None) -> str:
    """Where the symbol JSON of GluonCV's int8 model ``name`` is: ``symbol_file`` if given, else
    ``{root}/{name}-symbol.json`` (root: the model store folder), else the copy inside an installed gluoncv
    package.

    Raises
    ------
    FileNotFoundError saying where to get the file.
    """
    if symbol_file is not None:
        if not os.path.isfile(symbol_file):
            raise FileNotFoundError(f"symbol file {symbol_file} for {name} not found")
        return symbol_file
    root = os.path.expanduser(root or default_root())
    candidate = os.path.join(root, f"{name}-symbol.json")
    if os.path.isfile(candidate):
        return candidate
    found = _gluoncv_package_json(name)
    if found:
        return found
    raise FileNotFoundError(
        f"{name} needs GluonCV's calibrated graph {name}-symbol.json, which GluonCV ships inside its package "
        f"(gluoncv/model_zoo/quantized/{name}-symbol.json in gluoncv 0.10.5): copy it to {candidate}, "
        "or pass symbol_file=PATH")


def get_int8_model(name: str, pretrained=True, root: str | None = None, symbol_file: str | None = None,
                   ctx=None):
    """GluonCV's int8 SSD ``name`` (a key of :data:`INT8_MODELS`).

    Parameters
    ----------
    pretrained : True: the float32 model's published parameters (model store, sha1-checked); or the path
        of a float32 parameter file of that model (GluonCV's or gluon_ssd's, either key format).
    root : model store folder (default $MXNET_HOME/models); also searched for the symbol JSON.
    symbol_file : the JSON's path (default: see :func:`int8_symbol_file`).
    ctx : mx.cpu() (default; int8 kernels are CPU only).

    Returns
    -------
    mx.gluon.SymbolBlock with ``classes``: ``x -> ids, scores, boxes`` with the NMS baked into the graph.
    """
    if name not in INT8_MODELS:
        raise ValueError(f"no int8 version of {name!r}: GluonCV publishes int8 graphs for "
                         f"{', '.join(INT8_MODELS)}")
    ctx = mx.cpu() if ctx is None else ctx
    if not _is_cpu(ctx):
        raise ValueError(f"{name} runs on the CPU only (int8 oneDNN kernels), got ctx={ctx}")
    if pretrained is False:
        raise ValueError(f"{name}: an int8 graph needs weights: pretrained=True or a float32 parameter file")
    json_file = int8_symbol_file(name, symbol_file, root)
    base = INT8_MODELS[name]
    fp32 = model_zoo.get_model(base, pretrained=pretrained, pretrained_base=False, root=root)
    with_prefix = {_GLUONCV_PREFIX + p.name[len(fp32.prefix):]: p for p in fp32.collect_params().values()}
    net = mx.gluon.SymbolBlock.imports(json_file, ["data"], None, ctx=mx.cpu())
    wanted = net.collect_params()
    missing = [k for k in wanted.keys() if k not in with_prefix]
    if missing:
        raise ValueError(f"{json_file} does not fit {base}: the graph needs {len(missing)} parameters the model "
                         f"lacks, e.g. {missing[:3]}; is it the JSON of {name}?")
    for key, param in wanted.items():
        source = with_prefix[key].data().as_in_context(mx.cpu())
        known = param.shape is not None and len(param.shape) > 0 and 0 not in param.shape
        if known and tuple(source.shape) != tuple(param.shape):
            raise ValueError(f"{json_file}: parameter {key} has shape {param.shape} in the graph and "
                             f"{source.shape} in the {base} weights")
        param._load_init(source, mx.cpu())
    net.classes = tuple(fp32.classes)
    net.spec = fp32.spec
    net.model_name = name
    net.quantized_dtype = "auto"
    log.info("loaded %s from %s", name, json_file)
    return net


# The zoo's get_model of an int8 name comes here (the zoo is a layer below and cannot import this module).
model_zoo.use_int8_loader(get_int8_model)
