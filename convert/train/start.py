"""The start of a ``--backend torch`` training run where MXNet is not installed, as ``train_ssd.py``'s
``prepare()`` builds the gluon network: initialized like gluon_ssd (:mod:`convert.weights.init`), then an
ImageNet classifier in the backbone (:func:`convert.weights.names.load_backbone`) or a transferred model's
weights with the class heads of the classes both share.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from gluon_ssd import model_store, ndfile
from gluon_ssd.classes import COCO_CLASSES, VOC_CLASSES
from gluon_ssd.specs import MODEL_SPECS, get_spec, head_classes

from ..nn.ssd import get_torch_model
from ..weights.init import init_like_gluon
from ..weights.mapping import gluon_to_torch, read_structural_file
from ..weights.names import load_backbone

log = logging.getLogger(__name__)

__all__ = ["start_model", "reuse_class_heads"]


def _file_class_count(model, arrays: dict, source: str) -> int:
    weight = arrays.get("class_predictors.0.predictor.weight")
    if weight is None:
        raise ValueError(f"{source} holds no SSD class head (class_predictors.0.predictor.weight): pass a parameter "
                         f"file of {model.name} (GluonCV's or from a training run) or a model name")
    classes = head_classes(np.shape(weight)[0], model.anchor_generators[0].num_anchors)
    if classes is None:
        raise ValueError(f"{source}: its first class head has {np.shape(weight)[0]} outputs, which is no number of "
                         f"classes for {model.name}: is it a file of this network?")
    return classes


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
    (convert.SSD in train mode, ignored MXNet values of the transferred file: see convert.weights.mapping)

    Raises
    ------
    ValueError (a file that does not fit, legacy names where only MXNet can translate them),
    FileNotFoundError, gluon_ssd.model_store.ModelStoreError (a download that failed).
    """
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
