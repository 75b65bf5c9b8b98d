"""The model an evaluation scores, checked before any image is read: weights that cannot score the dataset
(random ones, a file of another network or of other classes) are refused with a message that says which
file holds what and what to pass instead; GluonCV's int8 models are loaded by their float32 model's name.

The messages name the flags of ``eval_ssd.py`` (``--pretrained``, ``--quantized``), the way users reach
these functions.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from .._mxnet import HAVE_MXNET
from ..model_store import ModelStoreError
from ..specs import get_spec

__all__ = ["check_weights", "check_parameter_file", "load_gluoncv_int8"]


def check_weights(name: str, pretrained, classes: Sequence[str], dataset_kind: str, request: str) -> bool:
    """Refuse ``pretrained`` weights of network ``name`` that cannot score a dataset of ``classes``.

    Parameters
    ----------
    name : a zoo name; a '*_custom' network takes the dataset's classes.
    pretrained : True (the model store), False (random weights: refused) or a parameter file path (a
        ``.pth``/``.pt`` file of the twin, an ``.onnx`` graph or an OpenVINO ``.xml`` is checked against the meta it
        carries when it is loaded).
    classes : the dataset's class names.
    dataset_kind : 'voc', 'coco' or 'custom', for the messages.
    request : how the network was asked for, for the messages, e.g. ``'--network resnet50_v1 --data-shape 512'``.

    Returns
    -------
    Whether ``name`` is a custom network.

    Raises
    ------
    ValueError (an unknown network, random weights, a custom network without its file, a file of another
    network or of another number of classes); FileNotFoundError for a missing file.
    """
    try:
        custom = get_spec(name).dataset == "custom"
    except ValueError as err:
        raise ValueError(f"{request} --dataset {dataset_kind}: {err}") from None
    if pretrained is False:
        raise ValueError("--pretrained False would evaluate random weights; pass True or a parameter file")
    if custom and pretrained is True:
        raise ValueError(f"{name} has no published weights: pass the parameter file written by training "
                         "(--pretrained PATH)")
    # (Without MXNet this check cannot run; the twin's loader checks the file as it converts it.)
    if isinstance(pretrained, str) and not pretrained.endswith((".pth", ".pt", ".onnx", ".xml")) and HAVE_MXNET:
        check_parameter_file(pretrained, name, classes, custom, dataset_kind, request)
    return custom


def check_parameter_file(path: str, name: str, classes: Sequence[str], custom: bool, dataset_kind: str,
                         request: str) -> None:
    """A parameter file that exists and holds a ``name`` network of ``len(classes)`` classes, else an error
    that says which (arguments as :func:`check_weights`)."""
    from ..model_zoo import file_class_count  # needs MXNet: this module serves the PyTorch stack too

    if not os.path.isfile(path):
        raise FileNotFoundError(f"parameter file not found: {path}; pass an existing .params file or --pretrained "
                                "True for the published weights")
    n_file = file_class_count(path, name, classes if custom else None)
    if n_file is None:
        raise ValueError(f"parameter file {path} does not hold a {name} network (its layers differ): pass a file "
                         f"of {name}, GluonCV's or from a training run of {request}")
    if n_file != len(classes):
        raise ValueError(f"parameter file {path} holds a model of {n_file} classes, but the {dataset_kind} dataset "
                         f"has {len(classes)} classes {list(classes)}: evaluate a model trained on this dataset's "
                         "classes" + (" (a custom model takes its classes from the dataset: check --classes-file)"
                                      if custom else ""))


def load_gluoncv_int8(name: str, pretrained):
    """GluonCV's int8 model of the float32 network ``name`` (:func:`gluon_ssd.quantization.get_int8_model`
    of ``{name}_int8``) with the weights of ``pretrained``.

    Raises
    ------
    ValueError when GluonCV has no int8 version of ``name`` or the graph does not fit the weights;
    FileNotFoundError for a missing graph or file; ``model_store.ModelStoreError`` when the published
    weights cannot be had.
    """
    from ..quantization import INT8_MODELS, get_int8_model  # needs MXNet: this module serves the PyTorch stack too

    int8_name = f"{name}_int8"
    if int8_name not in INT8_MODELS:
        raise ValueError(f"--quantized: GluonCV has no int8 version of {name} (it has "
                         f"{', '.join(INT8_MODELS)}); quantize this model yourself with --calibration")
    try:
        return get_int8_model(int8_name, pretrained=pretrained)
    except ModelStoreError as err:
        raise ModelStoreError(f"{err} (or pass the float32 file: --pretrained PATH)") from None
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--quantized {int8_name}: {err}") from None
    except ValueError as err:
        raise ValueError(f"--quantized {int8_name}: {err}") from None
