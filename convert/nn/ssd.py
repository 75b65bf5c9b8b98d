"""The PyTorch twin of gluon_ssd's SSD: features -> per-layer heads -> anchors -> decode + per-class NMS.

The zoo table is ``gluon_ssd.specs.MODEL_SPECS`` (one table for both frameworks, no mxnet in it). Converted
``.pth`` files carry their row (:func:`spec_to_dict`, :func:`spec_from_dict`), so
:func:`convert.load_torch_model` needs neither mxnet nor the table: a machine with only torch and numpy can
load and run them.
"""
from __future__ import annotations

import dataclasses
import re
import types

import torch
from torch import nn

from gluon_ssd.classes import DATASET_CLASSES
from gluon_ssd.specs import BOX_STDS, NMS_THRESH, NMS_TOPK, POST_NMS, get_spec

from .anchors import AnchorGenerator
from .features import RESNET_LAYERS, mobilenet_features, resnet_features
from .layers import Conv2d
from .postprocess import detect
from .resnetv1b import ResNet34V1bSSD
from .vgg import VGGAtrous

# The fields of a zoo row that the PyTorch twin reads (and a saved .pth file carries).
SPEC_FIELDS = ("base_size", "backbone", "dataset", "sizes", "ratios", "steps", "taps", "filters",
               "anchor_kind", "predictor_kernel", "reduce_ratio", "min_depth")


class SSD(nn.Module):
    """Single Shot MultiBox Detector, numerically the twin of ``gluon_ssd.nn.SSD``.

    Parameters
    ----------
    spec : a row of ``gluon_ssd.model_zoo.MODEL_SPECS`` (or its saved description).
    classes : foreground class names.
    name : the zoo name (kept for saving).

    Forward
    -------
    ``eval()``: x (B, 3, H, W) ImageNet-normalized RGB -> ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4)
    corners in input pixels (K = post_nms = 100); rows without a detection are -1 in every field.
    ``train()``: cls_preds (B, N, C+1) logits (background at 0), box_preds (B, N, 4) encoded offsets,
    anchors (1, N, 4) (cx, cy, w, h). BatchNorms use batch statistics in train mode, as Gluon's.
    """

    def __init__(self, spec, classes, name: str = "", stds=BOX_STDS, nms_thresh: float = NMS_THRESH,
                 nms_topk: int = NMS_TOPK, post_nms: int = POST_NMS):
        super().__init__()
        classes = tuple(str(c) for c in classes)
        if not classes:
            raise ValueError("classes is empty: an SSD needs at least one foreground class")
        num_layers = len(spec.steps)
        if len(spec.sizes) != num_layers + 1 or len(spec.ratios) != num_layers:
            raise ValueError(f"{name}: an SSD with {num_layers} layers needs {num_layers + 1} sizes and "
                             f"{num_layers} ratio lists, got {len(spec.sizes)} and {len(spec.ratios)}")
        self.name = name
        self.spec = spec
        self.classes = classes
        self.num_classes = len(classes)
        self.stds = [float(s) for s in stds]
        self.nms_thresh = float(nms_thresh)
        self.nms_topk = int(nms_topk)
        self.post_nms = int(post_nms)
        self.features = build_features(spec)
        channels = self.features.out_channels
        if len(channels) != num_layers:
            raise ValueError(f"{name}: the features give {len(channels)} maps for {num_layers} prediction layers")
        kernel = int(spec.predictor_kernel)
        gens, cls_heads, box_heads = [], [], []
        for i in range(num_layers):
            gen = AnchorGenerator(i, (spec.sizes[i], spec.sizes[i + 1]), spec.ratios[i], spec.steps[i],
                                  kind=spec.anchor_kind)
            gens.append(gen)
            cls_heads.append(Conv2d(channels[i], gen.num_anchors * (self.num_classes + 1), kernel,
                                    padding=kernel // 2, gluon_key=f"class_predictors.{i}.predictor."))
            box_heads.append(Conv2d(channels[i], gen.num_anchors * 4, kernel, padding=kernel // 2,
                                    gluon_key=f"box_predictors.{i}.predictor."))
        self.class_predictors = nn.ModuleList(cls_heads)
        self.box_predictors = nn.ModuleList(box_heads)
        self.anchor_generators = nn.ModuleList(gens)

    def set_nms(self, nms_thresh: float = NMS_THRESH, nms_topk: int = NMS_TOPK, post_nms: int = POST_NMS) -> None:
        """Per-class NMS settings, as ``gluon_ssd.nn.SSD.set_nms``."""
        self.nms_thresh, self.nms_topk, self.post_nms = float(nms_thresh), int(nms_topk), int(post_nms)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cls_preds (B, N, C+1), box_preds (B, N, 4), anchors (1, N, 4)) in the module's current mode."""
        feats = self.features(x)
        batch = x.shape[0]
        cls_list: list[torch.Tensor] = []
        box_list: list[torch.Tensor] = []
        anchor_list: list[torch.Tensor] = []
        for i, (cls_head, box_head, gen) in enumerate(zip(self.class_predictors, self.box_predictors,
                                                          self.anchor_generators)):
            feat = feats[i]
            cls_list.append(cls_head(feat).permute(0, 2, 3, 1).reshape(batch, -1))
            box_list.append(box_head(feat).permute(0, 2, 3, 1).reshape(batch, -1))
            anchor_list.append(gen(feat))
        cls_preds = torch.cat(cls_list, 1).reshape(batch, -1, self.num_classes + 1)
        box_preds = torch.cat(box_list, 1).reshape(batch, -1, 4)
        return cls_preds, box_preds, torch.cat(anchor_list, 1)

    def postprocess(self, cls_preds: torch.Tensor, box_preds: torch.Tensor,
                    anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw outputs -> (ids, scores, boxes) with this model's NMS settings."""
        return detect(cls_preds, box_preds, anchors, self.stds, self.nms_thresh, self.nms_topk, self.post_nms)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls_preds, box_preds, anchors = self.raw(x)
        if self.training:
            return cls_preds, box_preds, anchors
        return self.postprocess(cls_preds, box_preds, anchors)

    @torch.jit.ignore
    def detect(self, x: torch.Tensor, output: str = "tuple"):
        """Detections whatever the module's mode.

        output : 'tuple' -> (ids, scores, boxes) as ``forward`` in eval mode; 'torchvision' -> a list of
            one dict per image with 'boxes' (K, 4) float corners, 'scores' (K,) and 'labels' (K,) int64,
            only the real detections. Labels follow torchvision: 0 is the background, so class id c is
            label c + 1 (``self.classes[label - 1]`` is its name).
        """
        if output not in ("tuple", "torchvision"):
            raise ValueError(f"output={output!r}: expected 'tuple' or 'torchvision'")
        ids, scores, boxes = self.postprocess(*self.raw(x))
        if output == "tuple":
            return ids, scores, boxes
        return to_torchvision(ids, scores, boxes)

    @torch.jit.ignore
    def describe(self) -> dict[str, object]:
        """What a saved file needs to rebuild this model (see :func:`convert.load_torch_model`)."""
        return {"network": self.name, "classes": list(self.classes), "spec": spec_to_dict(self.spec),
                "stds": list(self.stds), "nms": [self.nms_thresh, self.nms_topk, self.post_nms]}


def to_torchvision(ids: torch.Tensor, scores: torch.Tensor, boxes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """(ids, scores, boxes) batches -> torchvision detection dicts (labels = id + 1, 0 = background)."""
    out = []
    for i in range(ids.shape[0]):
        valid = ids[i, :, 0] >= 0
        out.append({"boxes": boxes[i][valid], "scores": scores[i, :, 0][valid],
                    "labels": ids[i, :, 0][valid].to(torch.int64) + 1})
    return out


def get_torch_model(name: str, classes=None, **kwargs) -> SSD:
    """A randomly initialized PyTorch twin of zoo model ``name`` (see :func:`gluon_ssd.get_model`).

    classes : class names; required for '*_custom' models; default the dataset's.
    kwargs : stds, nms_thresh, nms_topk, post_nms.
    """
    spec = get_spec(name)
    if classes is None:
        classes = DATASET_CLASSES.get(spec.dataset)
        if classes is None:
            raise ValueError(f"{name} is a custom model: pass classes=[...] with your class names")
    return SSD(spec, classes, name=name, **kwargs)


def build_features(spec) -> nn.Module:
    """The feature extractor of a zoo row (``spec``: backbone, taps, filters, base_size, ...)."""
    backbone = spec.backbone
    if backbone == "vgg16_atrous":
        return VGGAtrous(spec.base_size)
    if backbone == "resnet34_v1b":
        return ResNet34V1bSSD(spec.filters)
    base = backbone.replace("_lite", "")
    match = re.fullmatch(r"resnet(\d+)_v([12])", base)
    if match and int(match.group(1)) in RESNET_LAYERS:
        return resnet_features(int(match.group(1)), int(match.group(2)), spec.taps, spec.filters,
                               spec.reduce_ratio, spec.min_depth)
    match = re.fullmatch(r"mobilenet(\d+(?:\.\d+)?)", base)
    if match:
        return mobilenet_features(float(match.group(1)), spec.taps, spec.filters, spec.reduce_ratio,
                                  spec.min_depth)
    raise ValueError(f"backbone {backbone!r} has no PyTorch twin (supported: vgg16_atrous, resnet34_v1b, "
                     "resnet{18,34,50,101,152}_v1, resnet{50,101,152}_v2, mobilenet<multiplier>)")


def spec_to_dict(spec) -> dict:
    """Plain python (str/int/float/tuple) description of a row, for saving inside a .pth file."""
    if dataclasses.is_dataclass(spec):
        spec = dataclasses.asdict(spec)
    elif not isinstance(spec, dict):
        spec = vars(spec)
    return {k: spec[k] for k in SPEC_FIELDS}


def spec_from_dict(data: dict):
    """A read-only row rebuilt from :func:`spec_to_dict`'s output."""
    missing = [k for k in SPEC_FIELDS if k not in data]
    if missing:
        raise ValueError(f"model description is missing {', '.join(missing)}: the file was not written by "
                         "convert (re-convert it with python -m convert)")

    def freeze(value):
        return tuple(freeze(v) for v in value) if isinstance(value, (list, tuple)) else value

    return types.SimpleNamespace(**{k: freeze(data[k]) for k in SPEC_FIELDS})
