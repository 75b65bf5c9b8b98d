"""PyTorch twins of every gluon_ssd model, with weight conversion both ways, verification and exports.

Front doors:

* :func:`get_torch_model` (name, classes) -> a randomly initialized :class:`SSD` twin of a zoo model.
* :func:`load_torch_model` (path) -> the twin saved by ``python -m convert`` (torch + numpy only).
* :func:`convert_gluon_file` (name, params) -> (twin with the file's weights, ignored MXNet values).
* :func:`write_gluon_file` -> a gluon_ssd/GluonCV ``.params`` from a twin's state dict.
* :func:`box_nms`, :func:`detect`: MXNet ``contrib.box_nms`` / gluon_ssd post-processing in torch.
* :func:`export_torchscript`, :func:`export_onnx`; :mod:`convert.runtime.inference` for device/dtype helpers.

Laid out like gluon_ssd (the twin of ``gluon_ssd/X/Y.py`` is ``convert/X/Y.py``): :mod:`convert.nn` (the network),
:mod:`convert.weights` (conversion, names, initializers), :mod:`convert.train` (targets, loss, SGD, the start of a
run), :mod:`convert.runtime` (inference, exports, int8, verification), :mod:`convert._cpu` (C kernels).

Importing this package needs only torch and numpy; reading or writing MXNet files needs mxnet.
"""
import gluon_ssd._env  # noqa: F401  (thread settings, before mxnet may be imported)

try:
    import torch  # noqa: F401
except ImportError:  # without torch only written graphs are served: convert.runtime.onnxruntime / .openvino
    torch = None
if torch is not None:
    from .backend import register as _register  # noqa: E402
    from .nn.postprocess import box_nms, detect
    from .nn.ssd import SSD, get_torch_model, to_torchvision
    from .runtime.export import export_onnx, export_torchscript
    from .runtime.inference import fuse_batchnorm, predict, prepare, reuse_freed_memory
    from .weights.mapping import (
                          convert_gluon_file,
                          gluon_to_torch,
                          key_map,
                          load_torch_model,
                          save_torch_model,
                          torch_to_gluon,
                          write_gluon_file,
    )

    # --backend torch of gluon_ssd's tools: the twin registers itself (gluon_ssd never imports convert).
    _register()

__all__ = ["SSD", "get_torch_model", "load_torch_model", "save_torch_model", "convert_gluon_file",
           "write_gluon_file", "gluon_to_torch", "torch_to_gluon", "key_map", "box_nms", "detect",
           "export_torchscript", "export_onnx", "predict", "prepare", "fuse_batchnorm", "to_torchvision",
           "reuse_freed_memory"]
